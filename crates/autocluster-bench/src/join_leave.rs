//! Join and clean-leave visibility: members join one after the other in the large cluster,
//! then leave in the same order; each is timed at every observer, at the raw watch and at
//! the polling loop.

use std::time::{Duration, Instant};

use autocluster::bench_support::node_name;
use rand::Rng;

use crate::convergence::Stage;
use crate::probes::{BoxError, Seen, POLL_EVERY};
use crate::report::{fmt_ms, max, ms, pct, ratio, Report};
use crate::verdict::Verdict;

/// Member numbers of the join/leave samples.
const SAMPLE_BASE: usize = 1_000_000;
/// How long a sighting may take before it counts as missing.
const WAIT: Duration = Duration::from_secs(5);

/// `samples` members join, then leave; one row for each, and one for each paired
/// difference to etcd's own watch event.
pub async fn run(report: &mut Report, stage: &Stage, samples: usize) -> Result<(), BoxError> {
    let mut rng = rand::rng();
    let mut joined = Vec::with_capacity(samples);
    for s in 0..samples {
        let i = SAMPLE_BASE + s;
        let node = node_name(i).to_string();
        let t = Instant::now();
        let reg = stage.members.spawn(i);
        wait_everywhere(stage, &node, Seen::Join).await;
        joined.push((node, t, reg));
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..25))).await;
    }
    // The polling loop sees the last joins at its next poll.
    tokio::time::sleep(POLL_EVERY + Duration::from_millis(500)).await;
    let mut leave_starts = Vec::with_capacity(samples);
    let mut join_starts = Vec::with_capacity(samples);
    for (node, t, reg) in joined {
        join_starts.push((node.clone(), t));
        let t = Instant::now();
        reg.leave().await;
        wait_everywhere(stage, &node, Seen::Leave).await;
        leave_starts.push((node, t));
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..25))).await;
    }
    tokio::time::sleep(POLL_EVERY + Duration::from_millis(500)).await;
    rows(report, stage, Seen::Join, &join_starts);
    rows(report, stage, Seen::Leave, &leave_starts);
    Ok(())
}

/// Until every observer and the raw watch saw `node` do `what` (at most [`WAIT`] each).
async fn wait_everywhere(stage: &Stage, node: &str, what: Seen) {
    for o in &stage.observers {
        o.rec.wait(node, what, WAIT).await;
    }
    stage.raw.rec.wait(node, what, WAIT).await;
}

/// Milliseconds from each start to each sighting.
#[derive(Default)]
struct Sightings {
    ours: Vec<f64>,
    raw: Vec<f64>,
    poll: Vec<f64>,
    /// Observer minus raw watch, for the same key.
    delta: Vec<f64>,
    /// Observer sightings missing after [`WAIT`].
    missed: usize,
}

fn sightings(stage: &Stage, what: Seen, starts: &[(String, Instant)]) -> Sightings {
    let mut s = Sightings::default();
    for (node, t) in starts {
        let r = stage.raw.rec.get(node, what);
        if let Some(r) = r {
            s.raw.push(ms(r - *t));
        }
        for o in &stage.observers {
            match (o.rec.get(node, what), r) {
                (Some(seen), Some(r)) => {
                    s.ours.push(ms(seen - *t));
                    s.delta.push(signed_ms(seen, r));
                }
                (Some(seen), None) => s.ours.push(ms(seen - *t)),
                (None, _) => s.missed += 1,
            }
        }
        if let Some(p) = stage.poller.as_ref().and_then(|p| p.rec.get(node, what)) {
            s.poll.push(ms(p - *t));
        }
    }
    s
}

fn rows(report: &mut Report, stage: &Stage, what: Seen, starts: &[(String, Instant)]) {
    let s = sightings(stage, what, starts);
    let (name, from) = match what {
        Seen::Join => ("join", "from the member's start (lease grant + put)"),
        Seen::Leave => ("clean leave", "from the leave call (lease revoke)"),
    };
    let (o50, o99) = (pct(&s.ours, 50.0), pct(&s.ours, 99.0));
    let (r50, r99) = (pct(&s.raw, 50.0), pct(&s.raw, 99.0));
    let (p50, p99) = (pct(&s.poll, 50.0), pct(&s.poll, 99.0));
    report.row(
        format!(
            "{name} visible at a peer, {} members, {} samples × {} observers: p50 / p99 {from}",
            stage.n,
            starts.len(),
            stage.observers.len()
        ),
        format!("{} / {}", fmt_ms(o50), fmt_ms(o99)),
        format!(
            "{} / {} (ours at p50: {} of raw)",
            fmt_ms(r50),
            fmt_ms(r99),
            ratio(o50, r50)
        ),
        format!(
            "{} / {} ({} ours at p50)",
            fmt_ms(p50),
            fmt_ms(p99),
            ratio(p50, o50)
        ),
        "p50 ≤ raw + 2 ms, p99 ≤ raw + 10 ms",
        Verdict::at_most(o50, r50 + 2.0)
            .and(Verdict::at_most(o99, r99 + 10.0))
            .and(Verdict::exactly(s.missed as f64, 0.0)),
    );
    report.row(
        format!(
            "{name}: autocluster's event minus etcd's own watch event, paired: p50 / p99 / max"
        ),
        format!(
            "{} / {} / {}",
            fmt_ms(pct(&s.delta, 50.0)),
            fmt_ms(pct(&s.delta, 99.0)),
            fmt_ms(max(&s.delta))
        ),
        "0",
        "",
        "",
        // Reported; not measured when no sighting could be paired.
        Verdict::reported(s.delta.len() as f64),
    );
    if s.missed > 0 {
        report.note(format!(
            "{name}: {} sightings missing after {} s",
            s.missed,
            WAIT.as_secs()
        ));
    }
}

/// `a - b` in milliseconds, negative when `a` came first.
pub fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        ms(a - b)
    } else {
        -ms(b - a)
    }
}
