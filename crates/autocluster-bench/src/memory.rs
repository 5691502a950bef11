//! Memory: the engine's table per member (in a fresh child process for each size) and the
//! agent's resident set.

use std::process::Command;

use autocluster::bench_support::{member, TableBench};
use autocluster::plugin::Change;

use crate::agent::Agent;
use crate::machine::{mib, peak_rss, rss};
use crate::probes::BoxError;
use crate::report::Report;
use crate::verdict::Verdict;

/// The agent's idle RSS goal.
const AGENT_RSS_GOAL: u64 = 15 * 1024 * 1024;

/// The child process (`--table-memory N`): prints the RSS before and after building an
/// engine table of `n` members, and the table's length.
pub fn table_child(n: usize, subscribed: bool) {
    let before = rss("self").unwrap_or(0);
    let mut t = if subscribed {
        TableBench::new()
    } else {
        TableBench::unsubscribed()
    };
    let empty = rss("self").unwrap_or(0);
    for i in 0..n {
        t.apply(Change::Put(member(i, i as u64 + 1, i as u64 + 1)));
    }
    let full = rss("self").unwrap_or(0);
    std::hint::black_box(&t);
    println!("{before} {empty} {full} {}", t.len());
}

/// RSS (before, empty table, full table) of a child process building `n` members.
fn measure_table(n: usize, subscribed: bool) -> Result<(u64, u64, u64), BoxError> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--table-memory").arg(n.to_string());
    if subscribed {
        cmd.arg("--subscribed");
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    match v.as_slice() {
        [b, e, f, len] if *len == n as u64 => Ok((*b, *e, *f)),
        _ => Err(format!("--table-memory {n} printed {text:?}").into()),
    }
}

/// One row per size: the engine's memory per member, without and with an event subscriber.
pub fn engine(report: &mut Report, sizes: &[usize]) -> Result<(), BoxError> {
    for &n in sizes {
        let (b, e, f) = measure_table(n, false)?;
        let (b2, e2, f2) = measure_table(n, true)?;
        let per = f.saturating_sub(e) as f64 / n as f64;
        let per_subscribed = f2.saturating_sub(e2) as f64 / n as f64;
        report.row(
            format!("engine memory per member, {n} members: RSS growth of the table and view / the same with an event subscriber that reads nothing (the channel keeps the last 16,384 events)"),
            format!(
                "{per:.0} B / {per_subscribed:.0} B per member; an empty engine: {} / {} (the event channel, allocated at the first subscription)",
                mib(e.saturating_sub(b)),
                mib(e2.saturating_sub(b2))
            ),
            "",
            "",
            "report",
            Verdict::reported(per).and(Verdict::reported(per_subscribed)),
        );
    }
    Ok(())
}

/// The agent's RSS now, after it idled, against the goal.
pub fn agent(report: &mut Report, a: &mut Agent, what: &str) {
    let what = format!("`autocluster agent` RSS, idle, {what}");
    let now = match a.exited() {
        Some(why) => Err(format!("n/a: the agent exited ({why})")),
        None => rss(&a.pid()).ok_or_else(|| "n/a: no RSS in /proc".to_string()),
    };
    let now = match now {
        Ok(now) => now,
        Err(figure) => {
            report.row(what, figure, "", "", "≤ 15 MiB", Verdict::NotMet);
            return;
        }
    };
    let peak = peak_rss(&a.pid()).map_or("n/a".into(), mib);
    report.row(
        what,
        format!("{} (peak {peak})", mib(now)),
        "",
        "",
        "≤ 15 MiB",
        Verdict::at_most(now as f64, AGENT_RSS_GOAL as f64),
    );
}
