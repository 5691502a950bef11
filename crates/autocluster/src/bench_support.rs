//! **Unstable: for autocluster's own benchmarks only.** Nothing here is part of the API: it
//! may change or vanish in any release, semver does not cover it, and applications must not
//! use it. It is compiled only with the `bench-support` feature, which the benchmarks enable.
//!
//! It exposes two engine internals that the benchmarks (`crates/autocluster/benches/` and
//! `crates/autocluster-bench`) drive without a whole node:
//! - [`TableBench`]: the member table plus the view task's publish step (the view on its
//!   `watch` channel, events on the broadcast channel, health, stats), which is what a node
//!   does for every change it receives, without any I/O;
//! - [`Registrar`]: the engine's registration task alone (register, keep alive every
//!   `keep_alive_every`, register again after a loss, deregister on leave) with no view task,
//!   so that thousands of simulated members fit in one process.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autocluster_plugin::{
    async_trait, Capabilities, Change, Discovery, Lease, Member, Metadata, NodeName, Registrations,
    Result, Revision, Snapshot,
};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::table::Table;
use crate::engine::{registration, EngineConfig, Shared, Stats};
use crate::view::{unix_ms, Event, View};

/// A backend that is never called: [`TableBench`] needs one for the publish step only.
#[derive(Debug)]
struct NoBackend;

#[async_trait]
impl Discovery for NoBackend {
    fn name(&self) -> &'static str {
        "bench"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::push().with_registration(
            Registrations::ServerLease,
            Duration::from_secs(60),
            Duration::from_secs(20),
        )
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::default())
    }
}

/// The node name of simulated member `i`: `bench<i>@10.<a>.<b>.<c>`.
pub fn node_name(i: usize) -> NodeName {
    let ip = 10 << 24 | (i as u32 & 0x00ff_ffff);
    let [_, a, b, c] = ip.to_be_bytes();
    NodeName::parse(&format!("bench{i}@10.{a}.{b}.{c}")).expect("a valid node name")
}

/// The metadata a node started by `Cluster::start` registers (name, one address, version,
/// start time), for simulated member `i`.
pub fn metadata(i: usize) -> Metadata {
    let node = node_name(i);
    let addr = format!("{}:4370", node.host());
    Metadata::of(node)
        .with_addrs(vec![addr])
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_started_at_ms(unix_ms(SystemTime::now()))
}

/// Simulated member `i` as the etcd backend reads it back: incarnation (lease id) `lease`,
/// created at revision `created`.
pub fn member(i: usize, lease: u64, created: u64) -> Member {
    Member::new(node_name(i), autocluster_plugin::Incarnation(lease))
        .with_meta(Some(metadata(i)))
        .with_created(Revision(created))
}

/// The member table and the publish step of the view task, as a node runs them for each
/// watch batch: apply the changes, then publish the view (a `watch` channel), health and the
/// events (a broadcast channel with one subscriber that never reads, so the channel keeps
/// every event as it would for a slow application).
pub struct TableBench {
    table: Table,
    shared: Arc<Shared>,
    events: Vec<Event>,
    revision: u64,
    _subscriber: Option<broadcast::Receiver<Event>>,
}

impl Default for TableBench {
    fn default() -> Self {
        Self::new()
    }
}

impl TableBench {
    /// An empty table, with one event subscriber that never reads (an application that
    /// subscribed: the channel keeps the last `event_capacity` events for it).
    pub fn new() -> TableBench {
        let mut t = TableBench::unsubscribed();
        t._subscriber = Some(t.shared.subscribe_events());
        t
    }

    /// An empty table without event subscribers: published events are dropped at once.
    pub fn unsubscribed() -> TableBench {
        let node = node_name(usize::MAX >> 8);
        let config = EngineConfig::new(autocluster_plugin::Registration {
            node,
            meta: Metadata::default(),
        });
        let shared = Shared::new(Arc::new(NoBackend), config);
        TableBench {
            table: Table::new(false),
            shared,
            events: Vec::new(),
            revision: 0,
            _subscriber: None,
        }
    }

    /// A table that holds members `0..n` (read from a first snapshot, as a starting node
    /// does).
    pub fn with_members(n: usize) -> TableBench {
        let mut t = TableBench::new();
        let members = (0..n)
            .map(|i| member(i, i as u64 + 1, i as u64 + 1))
            .collect();
        t.revision = n as u64;
        t.apply_snapshot(Snapshot {
            members,
            revision: Revision(n as u64),
        });
        t
    }

    /// Applies a full snapshot (no grace period: a first sync) and publishes.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> usize {
        self.revision = self.revision.max(snapshot.revision.0);
        self.table
            .apply_snapshot(snapshot, None, Instant::now(), &mut self.events);
        self.publish()
    }

    /// Applies one change at the next revision, publishes the view and the events, and
    /// returns how many events were published.
    pub fn apply(&mut self, change: Change) -> usize {
        self.revision += 1;
        self.table.apply(
            change,
            Revision(self.revision),
            Instant::now(),
            &mut self.events,
        );
        self.publish()
    }

    /// Applies a batch of changes (one watch response) and publishes once.
    pub fn apply_batch(&mut self, changes: impl IntoIterator<Item = Change>) -> usize {
        self.revision += 1;
        let now = Instant::now();
        for c in changes {
            self.table
                .apply(c, Revision(self.revision), now, &mut self.events);
        }
        self.publish()
    }

    fn publish(&mut self) -> usize {
        let n = self.events.len();
        self.shared.publish(self.table.view(), &mut self.events);
        n
    }

    /// How many members the table holds.
    pub fn len(&self) -> usize {
        self.table.view().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The published view.
    pub fn view(&self) -> View {
        self.shared.view.borrow().clone()
    }
}

/// The engine's registration task alone, over `backend`: what a node does to stay
/// registered, without the view task.
pub struct Registrar {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Registrar {
    /// Starts registering on the current tokio runtime.
    pub fn spawn(backend: Arc<dyn Discovery>, config: EngineConfig) -> Registrar {
        let shared = Shared::new(backend, config);
        let task = tokio::spawn(registration::run(shared.clone()));
        Registrar { shared, task }
    }

    /// The current lease, if registered.
    pub fn lease(&self) -> Option<Lease> {
        *self.shared.lease.borrow()
    }

    /// A receiver of the lease, woken at every (re-)registration.
    pub fn watch_lease(&self) -> watch::Receiver<Option<Lease>> {
        self.shared.lease.subscribe()
    }

    /// Counters (registrations, renewals, calls).
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Leaves as `Cluster::leave` does: the task deregisters (revokes the lease) and stops.
    pub async fn leave(self) {
        self.shared.cancel.cancel();
        let _ = self.task.await;
    }

    /// Stops as a crash would (`Cluster::abandon`): no deregistration, no more keep-alives.
    pub fn crash(self) {
        self.task.abort();
        self.shared.cancel.cancel();
    }
}
