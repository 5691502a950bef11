//! The view as a compact table.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use autocluster::{MemberEntry, NodeName, Status, View};

/// One header line, then one line per member; this node is marked `*`.
///
/// ```text
/// [+2.031s] revision 2, fresh: 2 running, 0 stopped
///   NODE             STATUS   INCARNATION      IN VIEW  ADDRS
/// * emqx@127.0.0.21  running  18f3c2a1b2c30001 2s       127.0.0.21:4370
///   emqx@127.0.0.22  running  18f3c2a1f0d2aa07 0s       127.0.0.22:4370
/// ```
pub fn render(view: &View, me: &NodeName, elapsed: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[+{:.3}s] revision {}, {}: {} running, {} stopped",
        elapsed.as_secs_f64(),
        view.revision.0,
        freshness(view),
        view.running_nodes().len(),
        view.stopped_nodes().len()
    );
    let width = view
        .members()
        .map(|e| e.member.node.as_str().len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let _ = writeln!(
        out,
        "  {:width$}  {:9}  {:16}  {:7}  ADDRS",
        "NODE", "STATUS", "INCARNATION", "IN VIEW"
    );
    for entry in view.members() {
        let _ = writeln!(
            out,
            "{} {:width$}  {:9}  {:16}  {:7}  {}",
            if &entry.member.node == me { '*' } else { ' ' },
            entry.member.node.as_str(),
            status(entry),
            entry.member.incarnation.to_string(),
            format!("{}s", age(entry.since).as_secs()),
            addrs(entry)
        );
    }
    out
}

/// What the table shows, without the clock: the view is republished on every backend batch
/// (a heartbeat, a refresh of a member's TTL), and is worth printing only when this changes.
pub fn signature(view: &View) -> String {
    let mut out = String::from(freshness(view));
    for e in view.members() {
        let _ = write!(
            out,
            "|{} {} {} {}",
            e.member.node,
            status(e),
            e.member.incarnation,
            addrs(e)
        );
    }
    out
}

fn freshness(view: &View) -> &'static str {
    match (view.synced, view.stale) {
        (false, _) => "not synced yet",
        (true, true) => "STALE (last known view; the backend does not answer)",
        (true, false) => "fresh",
    }
}

fn status(entry: &MemberEntry) -> &'static str {
    match (entry.status, entry.vanishing) {
        (Status::Running, false) => "running",
        // gone from a full resync: kept for the grace period, it will likely come back
        (Status::Running, true) => "vanishing",
        (Status::Stopped, _) => "stopped",
    }
}

fn age(since: SystemTime) -> Duration {
    since.elapsed().unwrap_or_default()
}

fn addrs(entry: &MemberEntry) -> String {
    match &entry.member.meta {
        Some(meta) if !meta.addrs.is_empty() => meta.addrs.join(","),
        _ => "-".to_string(),
    }
}
