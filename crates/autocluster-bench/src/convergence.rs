//! Convergence: N members started at once, against the floor (a bare etcd-client loop issuing
//! the same N lease grants and puts); the largest cluster stays for the stages that follow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autocluster::bench_support::{node_name, Registrar};
use autocluster_etcd::EtcdConfig;
use etcd_client::{Client, PutOptions};
use futures::{StreamExt, TryStreamExt};

use crate::args::Plan;
use crate::members::Members;
use crate::probes::{
    nodes_prefix, BoxError, Observer, Poller, RawWatcher, Recorder, Seen, POLL_EVERY, PREFIX,
};
use crate::report::{fmt_s, max, ms, ratio, Report};
use crate::verdict::Verdict;

/// Requests in flight in the bare etcd-client loop that sets the convergence floor.
const FLOOR_IN_FLIGHT: usize = 64;

/// A cluster under test: its members, observers and probes.
pub struct Stage {
    pub cluster: String,
    pub n: usize,
    pub members: Members,
    pub regs: Vec<Registrar>,
    pub observers: Vec<Observer>,
    pub raw: RawWatcher,
    pub poller: Option<Poller>,
}

impl Stage {
    pub async fn stop(self) {
        if let Some(p) = self.poller {
            p.stop();
        }
        self.raw.stop();
        for o in self.observers {
            o.stop().await;
        }
        futures::stream::iter(self.regs)
            .map(|r| r.leave())
            .buffer_unordered(256)
            .for_each(|_| async {})
            .await;
        drop(self.members);
    }
}

/// One convergence run: `n` members, `k` observers, members' calls bounded to `in_flight`
/// (`None`: unbounded), against `floor`.
struct Run {
    n: usize,
    k: usize,
    floor: Duration,
    in_flight: Option<usize>,
}

/// Every convergence run of the plan: first the largest N with every member calling etcd the
/// moment it starts (as N processes started in the same instant would), then each size with
/// the floor's bound on calls in flight. Returns the largest of those clusters, still running.
pub async fn run_all(
    report: &mut Report,
    plan: &Plan,
    cfg: &EtcdConfig,
    endpoint: &str,
) -> Result<Stage, BoxError> {
    let largest = plan.largest();
    let mut kept: Option<Stage> = None;
    let runs = std::iter::once((largest, None))
        .chain(plan.sizes.iter().map(|&n| (n, Some(FLOOR_IN_FLIGHT))));
    for (n, in_flight) in runs {
        match in_flight {
            None => eprintln!("== convergence, N = {n}, unbounded"),
            Some(_) => eprintln!("== convergence, N = {n}"),
        }
        let floor = floor_run(endpoint, n, plan.node_ttl).await?;
        let run = Run {
            n,
            k: plan.observers,
            floor,
            in_flight,
        };
        let stage = converge(report, cfg, endpoint, &run).await?;
        if in_flight.is_some() && n == largest && kept.is_none() {
            kept = Some(stage);
        } else {
            stage.stop().await;
        }
    }
    kept.ok_or_else(|| "no convergence run".into())
}

/// The bare etcd-client loop: N lease grants + puts, 64 in flight, on a prefix nobody
/// watches. Returns how long it took; the leases are revoked afterwards (not timed).
async fn floor_run(endpoint: &str, n: usize, ttl: Duration) -> Result<Duration, BoxError> {
    let client = Client::connect([endpoint], None).await?;
    let prefix = format!("/{PREFIX}-floor/n{n}/nodes/");
    let value = |i: usize| {
        let node = node_name(i);
        format!(
            r#"{{"node":"{node}","addrs":["{}:4370"],"version":"{}","started_at_ms":1764000000000}}"#,
            node.host(),
            env!("CARGO_PKG_VERSION")
        )
    };
    let ttl = ttl.as_secs() as i64;
    let t0 = Instant::now();
    let leases: Vec<i64> = futures::stream::iter(0..n)
        .map(|i| {
            let mut c = client.clone();
            let key = format!("{prefix}{}", node_name(i));
            let value = value(i);
            async move {
                let l = c.lease_grant(ttl, None).await?;
                c.put(key, value, Some(PutOptions::new().with_lease(l.id())))
                    .await?;
                Ok::<_, etcd_client::Error>(l.id())
            }
        })
        .buffer_unordered(FLOOR_IN_FLIGHT)
        .try_collect()
        .await?;
    let took = t0.elapsed();
    futures::stream::iter(leases)
        .map(|id| {
            let mut c = client.clone();
            async move { c.lease_revoke(id).await }
        })
        .buffer_unordered(FLOOR_IN_FLIGHT)
        .for_each(|_| async {})
        .await;
    Ok(took)
}

