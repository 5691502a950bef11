//! The engine's metrics as a [`prometheus_client`] collector: register them in the
//! application's own [`Registry`] with [`Cluster::register_metrics`], and they are read at
//! each scrape (nothing is copied in between).
//!
//! ```no_run
//! # async fn demo() -> Result<(), autocluster::plugin::Error> {
//! use prometheus_client::registry::Registry;
//!
//! let cluster = autocluster::Cluster::from_file("node.conf").await?;
//! let mut registry = Registry::default();
//! cluster.register_metrics(&mut registry);
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! # Ok(()) }
//! ```
//!
//! Every series is named `autocluster_...` (the collector sits in a sub-registry with that
//! prefix); counters end in `_total`. The list is in `docs/cli.md` and `docs/operations.md`.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::engine::Shared;
use crate::probe::ListenerStats;
use crate::view::Status;
use crate::Cluster;

/// The prefix of every series: `autocluster_`.
pub const PREFIX: &str = "autocluster";

/// A collector of one [`Cluster`]'s series: the view, the health and the engine's counters.
/// Cheap to clone; it holds the engine's shared state, not a copy of it.
#[derive(Clone)]
pub struct ClusterMetrics {
    shared: Arc<Shared>,
    listener: Option<Arc<ListenerStats>>,
    cluster_name: Option<Arc<str>>,
    formation: Arc<crate::formation::FormationState>,
}

impl fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterMetrics")
            .field("node", &self.shared.config.registration.node)
            .finish()
    }
}

impl Cluster {
    /// A collector of this cluster's series (see [`crate::metrics`]), for a registry of your
    /// own making; [`Cluster::register_metrics`] is the usual way.
    pub fn metrics(&self) -> ClusterMetrics {
        let (listener, cluster_name) = self.metric_parts();
        ClusterMetrics {
            shared: self.shared().clone(),
            listener,
            cluster_name,
            formation: self.formation_state().clone(),
        }
    }

    /// Registers this cluster's series in `registry`, under the prefix `autocluster`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix(PREFIX)
            .register_collector(Box::new(self.metrics()));
    }
}

impl Collector for ClusterMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.info_and_view(&mut e)?;
        self.engine_counters(&mut e)?;
        self.health_gauges(&mut e)
    }
}

impl ClusterMetrics {
    fn info_and_view(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let node = self.shared.config.registration.node.as_str();
        let mut info = vec![
            ("node", node),
            ("backend", self.shared.backend.name()),
            ("version", env!("CARGO_PKG_VERSION")),
        ];
        if let Some(name) = &self.cluster_name {
            info.insert(2, ("cluster", name));
        }
        let help = "This node, its backend and cluster (always 1)";
        gauges(e, "info", help, [(info, 1)])?;

        let view = self.shared.view.borrow().clone();
        let count = |s: Status| view.members().filter(|m| m.status == s).count();
        let members = [
            ([("status", "running")], count(Status::Running)),
            ([("status", "stopped")], count(Status::Stopped)),
        ];
        gauges(e, "members", "Members in the view, by status", members)?;
        let help = "The backend revision the view reflects";
        gauge(e, "view_revision", help, view.revision.0)
    }

    fn engine_counters(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let s = &self.shared.stats;
        let events = [
            ([("kind", "joined")], s.joined()),
            ([("kind", "left")], s.left()),
            ([("kind", "updated")], s.updated()),
        ];
        let help = "Membership events since start, by kind";
        counters(e, "events", help, events)?;
        let calls = s
            .calls()
            .into_iter()
            .map(|((op, outcome), n)| ([("operation", op), ("outcome", outcome)], n));
        let help = "Backend calls since start, by operation and outcome (ok or an error kind)";
        counters(e, "backend_calls", help, calls)?;
        for (name, help, n) in [
            (
                "lease_renewals",
                "Keep-alives of this node's registration that succeeded",
                s.renewals(),
            ),
            (
                "lease_renewal_failures",
                "Keep-alives of this node's registration that failed",
                s.renewal_failures(),
            ),
            (
                "registrations",
                "Registrations written: the first, and one after each loss",
                s.registrations(),
            ),
            (
                "resyncs",
                "Full resyncs after a gap or a compaction",
                s.resyncs(),
            ),
            (
                "watch_silences",
                "Watches reopened because they said nothing for three progress periods",
                s.watch_silences(),
            ),
            (
                "expiries_postponed",
                "Member expiries postponed because this node had not run when they fell due (paused or starved of CPU)",
                s.expiries_postponed(),
            ),
            (
                "task_failures",
                "Engine tasks that panicked or ended on their own (the node then leaves)",
                s.task_failures(),
            ),
            (
                "formation_foreign_sightings",
                "Members of this cluster name seen carrying another cluster id (two clusters formed)",
                self.formation.sightings.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "invalid_entries",
                "Entries the backend skipped as invalid (garbage keys, bad datagrams)",
                self.shared.backend.invalid_entries(),
            ),
        ] {
            counter(e, name, help, n)?;
        }
        if let Some(listener) = &self.listener {
            let help = "Connections to the peer listener (node.listen) since start, by outcome";
            let all = listener
                .all()
                .into_iter()
                .map(|(o, n)| ([("outcome", o.as_str())], n));
            counters(e, "probe_connections", help, all)?;
        }
        Ok(())
    }

    fn health_gauges(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let health = self.shared.health.borrow().clone();
        let last = health.last_success.map_or(0.0, unix_seconds);
        let help = "When a backend call last succeeded, in seconds since the Unix epoch (0: never)";
        gauge(e, "last_success_timestamp_seconds", help, last)?;
        let help = "Backend calls that failed in a row";
        gauge(e, "consecutive_failures", help, health.consecutive_failures)?;
        let help = "1 while the view is the last known one rather than a live one";
        gauge(e, "stale", help, u64::from(health.stale))?;
        let help = "1 when this node is registered and its view is fresh";
        gauge(e, "ready", help, u64::from(health.is_ready()))
    }
}

/// One counter without labels, `<name>_total`.
pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// One counter family, `<name>_total`, with a sample per label set.
pub fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge without labels.
pub fn gauge<V>(e: &mut DescriptorEncoder, name: &str, help: &str, value: V) -> fmt::Result
where
    V: EncodeGaugeValue + fmt::Debug,
{
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// One gauge family with a sample per label set.
pub fn gauges<L: EncodeLabelSet, V>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result
where
    V: EncodeGaugeValue + fmt::Debug,
{
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
