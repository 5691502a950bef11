//! The engine: one for every backend.
//!
//! | file | duty |
//! |---|---|
//! | `registration.rs` | register, keep the registration alive, register again after a loss, deregister |
//! | `view_task.rs` | read snapshots, follow the watch (or observations, or polls), feed the table |
//! | `table.rs` | the one member table: apply, diff into events, expire |
//! | `freshness.rs` | whether the view is stale, derived in one place |
//! | `probe.rs` | the liveness probe of list-only backends |
//! | `shared.rs` | what the tasks share; publishing the view, the events and the health |
//! | `supervisor.rs` | owns every task and notices one that ends or panics |
//! | `deadlines.rs`, `backoff.rs`, `stats.rs` | per-member timers, retry delays, counters |
//!
//! Every backend call is bounded by a timeout; every failure is retried with backoff; the
//! last view is kept, marked stale, until the backend answers again.

mod backoff;
mod deadlines;
mod freshness;
mod probe;
pub(crate) mod registration;
mod shared;
mod stats;
mod supervisor;
pub(crate) mod table;
mod view_task;

use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{Discovery, Member, Metadata, Registration, Registrations};
use futures::future::BoxFuture;

pub(crate) use backoff::Backoff;
pub(crate) use shared::Shared;
pub use stats::Stats;
use supervisor::Supervisor;

/// Decides whether a candidate runs (the liveness probe of list-only backends), and learns
/// the metadata it serves.
pub type Prober = Arc<dyn Fn(Member) -> BoxFuture<'static, ProbeVerdict> + Send + Sync>;

/// What a [`Prober`] found out about a candidate.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ProbeVerdict {
    /// Whether the candidate runs.
    pub running: bool,
    /// The metadata a running candidate serves (version, labels, endpoints, start time,
    /// cluster id); `None` when it serves none. The view keeps the candidate's own name and
    /// addresses.
    pub meta: Option<Metadata>,
}

impl ProbeVerdict {
    /// The candidate runs, and serves `meta`.
    pub fn running(meta: Option<Metadata>) -> Self {
        ProbeVerdict {
            running: true,
            meta,
        }
    }

    /// The candidate does not run (or is not who the list says).
    pub fn not_running() -> Self {
        ProbeVerdict::default()
    }
}

impl From<bool> for ProbeVerdict {
    fn from(running: bool) -> Self {
        ProbeVerdict {
            running,
            meta: None,
        }
    }
}

/// How the engine drives a backend. Built with [`EngineConfig::new`]; its fields can be set
/// one by one.
#[derive(Clone)]
#[non_exhaustive]
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
            .field("event_capacity", &self.event_capacity)
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

/// Checks that `registration`'s metadata fits what `backend` carries.
pub(crate) fn check_metadata(
    registration: &Registration,
    backend: &Arc<dyn Discovery>,
) -> autocluster_plugin::Result<()> {
    let caps = backend.capabilities();
    // List-only backends carry nothing: peers learn the metadata from the peer probe.
    let (max, carrier) = if caps.candidates_only {
        let max = caps
            .max_metadata_bytes
            .min(crate::probe::MAX_METADATA_BYTES);
        (
            max,
            format!("the peer probe of the {} backend", backend.name()),
        )
    } else {
        (
            caps.max_metadata_bytes,
            format!("the {} backend", backend.name()),
        )
    };
    let len = serde_json::to_vec(&registration.meta).map_or(usize::MAX, |v| v.len());
    if len > max {
        return Err(autocluster_plugin::Error::new(
            autocluster_plugin::ErrorKind::Config,
            format!(
                "the metadata of {} (its version, labels and endpoints: node.labels.*, \
                 node.advertise.*) is {len} bytes as JSON; {carrier} carries at most {max}: \
                 shorten or drop some labels or endpoints",
                registration.node,
            ),
        )
        .with_backend(backend.name()));
    }
    Ok(())
}

/// A task of the caller's that the engine owns (the probe listener), made from the engine's
/// shared state once it exists.
pub(crate) type ExtraTask = Box<dyn FnOnce(&Arc<Shared>) -> BoxFuture<'static, ()> + Send>;

/// A running engine: its shared state, and the supervisor that owns its tasks.
pub(crate) struct Engine {
    pub shared: Arc<Shared>,
    supervisor: Supervisor,
}

impl Engine {
    /// Starts the engine's tasks on the current tokio runtime, with `extra` tasks of the
    /// caller's (the probe listener) owned and watched the same way.
    pub fn spawn(
        backend: Arc<dyn Discovery>,
        config: EngineConfig,
        extra: Vec<(&'static str, ExtraTask)>,
    ) -> Engine {
        let caps = backend.capabilities();
        let shared = Shared::new(backend, config);
        // The caller's tasks (a listener) never end on their own: they stop with the engine.
        let mut tasks: Vec<(&'static str, BoxFuture<'static, ()>)> = extra
            .into_iter()
            .map(|(name, make)| {
                let task = make(&shared);
                let cancel = shared.cancel.clone();
                let until_stopped: BoxFuture<'static, ()> = Box::pin(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = task => {}
                    }
                });
                (name, until_stopped)
            })
            .collect();
        let (probe_tx, probe_rx) = tokio::sync::mpsc::channel(1024);
        if let (true, Some(prober)) = (caps.candidates_only, shared.config.prober.clone()) {
            tasks.push((
                "probe",
                Box::pin(probe::run(shared.clone(), prober, probe_tx)),
            ));
        }
        tasks.push(("view", Box::pin(view_task::run(shared.clone(), probe_rx))));
        if caps.registration != Registrations::None {
            tasks.push(("registration", Box::pin(registration::run(shared.clone()))));
        }
        let late = shared
            .late_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("an engine's shared state starts one engine");
        let supervisor = Supervisor::spawn(shared.clone(), tasks, late);
        Engine { shared, supervisor }
    }

    /// Stops the tasks; the registration task deregisters first (bounded by the call
    /// timeout). Returns whether this node was deregistered (or never registered).
    pub async fn shutdown(&self) -> bool {
        self.shared.cancel.cancel();
        self.supervisor.join().await;
        self.shared.lease.borrow().is_none()
    }

    /// Stops without deregistering, as a crash would: the registration stays until its TTL
    /// runs out.
    pub fn abort(&self) {
        self.supervisor.abort();
        self.shared.cancel.cancel();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