async fn converge(
    report: &mut Report,
    cfg: &EtcdConfig,
    endpoint: &str,
    run: &Run,
) -> Result<Stage, BoxError> {
    let cluster = match run.in_flight {
        Some(_) => format!("conv{}", run.n),
        None => format!("burst{}", run.n),
    };
    let prefix = nodes_prefix(&cluster);
    let observers = start_observers(cfg, &cluster, run.k).await?;
    let raw = RawWatcher::start(endpoint, &prefix).await?;
    let poller = Poller::start(endpoint, &prefix, POLL_EVERY).await?;
    let members = Members::new(cfg, &cluster, run.in_flight).await?;
    // Let the first poll go by.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t0 = Instant::now();
    let regs: Vec<Registrar> = (0..run.n).map(|i| members.spawn(i)).collect();
    let last_registered = track_registrations(&regs);
    let n = run.n;
    let timeout = Duration::from_secs(60 + n as u64 / 100);
    let all_seen = |r: &Recorder| r.member_joins().0 >= n;
    let since = |r: &Recorder| ms(r.member_joins().1.unwrap_or(t0) - t0);
    let mut obs_ms = Vec::new();
    for o in &observers {
        if o.rec.wait_until(timeout, all_seen).await {
            obs_ms.push(since(&o.rec));
        } else {
            obs_ms.push(f64::NAN);
            report.note(format!(
                "N = {n}: observer {} saw only {} of {n} members within {timeout:?}",
                o.cluster.node(),
                o.rec.member_joins().0
            ));
        }
    }
    let raw_ms = match raw.rec.wait_until(timeout, all_seen).await {
        true => since(&raw.rec),
        false => f64::NAN,
    };
    let poll_wait = POLL_EVERY * 3 + Duration::from_secs(n as u64 / 1000);
    let poll_ms = match poller.rec.wait_until(poll_wait, all_seen).await {
        true => since(&poller.rec),
        false => f64::NAN,
    };
    let reg_ms = last_registered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map_or(f64::NAN, |t| ms(t - t0));
    let times = Times {
        observers: obs_ms,
        raw: raw_ms,
        poll: poll_ms,
        registered: reg_ms,
    };
    convergence_row(report, run, &times, &retried_registrations(&regs));
    Ok(Stage {
        cluster,
        n,
        members,
        regs,
        observers,
        raw,
        poller: Some(poller),
    })
}

/// `k` observers of `cluster`, each ready and seeing all of them.
async fn start_observers(
    cfg: &EtcdConfig,
    cluster: &str,
    k: usize,
) -> Result<Vec<Observer>, BoxError> {
    let observers: Vec<Observer> = (0..k).map(|j| Observer::start(cfg, cluster, j)).collect();
    for o in &observers {
        if !o.cluster.ready(Duration::from_secs(30)).await {
            return Err(format!("observer {} not ready within 30 s", o.cluster.node()).into());
        }
    }
    let names: Vec<String> = (0..k).map(|j| format!("observer{j}@127.0.0.1")).collect();
    for o in &observers {
        let all = o
            .rec
            .wait_until(Duration::from_secs(10), |r| {
                names.iter().all(|n| r.get(n, Seen::Join).is_some())
            })
            .await;
        if !all {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| o.rec.get(n, Seen::Join).is_none())
                .map(String::as_str)
                .collect();
            return Err(format!(
                "observer {} did not see {} join; its view: {:?}",
                o.cluster.node(),
                missing.join(", "),
                o.cluster.view().running_nodes()
            )
            .into());
        }
    }
    Ok(observers)
}

/// When the last of `regs` registered (held a lease), as it happens.
fn track_registrations(regs: &[Registrar]) -> Arc<Mutex<Option<Instant>>> {
    let last = Arc::new(Mutex::new(None::<Instant>));
    for r in regs {
        let mut rx = r.watch_lease();
        let last = last.clone();
        tokio::spawn(async move {
            if rx.wait_for(|l| l.is_some()).await.is_ok() {
                let at = Instant::now();
                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                *l = Some(l.map_or(at, |t| t.max(at)));
            }
        });
    }
    last
}

/// Registrations that had to be tried again (timeouts, errors), by outcome, as a suffix of
/// the figure ("" when none).
fn retried_registrations(regs: &[Registrar]) -> String {
    let mut retries: BTreeMap<&str, u64> = BTreeMap::new();
    for r in regs {
        for ((op, outcome), count) in r.stats().calls() {
            if op == "register" && outcome != "ok" {
                *retries.entry(outcome).or_default() += count;
            }
        }
    }
    if retries.is_empty() {
        return String::new();
    }
    let list: Vec<String> = retries.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!("; failed register calls, retried: {}", list.join(", "))
}

/// Milliseconds from the start until all members were seen (`NaN`: not within the timeout).
struct Times {
    observers: Vec<f64>,
    raw: f64,
    poll: f64,
    registered: f64,
}

fn convergence_row(report: &mut Report, run: &Run, t: &Times, retries: &str) {
    let (n, k) = (run.n, run.k);
    let worst = if t.observers.iter().any(|v| v.is_nan()) {
        f64::NAN
    } else {
        max(&t.observers)
    };
    let floor_ms = ms(run.floor);
    report.row(
        match run.in_flight {
            Some(f) => format!(
                "convergence: {n} members started at once, their calls {f} in flight on their shared connection; seen by every one of {k} observers"
            ),
            None => format!(
                "convergence: {n} members started at once, every member calling etcd at once (unbounded); seen by every one of {k} observers"
            ),
        },
        format!(
            "{} (all registered at {}; {} the floor{retries})",
            fmt_s(worst),
            fmt_s(t.registered),
            ratio(worst, floor_ms)
        ),
        format!("{} (watch sees all)", fmt_s(t.raw)),
        format!("{} ({} ours)", fmt_s(t.poll), ratio(t.poll, worst)),
        format!(
            "≤ 2 × floor = {} (floor: bare loop, {FLOOR_IN_FLIGHT} in flight: {})",
            fmt_s(2.0 * floor_ms),
            fmt_s(floor_ms)
        ),
        Verdict::at_most(worst, 2.0 * floor_ms),
    );
}
