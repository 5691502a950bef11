//! `GET /metrics`: the engine's counters and the agent's own (its log, its admin endpoint, its
//! hooks) in the Prometheus text format, written by hand. Every name starts with
//! `autocluster_`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use autocluster::{Cluster, Status};

use crate::admin::server::ServerStats;
use crate::hooks::HookStats;

/// The agent's own counters.
#[derive(Debug, Default, Clone)]
pub struct AgentMetrics {
    /// The admin endpoint's connections.
    pub admin: Arc<ServerStats>,
    /// The hooks.
    pub hooks: Arc<HookStats>,
}

/// The metrics of `cluster` and of the agent now.
pub fn render(cluster: &Cluster, cluster_name: &str, agent: &AgentMetrics) -> String {
    let view = cluster.view();
    let stats = cluster.stats();
    let mut m = Metrics::default();

    m.family(
        "autocluster_info",
        "gauge",
        "This node, its backend and cluster",
    );
    m.sample(
        "autocluster_info",
        &[
            ("node", cluster.node().as_str()),
            ("backend", cluster.backend_name()),
            ("cluster", cluster_name),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );

    m.family(
        "autocluster_members",
        "gauge",
        "Members in the view, by status",
    );
    for (status, label) in [(Status::Running, "running"), (Status::Stopped, "stopped")] {
        let n = view.members().filter(|e| e.status == status).count();
        m.sample("autocluster_members", &[("status", label)], n);
    }

    m.family(
        "autocluster_events_total",
        "counter",
        "Membership events since start, by kind",
    );
    for (kind, counter) in [
        ("joined", &stats.joined),
        ("left", &stats.left),
        ("updated", &stats.updated),
    ] {
        let n = counter.load(Ordering::Relaxed);
        m.sample("autocluster_events_total", &[("kind", kind)], n);
    }

    engine_counters(&mut m, cluster);
    m.counter(
        "autocluster_formation_foreign_sightings_total",
        "Members of this cluster name seen carrying another cluster id (two clusters formed)",
        cluster.foreign_sightings(),
    );
    health_gauges(&mut m, &view, &cluster.health());
    agent_metrics(&mut m, agent);
    m.out
}

/// The engine's counters: backend calls, registrations, resyncs, failures.
fn engine_counters(m: &mut Metrics, cluster: &Cluster) {
    let stats = cluster.stats();
    m.family(
        "autocluster_backend_calls_total",
        "counter",
        "Backend calls since start, by operation and outcome (ok or an error kind)",
    );
    for ((operation, outcome), n) in stats.calls() {
        let labels = [("operation", operation), ("outcome", outcome)];
        m.sample("autocluster_backend_calls_total", &labels, n);
    }

    for (name, help, counter) in [
        (
            "autocluster_lease_renewals_total",
            "Keep-alives of this node's registration that succeeded",
            &stats.renewals,
        ),
        (
            "autocluster_lease_renewal_failures_total",
            "Keep-alives of this node's registration that failed",
            &stats.renewal_failures,
        ),
        (
            "autocluster_registrations_total",
            "Registrations written: the first, and one after each loss",
            &stats.registrations,
        ),
        (
            "autocluster_resyncs_total",
            "Full resyncs after a gap or a compaction",
            &stats.resyncs,
        ),
        (
            "autocluster_watch_silences_total",
            "Watches reopened because they said nothing for three progress periods",
            &stats.watch_silences,
        ),
        (
            "autocluster_task_failures_total",
            "Engine tasks that panicked or ended on their own (the node then leaves)",
            &stats.task_failures,
        ),
    ] {
        m.family(name, "counter", help);
        m.sample(name, &[], counter.load(Ordering::Relaxed));
    }

    m.family(
        "autocluster_invalid_entries_total",
        "counter",
        "Entries the backend skipped as invalid (garbage keys, bad datagrams)",
    );
    m.sample(
        "autocluster_invalid_entries_total",
        &[],
        cluster.invalid_entries(),
    );

    if let Some(listener) = cluster.probe_listener() {
        let name = "autocluster_probe_connections_total";
        let help = "Connections to the peer listener (node.listen) since start, by outcome";
        m.family(name, "counter", help);
        for (outcome, n) in listener.all() {
            m.sample(name, &[("outcome", outcome.as_str())], n);
        }
    }
}

/// Gauges of the health and of the view's freshness.
fn health_gauges(m: &mut Metrics, view: &autocluster::View, health: &autocluster::Health) {
    m.family(
        "autocluster_last_success_timestamp_seconds",
        "gauge",
        "When a backend call last succeeded, in seconds since the Unix epoch (0: never)",
    );
    let last = health.last_success.map_or(0.0, unix_seconds);
    m.sample("autocluster_last_success_timestamp_seconds", &[], last);

    m.family(
        "autocluster_consecutive_failures",
        "gauge",
        "Backend calls that failed in a row",
    );
    let failures = health.consecutive_failures;
    m.sample("autocluster_consecutive_failures", &[], failures);

    m.family(
        "autocluster_view_revision",
        "gauge",
        "The backend revision the view reflects",
    );
    m.sample("autocluster_view_revision", &[], view.revision.0);

    m.family(
        "autocluster_stale",
        "gauge",
        "1 while the view is the last known one rather than a live one",
    );
    m.sample("autocluster_stale", &[], u8::from(health.stale));

    m.family(
        "autocluster_ready",
        "gauge",
        "1 when this node is registered and its view is fresh",
    );
    m.sample("autocluster_ready", &[], u8::from(health.is_ready()));
}

/// The agent's own metrics: its log, its admin endpoint, its hooks.
fn agent_metrics(m: &mut Metrics, agent: &AgentMetrics) {
    let (full, write) = crate::logging::dropped();
    m.family(
        "autocluster_log_lines_dropped_total",
        "counter",
        "Log lines not written: the queue to stderr was full (queue_full), or the write failed (write_error)",
    );
    for (reason, n) in [("queue_full", full), ("write_error", write)] {
        m.sample(
            "autocluster_log_lines_dropped_total",
            &[("reason", reason)],
            n,
        );
    }

    let admin = &agent.admin;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    m.gauge(
        "autocluster_admin_connections",
        "Admin connections open",
        load(&admin.open),
    );
    m.gauge(
        "autocluster_admin_connections_max",
        "Admin connections allowed at once (from the open-file limit)",
        load(&admin.max),
    );
    m.counter(
        "autocluster_admin_connections_accepted_total",
        "Admin connections accepted",
        load(&admin.accepted),
    );
    m.family(
        "autocluster_admin_connections_closed_total",
        "counter",
        "Admin connections closed by the agent: to make room (evicted), or for a request head or a write that did not come in time (timeout)",
    );
    for (reason, c) in [("evicted", &admin.evicted), ("timeout", &admin.timed_out)] {
        let labels = [("reason", reason)];
        m.sample(
            "autocluster_admin_connections_closed_total",
            &labels,
            load(c),
        );
    }
    m.counter(
        "autocluster_admin_accept_errors_total",
        "Accepts on the admin endpoint that failed (out of descriptors, say)",
        load(&admin.accept_errors),
    );
    hook_metrics(m, &agent.hooks);
}

fn hook_metrics(m: &mut Metrics, hooks: &HookStats) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    m.family(
        "autocluster_hook_runs_total",
        "counter",
        "--on-change handler runs, by outcome",
    );
    for (outcome, c) in [
        ("ok", &hooks.runs_ok),
        ("failed", &hooks.runs_failed),
        ("timed_out", &hooks.runs_timed_out),
        ("killed_at_stop", &hooks.killed_at_stop),
    ] {
        m.sample(
            "autocluster_hook_runs_total",
            &[("outcome", outcome)],
            load(c),
        );
    }
    m.counter(
        "autocluster_hook_spawn_retries_total",
        "--on-change handler starts retried after a shortage of descriptors, processes or memory",
        load(&hooks.spawn_retries),
    );
    m.family(
        "autocluster_hook_events_dropped_total",
        "counter",
        "Events whose --on-change handler never ran: the handlers fell behind (lagged), or the agent stopped first (stopped)",
    );
    for (reason, c) in [
        ("lagged", &hooks.dropped_lagged),
        ("stopped", &hooks.dropped_at_stop),
    ] {
        let labels = [("reason", reason)];
        m.sample("autocluster_hook_events_dropped_total", &labels, load(c));
    }
    m.counter(
        "autocluster_members_file_write_failures_total",
        "Writes of --members-file that failed (each is retried until one succeeds)",
        load(&hooks.members_file_failures),
    );
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The text being written.
#[derive(Default)]
struct Metrics {
    out: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_escaped_and_labelled() {
        let mut m = Metrics::default();
        m.family("autocluster_x", "gauge", "X");
        m.sample("autocluster_x", &[("a", "q\"b\\\n"), ("b", "c")], 1.5);
        m.sample("autocluster_x", &[], 2);
        assert_eq!(
            m.out,
            "# HELP autocluster_x X\n# TYPE autocluster_x gauge\n\
             autocluster_x{a=\"q\\\"b\\\\\\n\",b=\"c\"} 1.5\nautocluster_x 2\n"
        );
    }
}
