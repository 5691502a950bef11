//! The engine: one for every backend.
//!
//! Two tasks drive a backend. The *registration* task registers this node, keeps the
//! registration alive, registers again whenever it is lost, and deregisters on shutdown. The
//! *view* task reads a snapshot, then follows pushed changes (or polls snapshots), applies
//! them to the one member [`Table`](table::Table), expires soft-state members and members
//! whose grace period ran out, probes candidates, and publishes the view and the events.
//! Every backend call is bounded by a timeout; every failure is retried with backoff; the
//! last view is kept, marked stale, until the backend answers again.

mod backoff;
mod deadlines;
pub(crate) mod registration;
mod stats;
pub(crate) mod table;
mod view_task;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autocluster_plugin::{
    Discovery, Error, ErrorKind, Lease, Member, Registration, Registrations, Result,
};
use futures::future::BoxFuture;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use stats::Stats;

use crate::view::{Event, Health, View};

/// Events the view task's buffer keeps room for between batches.
const EVENT_BUFFER_KEPT: usize = 256;

/// Decides whether a candidate runs (the liveness probe of list-only backends).
pub type Prober = Arc<dyn Fn(Member) -> BoxFuture<'static, bool> + Send + Sync>;

/// How the engine drives a backend.
#[derive(Clone)]
pub struct EngineConfig {
    /// What this node registers.
    pub registration: Registration,
    /// The bound on every backend call.
    pub call_timeout: Duration,
    /// The first retry delay.
    pub backoff_min: Duration,
    /// The largest retry delay.
    pub backoff_max: Duration,
    /// How long a member that vanished from a full snapshot is kept; `None`: the backend's
    /// registration TTL.
    pub grace: Option<Duration>,
    /// The liveness probe for list-only backends; `None` counts every candidate as running.
    pub prober: Option<Prober>,
    /// How often candidates are probed.
    pub probe_interval: Duration,
    /// How many events a slow subscriber may fall behind before it misses some.
    pub event_capacity: usize,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("registration", &self.registration)
            .field("call_timeout", &self.call_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("grace", &self.grace)
            .field("prober", &self.prober.is_some())
            .field("probe_interval", &self.probe_interval)
            .finish()
    }
}

impl EngineConfig {
    /// Defaults for everything but the registration.
    pub fn new(registration: Registration) -> Self {
        EngineConfig {
            registration,
            call_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            grace: None,
            prober: None,
            probe_interval: Duration::from_secs(5),
            event_capacity: 16 * 1024,
        }
    }
}

/// What the tasks share with each other and with readers.
pub(crate) struct Shared {
    pub backend: Arc<dyn Discovery>,
    pub config: EngineConfig,
    pub view: watch::Sender<View>,
    /// Created by the first subscriber (see [`Shared::subscribe_events`]).
    events: std::sync::OnceLock<broadcast::Sender<Event>>,
    pub health: watch::Sender<Health>,
    /// The current registration, set by the registration task.
    pub lease: watch::Sender<Option<Lease>>,
    /// Whether the registration task's last call succeeded.
    pub registration_ok: watch::Sender<bool>,
    /// Raised by the view task when this node's own registration vanished.
    pub own_key_missing: Notify,
    pub stats: Stats,
    pub cancel: CancellationToken,
}

impl Shared {
    /// The state of an engine whose tasks have not started.
    pub(crate) fn new(backend: Arc<dyn Discovery>, config: EngineConfig) -> Arc<Shared> {
        let caps = backend.capabilities();
        let health = Health {
            backend: backend.name(),
            registered: caps.registration == Registrations::None,
            stale: true,
            ..Health::default()
        };
        Arc::new(Shared {
            backend,
            view: watch::channel(View {
                stale: true,
                ..View::default()
            })
            .0,
            events: std::sync::OnceLock::new(),
            health: watch::channel(health).0,
            lease: watch::channel(None).0,
            registration_ok: watch::channel(true).0,
            own_key_missing: Notify::new(),
            stats: Stats::default(),
            cancel: CancellationToken::new(),
            config,
        })
    }

