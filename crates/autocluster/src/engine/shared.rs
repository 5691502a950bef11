//! What the engine's tasks share with each other and with readers: the backend, the
//! channels the view, the events and the health are published on, and the bounded call.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{Discovery, Error, ErrorKind, Lease, Registration, Registrations, Result};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{EngineConfig, Stats};
use crate::view::{Event, Health, View};

/// How many times in a row a call's bound is doubled after timeouts: up to 4 ×
/// `call_timeout`.
const MAX_STRETCH: u32 = 2;

/// Events the view task's buffer keeps room for between batches.
const EVENT_BUFFER_KEPT: usize = 256;

pub(crate) struct Shared {
    pub backend: Arc<dyn Discovery>,
    pub config: EngineConfig,
    pub view: watch::Sender<View>,
    /// Created by the first subscriber (see [`Shared::subscribe_events`]).
    events: OnceLock<broadcast::Sender<Event>>,
    /// Held while a view and its events are published, and while a subscriber reads the view
    /// and subscribes: a subscriber gets a view and then exactly the events after it.
    publishing: Mutex<()>,
    pub health: watch::Sender<Health>,
    /// The current registration, set by the registration task.
    pub lease: watch::Sender<Option<Lease>>,
    /// Whether the registration task's last call succeeded.
    pub registration_ok: watch::Sender<bool>,
    /// Operations whose last calls timed out, and how many times in a row (see
    /// [`Shared::call`]).
    slow_calls: Mutex<Vec<(&'static str, u32)>>,
    /// The last lease the registration task lost, and when it was last renewed (or
    /// registered): the view task asks whether its watch ran without a break since then.
    pub lost_lease: Mutex<Option<(u64, tokio::time::Instant)>>,
    /// What this node registers now: `config.registration` at start, then every update
    /// ([`Shared::update_registration`]); the registration task writes each one.
    pub own: watch::Sender<Registration>,
    /// Held through one update of `own`, so two at once do not lose either.
    updating: Mutex<()>,
    /// Why the last deregistration failed (its kind and message), for `Cluster::leave`.
    pub deregister_failed: Mutex<Option<(ErrorKind, String)>>,
    /// Raised by the view task when this node's own registration vanished.
    pub own_key_missing: Notify,
    /// The cluster id formation settled on (`None` before): the registration carries it, and
    /// is written again when it is set.
    pub cluster_id: watch::Sender<Option<String>>,
    pub stats: Stats,
    pub cancel: CancellationToken,
    /// Tasks started after the engine, for its supervisor to own ([`Shared::spawn_owned`]).
    late_tasks: mpsc::UnboundedSender<super::supervisor::LateTask>,
    /// The supervisor's end of it, taken when the engine starts.
    pub(super) late_rx: Mutex<Option<mpsc::UnboundedReceiver<super::supervisor::LateTask>>>,
}

impl Shared {
    /// The state of an engine whose tasks have not started.
    pub(crate) fn new(backend: Arc<dyn Discovery>, config: EngineConfig) -> Arc<Shared> {
        let caps = backend.capabilities();
        let (late_tasks, late_rx) = mpsc::unbounded_channel();
        let health = Health {
            backend: backend.name().to_string(),
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
            events: OnceLock::new(),
            publishing: Mutex::new(()),
            health: watch::channel(health).0,
            lease: watch::channel(None).0,
            registration_ok: watch::channel(true).0,
            lost_lease: Mutex::new(None),
            slow_calls: Mutex::new(Vec::new()),
            own: watch::channel(config.registration.clone()).0,
            updating: Mutex::new(()),
            deregister_failed: Mutex::new(None),
            own_key_missing: Notify::new(),
            cluster_id: watch::channel(None).0,
            stats: Stats::default(),
            cancel: CancellationToken::new(),
            late_tasks,
            late_rx: Mutex::new(Some(late_rx)),
            config,
        })
    }

    /// Runs `task` as one of the engine's tasks: owned by its supervisor, which notices a
    /// panic or an end before the engine stops (the engine then fails, as for its own
    /// tasks). The task must end when the engine is cancelled. After the engine stopped it
    /// is not run.
    pub fn spawn_owned(&self, name: &'static str, task: futures::future::BoxFuture<'static, ()>) {
        if self.cancel.is_cancelled() || self.late_tasks.send((name, task)).is_err() {
            tracing::debug!(task = name, "the engine has stopped: task not started");
        }
    }

    /// Records the cluster id formation settled on and has the registration carry it (the
    /// registration task writes it again under the same lease).
    pub fn set_cluster_id(&self, id: String) {
        self.cluster_id.send_replace(Some(id.clone()));
        self.own.send_if_modified(|r| {
            let changed = r.meta.cluster_id.as_deref() != Some(id.as_str());
            r.meta.cluster_id = Some(id);
            changed
        });
    }

    fn events_sender(&self) -> &broadcast::Sender<Event> {
        self.events
            .get_or_init(|| broadcast::channel(self.config.event_capacity.max(16)).0)
    }

