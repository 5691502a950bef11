//! etcd's load in steady state, from its `/metrics` before and after a window: no calls but
//! keep-alives, one keep-alive stream per node, one watch per watching node.

use std::time::{Duration, Instant};

use crate::args::Plan;
use crate::metrics::Metrics;
use crate::probes::BoxError;
use crate::report::{fmt_ms, ms, pct, Report};
use crate::verdict::{keep_alive_bounds, Verdict};

/// What is running during the window.
pub struct Load {
    /// Registered nodes, each keeping its lease alive.
    pub nodes: usize,
    /// Open watches: one per watching node, plus the raw watch.
    pub watches: usize,
    /// Members of the cluster (what a poll would read).
    pub members: usize,
    /// Time and response size of the polling loop's last polls.
    pub poll_costs: Vec<(Duration, usize)>,
}

/// What etcd counted during the window.
struct Window {
    secs: f64,
    range: f64,
    put: f64,
    txn: f64,
    del: f64,
    grant: f64,
    mvcc_range: f64,
    mvcc_put: f64,
    mvcc_txn: f64,
    keep_alives: f64,
    keep_alive_streams: f64,
    watch_started: f64,
    watchers: f64,
    watch_streams: f64,
}

/// Waits `plan.steady` and reports etcd's calls, keep-alives and watches in that window.
pub async fn run(report: &mut Report, port: u16, plan: &Plan, load: &Load) -> Result<(), BoxError> {
    let m1 = Metrics::scrape(port).await?;
    let t1 = Instant::now();
    tokio::time::sleep(plan.steady).await;
    let m2 = Metrics::scrape(port).await?;
    let w = window(&m1, &m2, t1.elapsed().as_secs_f64())?;
    calls_row(report, &w, load);
    keep_alive_row(report, &w, load, plan.keep_alive_every());
    watches_row(report, &w, load);
    Ok(())
}

fn window(m1: &Metrics, m2: &Metrics, secs: f64) -> Result<Window, BoxError> {
    let d = |f: &dyn Fn(&Metrics) -> Result<f64, BoxError>| -> Result<f64, BoxError> {
        Ok(f(m2)? - f(m1)?)
    };
    Ok(Window {
        secs,
        range: d(&|m| m.handled("Range"))?,
        put: d(&|m| m.handled("Put"))?,
        txn: d(&|m| m.handled("Txn"))?,
        del: d(&|m| m.handled("DeleteRange"))?,
        grant: d(&|m| m.handled("LeaseGrant"))?,
        mvcc_range: d(&|m| m.mvcc("range_total"))?,
        mvcc_put: d(&|m| m.mvcc("put_total"))?,
        mvcc_txn: d(&|m| m.mvcc("txn_total"))?,
        keep_alives: d(&|m| m.received("LeaseKeepAlive"))?,
        keep_alive_streams: m2.started("LeaseKeepAlive")? - m2.handled("LeaseKeepAlive")?,
        watch_started: d(&|m| m.started("Watch"))?,
        watchers: m2.mvcc("watcher_total")?,
        watch_streams: m2.mvcc("watch_stream_total")?,
    })
}

fn calls_row(report: &mut Report, w: &Window, load: &Load) {
    let calls = w.range + w.put + w.txn + w.del + w.grant;
    let mvcc = w.mvcc_range + w.mvcc_put + w.mvcc_txn;
    let nodes = load.nodes;
    let (d50, bytes) = if load.poll_costs.is_empty() {
        (f64::NAN, 0)
    } else {
        let ds: Vec<f64> = load.poll_costs.iter().map(|(d, _)| ms(*d)).collect();
        (pct(&ds, 50.0), load.poll_costs[0].1)
    };
    report.row(
        format!(
            "etcd load in steady state, {:.0} s, {nodes} nodes: Range / Put / Txn / DeleteRange / LeaseGrant calls",
            w.secs
        ),
        format!(
            "{} / {} / {} / {} / {} (mvcc range {}, put {}, txn {})",
            w.range, w.put, w.txn, w.del, w.grant, w.mvcc_range, w.mvcc_put, w.mvcc_txn
        ),
        "",
        format!(
            "{nodes} Range/s if every node polled, each {}+ keys, {:.0} KiB, {} (measured)",
            load.members,
            bytes as f64 / 1024.0,
            fmt_ms(d50)
        ),
        "0",
        Verdict::exactly(calls, 0.0).and(Verdict::exactly(mvcc, 0.0)),
    );
}

fn keep_alive_row(report: &mut Report, w: &Window, load: &Load, every: Duration) {
    let nodes = load.nodes;
    let e = every.as_secs_f64();
    let (least, most) = keep_alive_bounds(nodes, Duration::from_secs_f64(w.secs), every);
    report.row(
        format!(
            "keep-alive messages in those {:.0} s (one per node every node_ttl/3 = {e:.0} s); keep-alive streams open",
            w.secs
        ),
        format!(
            "{:.0} ({:.0}/s; {:.2} per node per {e:.0} s); {:.0} streams",
            w.keep_alives,
            w.keep_alives / w.secs,
            w.keep_alives / nodes as f64 / (w.secs / e),
            w.keep_alive_streams
        ),
        "",
        "",
        format!("{least:.0} to {most:.0}; {nodes} streams (one per node)"),
        Verdict::within(w.keep_alives, least, most)
            .and(Verdict::exactly(w.keep_alive_streams, nodes as f64)),
    );
}

fn watches_row(report: &mut Report, w: &Window, load: &Load) {
    report.row(
        "watches open in steady state (etcd's mvcc watcher_total); watch streams opened during the window",
        format!(
            "{:.0} watchers on {:.0} streams; {:.0} opened",
            w.watchers, w.watch_streams, w.watch_started
        ),
        "",
        "",
        format!(
            "{} (one per watching node + the raw watch); 0 opened",
            load.watches
        ),
        Verdict::exactly(w.watchers, load.watches as f64)
            .and(Verdict::exactly(w.watch_started, 0.0)),
    );
}
