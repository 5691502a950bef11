//! Crash visibility: members with a short `node_ttl` stop keeping their lease alive without
//! revoking it; etcd expires the lease and the delete reaches the watchers.

use std::time::{Duration, Instant};

use autocluster::bench_support::{node_name, Registrar};
use rand::Rng;

use crate::convergence::Stage;
use crate::join_leave::signed_ms;
use crate::members::Members;
use crate::probes::{etcd_config, BoxError, Seen};
use crate::report::{fmt_ms, fmt_s, max, ms, pct, Report};
use crate::verdict::Verdict;

/// Member numbers of the crashed members.
const CRASH_BASE: usize = 2_000_000;

/// `m` members with `node_ttl` = `ttl` join the stage's cluster and crash; one row.
pub async fn run(
    report: &mut Report,
    stage: &Stage,
    endpoint: &str,
    m: usize,
    ttl: Duration,
) -> Result<(), BoxError> {
    let cfg = etcd_config(endpoint, ttl)?;
    let members = Members::new(&cfg, &stage.cluster, None).await?;
    let mut regs = Vec::with_capacity(m);
    for j in 0..m {
        let i = CRASH_BASE + j;
        regs.push((node_name(i).to_string(), members.spawn(i)));
    }
    for (node, _) in &regs {
        for o in &stage.observers {
            if o.rec
                .wait(node, Seen::Join, Duration::from_secs(10))
                .await
                .is_none()
            {
                return Err(format!("crash member {node} never joined").into());
            }
        }
    }
    let kills = futures::future::join_all(
        regs.into_iter()
            .enumerate()
            .map(|(j, (node, reg))| async move { (node, kill(j, reg, ttl).await) }),
    )
    .await;
    row(report, stage, &kills, ttl).await;
    Ok(())
}

/// Crashes member number `j`, and says when. Even ones are killed right after a keep-alive
/// was answered (the lease has its whole TTL left: the worst case), odd ones at a random
/// point of the keep-alive period.
async fn kill(j: usize, reg: Registrar, ttl: Duration) -> Instant {
    if j.is_multiple_of(2) {
        let before = reg.stats().renewals();
        let give_up = Instant::now() + ttl * 2;
        while reg.stats().renewals() == before && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    } else {
        let r = rand::rng().random_range(0..ttl.as_millis() as u64 / 3 + 1);
        tokio::time::sleep(Duration::from_millis(r)).await;
    }
    let at = Instant::now();
    reg.crash();
    at
}

async fn row(report: &mut Report, stage: &Stage, kills: &[(String, Instant)], ttl: Duration) {
    let limit = ttl + Duration::from_secs(1);
    let (mut ours, mut raw, mut delta) = (vec![], vec![], vec![]);
    let mut missed = 0;
    for (node, at) in kills {
        let r = stage
            .raw
            .rec
            .wait(node, Seen::Leave, ttl + Duration::from_secs(10))
            .await;
        if let Some(r) = r {
            raw.push(ms(r - *at));
        }
        for o in &stage.observers {
            match o.rec.wait(node, Seen::Leave, Duration::from_secs(5)).await {
                Some(t) => {
                    ours.push(ms(t - *at));
                    if let Some(r) = r {
                        delta.push(signed_ms(t, r));
                    }
                }
                None => missed += 1,
            }
        }
    }
    report.row(
        format!(
            "crash visible at a peer (node_ttl {} s), {} kills × {} observers: p50 / max from the kill",
            ttl.as_secs(),
            kills.len(),
            stage.observers.len()
        ),
        format!("{} / {}", fmt_s(pct(&ours, 50.0)), fmt_s(max(&ours))),
        format!(
            "{} / {}; ours minus raw, paired: p50 {}, max {}",
            fmt_s(pct(&raw, 50.0)),
            fmt_s(max(&raw)),
            fmt_ms(pct(&delta, 50.0)),
            fmt_ms(max(&delta))
        ),
        "",
        format!("≤ node_ttl + 1 s = {} s", limit.as_secs()),
        Verdict::at_most(max(&ours), ms(limit)).and(Verdict::exactly(missed as f64, 0.0)),
    );
}