    /// A receiver of the events from now on. The channel is created by the first
    /// subscriber: a broadcast channel allocates all its `event_capacity` slots at once
    /// (about 7 MiB for the default 16,384), and events published while nobody subscribes
    /// go nowhere anyway.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events_sender().subscribe()
    }

    /// The current view and a receiver of exactly the events that follow it: nothing
    /// between the two is missed, and nothing already in the view comes again.
    pub fn subscribe_with_view(&self) -> (View, broadcast::Receiver<Event>) {
        let tx = self.events_sender();
        let _publishing = lock(&self.publishing);
        (self.view.borrow().clone(), tx.subscribe())
    }

    /// Changes what this node registers: `update` edits a copy of the metadata, which is
    /// checked (labels, endpoints, the size the backend carries) and, when it differs,
    /// published for the registration task to write. Nothing changes on `Err`.
    pub fn update_registration(
        &self,
        update: impl FnOnce(&mut autocluster_plugin::Metadata),
    ) -> Result<bool> {
        let _updating = lock(&self.updating);
        let mut next = self.own.borrow().clone();
        update(&mut next.meta);
        // What the engine owns stays: the name, the probed addresses, the start time.
        let own = self.own.borrow();
        next.meta.node.clone_from(&own.meta.node);
        next.meta.addrs.clone_from(&own.meta.addrs);
        next.meta.started_at_ms = own.meta.started_at_ms;
        drop(own);
        crate::metadata::check(&next.meta)?;
        super::check_metadata(&next, &self.backend)?;
        Ok(self.own.send_if_modified(|current| {
            let changed = current.meta != next.meta;
            *current = next;
            changed
        }))
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
    ///
    /// The bound is `call_timeout`, doubled for each time this operation timed out in a row
    /// (at most [`MAX_STRETCH`] times): a server that is slow, not gone, gets the time it
    /// needs instead of the same request again, which it would serve twice (a cancelled
    /// read or write is still done by the server). Any other outcome resets it.
    pub async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let stretch = {
            let slow = lock(&self.slow_calls);
            slow.iter()
                .find(|(op, _)| *op == operation)
                .map_or(0, |(_, n)| *n)
        };
        let bound = self.config.call_timeout * (1u32 << stretch.min(MAX_STRETCH));
        let result = self.call_within(operation, bound, fut).await;
        let timed_out = matches!(&result, Err(e) if e.kind() == ErrorKind::Timeout);
        let mut slow = lock(&self.slow_calls);
        slow.retain(|(op, _)| *op != operation);
        if timed_out {
            slow.push((operation, stretch.saturating_add(1)));
        }
        result
    }

    /// [`Shared::call`] bounded by `bound` rather than `call_timeout` (a keep-alive may wait
    /// for as long as its lease has left).
    pub async fn call_within<T>(
        &self,
        operation: &'static str,
        bound: std::time::Duration,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = match tokio::time::timeout(bound, fut).await {
            Ok(r) => r,
            Err(_) => Err(
                Error::new(ErrorKind::Timeout, format!("no answer within {bound:?}"))
                    .with_backend(self.backend.name())
                    .with_operation(operation),
            ),
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
        // A backend's errors may quote its server (etcd's messages, a DNS answer).
        let shown = Escaped::new(&text).max(1024);
        tracing::warn!(backend = self.backend.name(), operation, kind = %e.kind(), "{shown}");
        self.health.send_modify(|h| {
            h.consecutive_failures += 1;
            h.last_error = Some(text);
            h.last_error_kind = Some(e.kind());
            h.last_error_at = Some(SystemTime::now());
        });
    }

    /// Publishes `view` and then `events` (drained). `watch()` readers are woken only when
    /// the view really changed: its members (the table touches its map only on a change,
    /// so an unchanged map is the same pointer), or whether it is stale or synced. A
    /// keep-alive or a heartbeat that changes nothing wakes nobody.
    pub fn publish(&self, view: &View, events: &mut Vec<Event>) {
        let _publishing = lock(&self.publishing);
        self.view.send_if_modified(|current| {
            let changed = !current.members.ptr_eq(&view.members)
                || current.stale != view.stale
                || current.synced != view.synced;
            *current = view.clone();
            changed
        });
        let me = &self.config.registration.node;
        let in_view = view.members.contains_key(me)
            || self.backend.capabilities().registration == Registrations::None;
        self.health.send_if_modified(|h| {
            let changed = h.stale != view.stale || h.synced != view.synced || h.in_view != in_view;
            h.stale = view.stale;
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

    /// The engine cannot go on: a task panicked or ended on its own. Readiness turns false
    /// with the reason, and the engine stops (deregistering).
    pub fn fail(&self, why: String, kind: Option<autocluster_plugin::ErrorKind>) {
        let shown = Escaped::new(&why).max(1024);
        tracing::error!("{shown}; this node leaves the cluster");
        self.stats.task_failure();
        self.health.send_modify(|h| {
            if h.failed.is_none() {
                h.failed = Some(why);
                h.failed_kind = kind;
            }
        });
        self.cancel.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