    /// A receiver of the events from now on. The channel is created by the first
    /// subscriber: a broadcast channel allocates all its `event_capacity` slots at once
    /// (about 7 MiB for the default 16,384), and events published while nobody subscribes
    /// go nowhere anyway.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events
            .get_or_init(|| broadcast::channel(self.config.event_capacity.max(16)).0)
            .subscribe()
    }

    /// Records whether the registration task's last call succeeded. Readers are woken only
    /// when that changes: the view task resumes its watch when it turns true, and waking it
    /// at every keep-alive made every node reopen its watch every `keep_alive_every`.
    pub fn set_registration_ok(&self, ok: bool) {
        self.registration_ok.send_if_modified(|v| {
            let changed = *v != ok;
            *v = ok;
            changed
        });
    }

    /// One bounded backend call, with its outcome recorded in health and stats.
    pub async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = match tokio::time::timeout(self.config.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer within {:?}", self.config.call_timeout),
            )
            .with_backend(self.backend.name())
            .with_operation(operation)),
        };
        match &result {
            Ok(_) => self.record_success(operation),
            Err(e) => self.record_error(operation, e),
        }
        result
    }

    pub fn record_success(&self, operation: &'static str) {
        self.stats.call(operation, None);
        self.health.send_if_modified(|h| {
            let was = (h.consecutive_failures, h.last_success);
            h.consecutive_failures = 0;
            h.last_success = Some(SystemTime::now());
            // Publish at most once per second for successes alone.
            was.0 != 0
                || was
                    .1
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|d| d >= Duration::from_secs(1))
        });
    }

    pub fn record_error(&self, operation: &'static str, e: &Error) {
        self.stats.call(operation, Some(e.kind()));
        let text = if e.context().operation.is_some() {
            e.to_string()
        } else {
            format!("{} {operation}: {e}", self.backend.name())
        };
        tracing::warn!(backend = self.backend.name(), operation, kind = %e.kind(), "{text}");
        self.health.send_modify(|h| {
            h.consecutive_failures += 1;
            h.last_error = Some(text);
            h.last_error_kind = Some(e.kind().as_str());
            h.last_error_at = Some(SystemTime::now());
        });
    }

    pub fn publish(&self, view: &View, events: &mut Vec<Event>) {
        self.view.send_replace(view.clone());
        let me = &self.config.registration.node;
        let in_view = view.members.contains_key(me)
            || self.backend.capabilities().registration == Registrations::None;
        self.health.send_if_modified(|h| {
            let stale = view.stale || !*self.registration_ok.borrow();
            let changed = h.stale != stale || h.synced != view.synced || h.in_view != in_view;
            h.stale = stale;
            h.synced = view.synced;
            h.in_view = in_view;
            changed
        });
        let tx = self.events.get();
        for e in events.drain(..) {
            self.stats.event(e.kind);
            tracing::info!(event = e.kind.as_str(), node = %e.node, incarnation = %e.member.incarnation, "member {}", e.kind.as_str());
            if let Some(tx) = tx {
                let _ = tx.send(e);
            }
        }
        // A first snapshot of 10,000 members leaves room for 16,384 events (6 MiB) in the
        // buffer, drained but kept for the life of the node: give it back.
        events.shrink_to(EVENT_BUFFER_KEPT);
    }
}

/// A running engine.
pub(crate) struct Engine {
    pub shared: Arc<Shared>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine's tasks on the current tokio runtime.
    pub fn spawn(backend: Arc<dyn Discovery>, config: EngineConfig) -> Engine {
        let caps = backend.capabilities();
        let shared = Shared::new(backend, config);
        let mut tasks = vec![tokio::spawn(view_task::run(shared.clone()))];
        if caps.registration != Registrations::None {
            tasks.push(tokio::spawn(registration::run(shared.clone())));
        }
        Engine {
            shared,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    /// Stops the tasks; the registration task deregisters first (bounded by the call
    /// timeout).
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        for t in self.take_tasks() {
            let _ = t.await;
        }
    }

    fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl Engine {
    /// Stops without deregistering, as a crash would: the registration stays until its TTL
    /// runs out.
    pub fn abort(&self) {
        for t in self.take_tasks() {
            t.abort();
        }
        self.shared.cancel.cancel();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
