//! `GET /metrics`: the engine's series (the library's [`autocluster::metrics`] collector) and
//! the agent's own (its log, its admin endpoint, its hooks), encoded by `prometheus-client` in
//! the Prometheus text format. Every name starts with `autocluster_`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use autocluster::metrics::{counter, counters, gauge, PREFIX};
use autocluster::prometheus_client::collector::Collector;
use autocluster::prometheus_client::encoding::{prometheus_text, DescriptorEncoder};
use autocluster::prometheus_client::registry::Registry;
use autocluster::Cluster;

use crate::admin::server::ServerStats;
use crate::hooks::HookStats;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The agent's own counters.
#[derive(Debug, Default, Clone)]
pub struct AgentMetrics {
    /// The admin endpoint's connections.
    pub admin: Arc<ServerStats>,
    /// The hooks.
    pub hooks: Arc<HookStats>,
}

/// The metrics of `cluster` and of the agent now, in the Prometheus text format.
pub fn render(cluster: &Cluster, agent: &AgentMetrics) -> String {
    let mut registry = Registry::default();
    cluster.register_metrics(&mut registry);
    registry
        .sub_registry_with_prefix(PREFIX)
        .register_collector(Box::new(agent.clone()));
    let mut out = String::new();
    // Writing to a String fails only if a collector does; ours do not.
    if let Err(e) = prometheus_text::encode(&mut out, &registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}

impl Collector for AgentMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        log_metrics(&mut e)?;
        admin_metrics(&mut e, &self.admin)?;
        hook_metrics(&mut e, &self.hooks)
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The agent's log.
fn log_metrics(e: &mut DescriptorEncoder) -> fmt::Result {
    let (full, write) = crate::logging::dropped();
    counters(
        e,
        "log_lines_dropped",
        "Log lines not written: the queue to stderr was full (queue_full), or the write failed (write_error)",
        [([("reason", "queue_full")], full), ([("reason", "write_error")], write)],
    )
}

/// The admin endpoint.
fn admin_metrics(e: &mut DescriptorEncoder, admin: &ServerStats) -> fmt::Result {
    gauge(
        e,
        "admin_connections",
        "Admin connections open",
        load(&admin.open),
    )?;
    gauge(
        e,
        "admin_connections_max",
        "Admin connections allowed at once (from the open-file limit)",
        load(&admin.max),
    )?;
    counter(
        e,
        "admin_connections_accepted",
        "Admin connections accepted",
        load(&admin.accepted),
    )?;
    counters(
        e,
        "admin_connections_closed",
        "Admin connections closed by the agent: to make room (evicted), or for a request head or a write that did not come in time (timeout)",
        [
            ([("reason", "evicted")], load(&admin.evicted)),
            ([("reason", "timeout")], load(&admin.timed_out)),
        ],
    )?;
    counter(
        e,
        "admin_accept_errors",
        "Accepts on the admin endpoint that failed (out of descriptors, say)",
        load(&admin.accept_errors),
    )
}

fn hook_metrics(e: &mut DescriptorEncoder, hooks: &HookStats) -> fmt::Result {
    let runs = [
        ("ok", &hooks.runs_ok),
        ("failed", &hooks.runs_failed),
        ("timed_out", &hooks.runs_timed_out),
        ("killed_at_stop", &hooks.killed_at_stop),
    ]
    .map(|(outcome, c)| ([("outcome", outcome)], load(c)));
    counters(e, "hook_runs", "--on-change handler runs, by outcome", runs)?;
    counter(
        e,
        "hook_spawn_retries",
        "--on-change handler starts retried after a shortage of descriptors, processes or memory",
        load(&hooks.spawn_retries),
    )?;
    counters(
        e,
        "hook_events_dropped",
        "Events whose --on-change handler never ran: the handlers fell behind (lagged), or the agent stopped first (stopped)",
        [
            ([("reason", "lagged")], load(&hooks.dropped_lagged)),
            ([("reason", "stopped")], load(&hooks.dropped_at_stop)),
        ],
    )?;
    counter(
        e,
        "members_file_write_failures",
        "Writes of --members-file that failed (each is retried until one succeeds)",
        load(&hooks.members_file_failures),
    )
}
