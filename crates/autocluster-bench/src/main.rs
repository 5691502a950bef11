//! `autocluster-bench`: the end-to-end benchmarks of docs/benchmarks.md.
//!
//! It starts its own etcd on free loopback ports (the testkit fixture) and measures, in one
//! run, autocluster against etcd's own watch notification (a raw `etcd-client` watch) and
//! against a 1 s polling loop: join, leave and crash visibility at a peer, convergence of N
//! members started at once against a bare etcd-client loop issuing the same N leases and
//! puts, etcd's load in steady state from its `/metrics`, and memory. It prints a markdown
//! table of every figure with its goal.
//!
//! How members are simulated: each simulated member is the engine's registration task
//! (`bench_support::Registrar`: register = lease grant + put, a keep-alive every
//! `node_ttl / 3` on its own keep-alive stream, revoke on leave) over its own
//! `EtcdBackend::sibling`, so it has its own lease and stream but shares one HTTP/2
//! connection with the other simulated members. Members run no view task. The peers that
//! watch are whole nodes (`Cluster`), each with its own backend and connection.
//!
//! `cargo run --release -p autocluster-bench -- --quick` (seconds) or without `--quick` (the
//! full run, a few minutes).

mod machine;
mod metrics;
mod probes;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autocluster::bench_support::{member, node_name, Registrar, TableBench};
use autocluster::plugin::Change;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use clap::Parser;
use etcd_client::{Client, PutOptions};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;

use machine::{load_average, mib, peak_rss, rss, Machine};
use metrics::Metrics;
use probes::{
    etcd_config, nodes_prefix, BoxError, Members, Observer, Poller, RawWatcher, Seen, PREFIX,
};
use report::{fmt_ms, fmt_s, max, ms, pct, ratio, Report};

/// The TTL of the simulated members and observers (the default `node_ttl`).
const NODE_TTL: Duration = Duration::from_secs(60);
/// How often the polling loop reads the prefix.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Requests in flight in the bare etcd-client loop that sets the convergence floor.
const FLOOR_IN_FLIGHT: usize = 64;
/// Member numbers of the join/leave samples and of the crashed members.
const SAMPLE_BASE: usize = 1_000_000;
const CRASH_BASE: usize = 2_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "autocluster-bench",
    about = "End-to-end benchmarks of autocluster on a real etcd (docs/benchmarks.md)"
)]
struct Args {
    /// Small sizes, done in seconds: what CI runs to keep the harness working.
    #[arg(long)]
    quick: bool,
    /// Member counts of the convergence runs; the largest stays as the cluster the other
    /// figures are taken in (default 1000,5000,10000; with --quick 100,500).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    sizes: Option<Vec<usize>>,
    /// Observer nodes watching each cluster (default 3; with --quick 2).
    #[arg(long, value_name = "K")]
    observers: Option<usize>,
    /// Join/leave samples (default 300; with --quick 30).
    #[arg(long, value_name = "S")]
    samples: Option<usize>,
    /// Crashed members (default 10; with --quick 2).
    #[arg(long, value_name = "M")]
    crashes: Option<usize>,
    /// `node_ttl` of the crashed members, in seconds (default 3; with --quick 2).
    #[arg(long, value_name = "SECS")]
    crash_ttl: Option<u64>,
    /// The steady-state window, in seconds (default 45; with --quick 4).
    #[arg(long, value_name = "SECS")]
    steady_secs: Option<u64>,
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The `autocluster` binary whose agent RSS is measured (default: the one next to this
    /// binary; build it with `cargo build --release -p autocluster-cli`).
    #[arg(long, value_name = "FILE")]
    agent_bin: Option<PathBuf>,
    /// The etcd binary (default: the testkit's choice, /usr/bin/etcd first).
    #[arg(long, value_name = "FILE")]
    etcd_bin: Option<PathBuf>,
    /// Internal: measure the engine's memory for this many members, print it and exit.
    #[arg(long, hide = true, value_name = "N")]
    table_memory: Option<usize>,
    /// Internal, with --table-memory: with an event subscriber that never reads.
    #[arg(long, hide = true)]
    subscribed: bool,
}

struct Plan {
    sizes: Vec<usize>,
    observers: usize,
    samples: usize,
    crashes: usize,
    crash_ttl: Duration,
    steady: Duration,
    memory_sizes: Vec<usize>,
}

impl Plan {
    fn from(a: &Args) -> Plan {
        let q = a.quick;
        let mut sizes = a.sizes.clone().unwrap_or_else(|| {
            if q {
                vec![100, 500]
            } else {
                vec![1_000, 5_000, 10_000]
            }
        });
        sizes.retain(|&n| n > 0);
        if sizes.is_empty() {
            sizes.push(100);
        }
        Plan {
            sizes,
            observers: a.observers.unwrap_or(if q { 2 } else { 3 }).max(1),
            samples: a.samples.unwrap_or(if q { 30 } else { 300 }).max(1),
            crashes: a.crashes.unwrap_or(if q { 2 } else { 10 }).max(1),
            crash_ttl: Duration::from_secs(a.crash_ttl.unwrap_or(if q { 2 } else { 3 }).max(2)),
            steady: Duration::from_secs(a.steady_secs.unwrap_or(if q { 4 } else { 45 }).max(1)),
            memory_sizes: if q {
                vec![10_000]
            } else {
                vec![10_000, 100_000]
            },
        }
    }
}

fn main() {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(n) = args.table_memory {
        table_memory(n, args.subscribed);
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(all_met) => {
            // Figures are reported, not asserted: a missed goal is not a failed run.
            let _ = all_met;
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        Err(e) => {
            eprintln!("autocluster-bench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<bool, BoxError> {
    let plan = Plan::from(&args);
    let machine = Machine::read();
    let load_start = load_average();
    let started = Instant::now();

    let mut builder = EtcdServer::builder();
    if let Some(b) = &args.etcd_bin {
        builder = builder.binary(b);
    }
    let etcd = builder.start().await?;
    let endpoint = etcd.endpoint();
    eprintln!(
        "autocluster-bench: etcd {} at {endpoint}; {} CPUs ({}), load {load_start}",
        etcd.version(),
        machine.cpus,
        machine.cpu_model
    );
    let mut report = Report::default();

    // Memory of the engine's table, each size in a fresh process.
    eprintln!("== engine memory per member");
    engine_memory(&mut report, &plan.memory_sizes)?;

    // An agent alone in its cluster; its RSS is read at the end, after minutes idle.
    let agent_bin = args.agent_bin.clone().or_else(default_agent_bin);
    let solo = match &agent_bin {
        Some(bin) => Some(Agent::start(bin, &endpoint, "agentsolo", "agent-solo")?),
        None => {
            report.note(
                "the agent's RSS was not measured: no `autocluster` binary next to this one \
                 (build it: cargo build --release -p autocluster-cli, or pass --agent-bin)",
            );
            None
        }
    };

    // Convergence for each size; the largest cluster stays for what follows.
    let cfg = etcd_config(&endpoint, NODE_TTL)?;
    let mut kept: Option<Stage> = None;
    let largest = *plan.sizes.iter().max().unwrap_or(&100);
    let mut largest_done = false;
    {
        // First, the largest N with every member calling etcd the moment it starts, as N
        // separate processes started in the same instant would.
        let n = largest;
        eprintln!("== convergence, N = {n}, unbounded");
        let floor = floor_run(&endpoint, n).await?;
        let stage =
            convergence(&mut report, &cfg, &endpoint, n, plan.observers, floor, None).await?;
        stage.stop().await;
    }
    for &n in &plan.sizes {
        eprintln!("== convergence, N = {n}");
        let floor = floor_run(&endpoint, n).await?;
        let stage = convergence(
            &mut report,
            &cfg,
            &endpoint,
            n,
            plan.observers,
            floor,
            Some(FLOOR_IN_FLIGHT),
        )
        .await?;
        if n == largest && !largest_done {
            largest_done = true;
            if let Some(old) = kept.replace(stage) {
                old.stop().await;
            }
        } else {
            stage.stop().await;
        }
    }
    let Some(stage) = kept else {
        return Err("no convergence run".into());
    };

    eprintln!("== join and leave visibility, {largest} members");
    latency(&mut report, &stage, plan.samples).await?;

    eprintln!("== crash visibility");
    crashes(&mut report, &stage, &endpoint, plan.crashes, plan.crash_ttl).await?;

    eprintln!("== steady state, {} s", plan.steady.as_secs());
    let big_agent = match &agent_bin {
        Some(bin) => {
            let a = Agent::start(bin, &endpoint, &stage.cluster, "agent")?;
            let seen = stage.observers[0]
                .rec
                .wait("agent@127.0.0.1", Seen::Join, Duration::from_secs(30))
                .await;
            if seen.is_none() {
                report.note("the agent in the large cluster did not join within 30 s");
            }
            Some(a)
        }
        None => None,
    };
    let poll_costs = stage.poller.as_ref().map(|p| {
        p.costs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
    });
    let mut stage = stage;
    if let Some(p) = stage.poller.take() {
        p.stop();
    }
    // Let the agent finish reading its first snapshot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes =
        largest + plan.observers + usize::from(solo.is_some()) + usize::from(big_agent.is_some());
    let watches =
        plan.observers + usize::from(solo.is_some()) + usize::from(big_agent.is_some()) + 1;
    steady_state(
        &mut report,
        etcd.port(),
        plan.steady,
        nodes,
        watches,
        largest,
        poll_costs.unwrap_or_default(),
    )
    .await?;

    eprintln!("== agent memory");
    if let Some(a) = &solo {
        agent_rss(&mut report, a, "alone in its cluster (1 member)", started);
    }
    if let Some(a) = &big_agent {
        agent_rss(
            &mut report,
            a,
            &format!("{} members in view", largest + plan.observers + 1),
            started,
        );
    }
    for a in [solo, big_agent].into_iter().flatten() {
        a.stop();
    }
    stage.stop().await;

    let load_end = load_average();
    let header = format!(
        "Machine: {} CPUs ({}), {} memory, {}; etcd {} on loopback; {}; \
         load average (1/5/15 min) {} at start, {} at end; mode {}; {:.0} s.\n",
        machine.cpus,
        machine.cpu_model,
        machine.memory,
        machine.kernel,
        etcd.version(),
        machine.rustc,
        load_start,
        load_end,
        if args.quick { "--quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    let md = report.markdown(&header);
    println!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md)?;
    }
    Ok(report.rows.iter().all(|r| r.met != Some(false)))
}

// ---------------------------------------------------------------------------------------
// Convergence

/// The bare etcd-client loop: N lease grants + puts, 64 in flight, on a prefix nobody
/// watches. Returns how long it took; the leases are revoked afterwards (not timed).
async fn floor_run(endpoint: &str, n: usize) -> Result<Duration, BoxError> {
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
    let ttl = NODE_TTL.as_secs() as i64;
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

/// A cluster under test: its members, observers and probes.
struct Stage {
    cluster: String,
    n: usize,
    members: Members,
    regs: Vec<Registrar>,
    observers: Vec<Observer>,
    raw: RawWatcher,
    poller: Option<Poller>,
}

impl Stage {
    async fn stop(self) {
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

async fn convergence(
    report: &mut Report,
    cfg: &autocluster_etcd::EtcdConfig,
    endpoint: &str,
    n: usize,
    k: usize,
    floor: Duration,
    in_flight: Option<usize>,
) -> Result<Stage, BoxError> {
    let cluster = match in_flight {
        Some(_) => format!("conv{n}"),
        None => format!("burst{n}"),
    };
    let prefix = nodes_prefix(&cluster);
    let observers: Vec<Observer> = (0..k).map(|j| Observer::start(cfg, &cluster, j)).collect();
    for o in &observers {
        if !o.cluster.ready(Duration::from_secs(30)).await {
            return Err(format!("observer {} not ready within 30 s", o.cluster.node()).into());
        }
    }
    for o in &observers {
        let all = o
            .rec
            .wait_until(Duration::from_secs(10), |r| {
                (0..k).all(|j| {
                    r.get(&format!("observer{j}@127.0.0.1"), Seen::Join)
                        .is_some()
                })
            })
            .await;
        if !all {
            let missing: Vec<String> = (0..k)
                .map(|j| format!("observer{j}@127.0.0.1"))
                .filter(|n| o.rec.get(n, Seen::Join).is_none())
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
    let raw = RawWatcher::start(endpoint, &prefix).await?;
    let poller = Poller::start(endpoint, &prefix, POLL_EVERY).await?;
    let members = Members::new(cfg, &cluster, in_flight).await?;
    // Let the first poll go by.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let registered = Arc::new(AtomicUsize::new(0));
    let last_registered = Arc::new(Mutex::new(None::<Instant>));
    let t0 = Instant::now();
    let regs: Vec<Registrar> = (0..n).map(|i| members.spawn(i)).collect();
    for r in &regs {
        let mut rx = r.watch_lease();
        let (count, last) = (registered.clone(), last_registered.clone());
        tokio::spawn(async move {
            if rx.wait_for(|l| l.is_some()).await.is_ok() {
                let at = Instant::now();
                count.fetch_add(1, Ordering::Relaxed);
                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                *l = Some(l.map_or(at, |t| t.max(at)));
            }
        });
    }
    let timeout = Duration::from_secs(60 + n as u64 / 100);
    let all_seen = |r: &probes::Recorder| r.member_joins().0 >= n;
    let mut obs_ms = Vec::new();
    for o in &observers {
        if o.rec.wait_until(timeout, all_seen).await {
            obs_ms.push(ms(o.rec.member_joins().1.unwrap_or(t0) - t0));
        } else {
            obs_ms.push(f64::NAN);
            report.note(format!(
                "N = {n}: observer {} saw only {} of {n} members within {timeout:?}",
                o.cluster.node(),
                o.rec.member_joins().0
            ));
        }
    }
    let raw_ms = if raw.rec.wait_until(timeout, all_seen).await {
        ms(raw.rec.member_joins().1.unwrap_or(t0) - t0)
    } else {
        f64::NAN
    };
    let poll_ms = if poller
        .rec
        .wait_until(
            POLL_EVERY * 3 + Duration::from_secs(n as u64 / 1000),
            all_seen,
        )
        .await
    {
        ms(poller.rec.member_joins().1.unwrap_or(t0) - t0)
    } else {
        f64::NAN
    };
    let reg_ms = last_registered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map_or(f64::NAN, |t| ms(t - t0));
    // Registrations that had to be tried again (timeouts, errors), by outcome.
    let mut retries: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in &regs {
        for ((op, outcome), count) in r.stats().calls() {
            if op == "register" && outcome != "ok" {
                *retries.entry(outcome).or_default() += count;
            }
        }
    }
    let retries = if retries.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = retries.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("; failed register calls, retried: {}", list.join(", "))
    };
    let worst = if obs_ms.iter().any(|v| v.is_nan()) {
        f64::NAN
    } else {
        max(&obs_ms)
    };
    let floor_ms = ms(floor);
    report.row(
        match in_flight {
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
            fmt_s(reg_ms),
            ratio(worst, floor_ms)
        ),
        format!("{} (watch sees all)", fmt_s(raw_ms)),
        format!("{} ({} ours)", fmt_s(poll_ms), ratio(poll_ms, worst)),
        format!(
            "≤ 2 × floor = {} (floor: bare loop, 64 in flight: {})",
            fmt_s(2.0 * floor_ms),
            fmt_s(floor_ms)
        ),
        Some(!worst.is_nan() && worst <= 2.0 * floor_ms),
    );
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

// ---------------------------------------------------------------------------------------
// Join and leave visibility

async fn latency(report: &mut Report, stage: &Stage, samples: usize) -> Result<(), BoxError> {
    let wait = Duration::from_secs(5);
    let mut rng = rand::rng();
    let mut joined = Vec::with_capacity(samples);
    for s in 0..samples {
        let i = SAMPLE_BASE + s;
        let node = node_name(i).to_string();
        let t = Instant::now();
        let reg = stage.members.spawn(i);
        for o in &stage.observers {
            o.rec.wait(&node, Seen::Join, wait).await;
        }
        stage.raw.rec.wait(&node, Seen::Join, wait).await;
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
        for o in &stage.observers {
            o.rec.wait(&node, Seen::Leave, wait).await;
        }
        stage.raw.rec.wait(&node, Seen::Leave, wait).await;
        leave_starts.push((node, t));
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..25))).await;
    }
    tokio::time::sleep(POLL_EVERY + Duration::from_millis(500)).await;

    for (what, starts, name) in [
        (Seen::Join, &join_starts, "join"),
        (Seen::Leave, &leave_starts, "clean leave"),
    ] {
        let (mut ours, mut raw, mut poll, mut delta) = (vec![], vec![], vec![], vec![]);
        let mut missed = 0;
        for (node, t) in starts.iter() {
            let r = stage.raw.rec.get(node, what);
            if let Some(r) = r {
                raw.push(ms(r - *t));
            }
            for o in &stage.observers {
                match (o.rec.get(node, what), r) {
                    (Some(seen), Some(r)) => {
                        ours.push(ms(seen - *t));
                        delta.push(signed_ms(seen, r));
                    }
                    (Some(seen), None) => ours.push(ms(seen - *t)),
                    (None, _) => missed += 1,
                }
            }
            if let Some(p) = stage.poller.as_ref().and_then(|p| p.rec.get(node, what)) {
                poll.push(ms(p - *t));
            }
        }
        let (o50, o99, r50, r99) = (
            pct(&ours, 50.0),
            pct(&ours, 99.0),
            pct(&raw, 50.0),
            pct(&raw, 99.0),
        );
        let from = if what == Seen::Join {
            "from the member's start (lease grant + put)"
        } else {
            "from the leave call (lease revoke)"
        };
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
                fmt_ms(pct(&poll, 50.0)),
                fmt_ms(pct(&poll, 99.0)),
                ratio(pct(&poll, 50.0), o50)
            ),
            "p50 ≤ raw + 2 ms, p99 ≤ raw + 10 ms",
            Some(missed == 0 && o50 <= r50 + 2.0 && o99 <= r99 + 10.0),
        );
        report.row(
            format!(
                "{name}: autocluster's event minus etcd's own watch event, paired: p50 / p99 / max"
            ),
            format!(
                "{} / {} / {}",
                fmt_ms(pct(&delta, 50.0)),
                fmt_ms(pct(&delta, 99.0)),
                fmt_ms(max(&delta))
            ),
            "0",
            "",
            "",
            None,
        );
        if missed > 0 {
            report.note(format!("{name}: {missed} sightings missing after 5 s"));
        }
    }
    Ok(())
}

fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        ms(a - b)
    } else {
        -ms(b - a)
    }
}

// ---------------------------------------------------------------------------------------
// Crashes

async fn crashes(
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
    // Half are killed right after a keep-alive was answered (the lease has its whole TTL
    // left: the worst case), half at a random point of the keep-alive period.
    let kills = futures::future::join_all(regs.into_iter().enumerate().map(
        |(j, (node, reg))| async move {
            if j % 2 == 0 {
                let before = reg.stats().renewals.load(Ordering::Relaxed);
                let give_up = Instant::now() + ttl * 2;
                while reg.stats().renewals.load(Ordering::Relaxed) == before
                    && Instant::now() < give_up
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } else {
                let r = rand::rng().random_range(0..ttl.as_millis() as u64 / 3 + 1);
                tokio::time::sleep(Duration::from_millis(r)).await;
            }
            let at = Instant::now();
            reg.crash();
            (node, at)
        },
    ))
    .await;
    let limit = ttl + Duration::from_secs(1);
    let (mut ours, mut raw, mut delta) = (vec![], vec![], vec![]);
    let mut missed = 0;
    for (node, at) in &kills {
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
            "crash visible at a peer (node_ttl {} s), {m} kills × {} observers: p50 / max from the kill",
            ttl.as_secs(),
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
        Some(missed == 0 && max(&ours) <= ms(limit)),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Steady state

async fn steady_state(
    report: &mut Report,
    port: u16,
    window: Duration,
    nodes: usize,
    watches: usize,
    members: usize,
    poll_costs: Vec<(Duration, usize)>,
) -> Result<(), BoxError> {
    let m1 = Metrics::scrape(port).await?;
    let t1 = Instant::now();
    tokio::time::sleep(window).await;
    let m2 = Metrics::scrape(port).await?;
    let secs = t1.elapsed().as_secs_f64();
    let d = |f: &dyn Fn(&Metrics) -> f64| f(&m2) - f(&m1);
    let range = d(&|m| m.handled("Range"));
    let put = d(&|m| m.handled("Put"));
    let txn = d(&|m| m.handled("Txn"));
    let del = d(&|m| m.handled("DeleteRange"));
    let grant = d(&|m| m.handled("LeaseGrant"));
    let mvcc_range = d(&|m| m.get("etcd_debugging_mvcc_range_total"));
    let mvcc_put = d(&|m| m.get("etcd_debugging_mvcc_put_total"));
    let mvcc_txn = d(&|m| m.get("etcd_debugging_mvcc_txn_total"));
    let keepalives = d(&|m| m.received("LeaseKeepAlive"));
    let watch_started = d(&|m| m.started("Watch"));
    let watchers = m2.get("etcd_debugging_mvcc_watcher_total");
    let streams = m2.get("etcd_debugging_mvcc_watch_stream_total");
    let ka_streams = m2.started("LeaseKeepAlive")
        - m2.sum(
            "grpc_server_handled_total",
            &["grpc_method=\"LeaseKeepAlive\""],
        );

    let every = NODE_TTL.as_secs_f64() / 3.0;
    let expected = nodes as f64 * secs / every;
    let calls_zero =
        range + put + txn + del + grant == 0.0 && mvcc_range + mvcc_put + mvcc_txn == 0.0;
    report.row(
        format!("etcd load in steady state, {secs:.0} s, {nodes} nodes: Range / Put / Txn / DeleteRange / LeaseGrant calls"),
        format!(
            "{range} / {put} / {txn} / {del} / {grant} (mvcc range {mvcc_range}, put {mvcc_put}, txn {mvcc_txn})"
        ),
        "",
        {
            let (d50, bytes) = if poll_costs.is_empty() {
                (f64::NAN, 0)
            } else {
                let ds: Vec<f64> = poll_costs.iter().map(|(d, _)| ms(*d)).collect();
                (pct(&ds, 50.0), poll_costs[0].1)
            };
            format!(
                "{} Range/s if every node polled, each {members}+ keys, {:.0} KiB, {} (measured)",
                nodes,
                bytes as f64 / 1024.0,
                fmt_ms(d50)
            )
        },
        "0",
        Some(calls_zero),
    );
    report.row(
        format!("keep-alive messages in those {secs:.0} s (one per node every node_ttl/3 = {every:.0} s)"),
        format!(
            "{keepalives:.0} ({:.0}/s; {:.2} per node per {every:.0} s); {ka_streams:.0} keep-alive streams open",
            keepalives / secs,
            keepalives / nodes as f64 / (secs / every)
        ),
        "",
        "",
        format!("≈ {expected:.0} (0.75× to 1.25×)"),
        // A window shorter than two keep-alive periods may hold none at all.
        Some(keepalives <= expected * 1.25 && (secs < 2.0 * every || keepalives >= expected * 0.75)),
    );
    report.row(
        "watches open in steady state (etcd_debugging_mvcc_watcher_total); watch streams opened during the window",
        format!("{watchers:.0} watchers on {streams:.0} streams; {watch_started:.0} opened"),
        "",
        "",
        format!("{watches} (one per watching node + the raw watch); 0 opened"),
        Some(watchers as usize == watches && watch_started == 0.0),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory

/// The child process: RSS before and after building an engine table of `n` members.
fn table_memory(n: usize, subscribed: bool) {
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

fn engine_memory(report: &mut Report, sizes: &[usize]) -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    let measure = |n: usize, subscribed: bool| -> Result<(u64, u64, u64), BoxError> {
        let mut cmd = Command::new(&exe);
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
            [b, e, f, _] => Ok((*b, *e, *f)),
            _ => Err(format!("--table-memory printed {text:?}").into()),
        }
    };
    for &n in sizes {
        let (b, e, f) = measure(n, false)?;
        let (b2, e2, f2) = measure(n, true)?;
        report.row(
            format!("engine memory per member, {n} members: RSS growth of the table and view / the same with an event subscriber that reads nothing (the channel keeps the last 16,384 events)"),
            format!(
                "{:.0} B / {:.0} B per member; an empty engine: {} / {} (the event channel, allocated at the first subscription)",
                (f.saturating_sub(e)) as f64 / n as f64,
                (f2.saturating_sub(e2)) as f64 / n as f64,
                mib(e.saturating_sub(b)),
                mib(e2.saturating_sub(b2))
            ),
            "",
            "",
            "report",
            None,
        );
    }
    Ok(())
}

fn default_agent_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("autocluster");
    p.is_file().then_some(p)
}

/// An `autocluster agent` process in a cluster.
struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(bin: &Path, endpoint: &str, cluster: &str, name: &str) -> Result<Agent, BoxError> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("node.conf");
        std::fs::write(
            &conf,
            format!(
                "node.name = {name}@127.0.0.1\nnode.cookie = benchcookie\n\
                 cluster.name = {cluster}\ncluster.discovery = etcd\n\
                 cluster.etcd.server = {endpoint}\ncluster.etcd.prefix = {PREFIX}\n\
                 cluster.etcd.node_ttl = {}s\n",
                NODE_TTL.as_secs()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let child = Command::new(bin)
            .arg("agent")
            .arg("-c")
            .arg(&conf)
            .args(["--admin", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Agent { child, _dir: dir })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn agent_rss(report: &mut Report, a: &Agent, what: &str, since: Instant) {
    let pid = a.pid();
    let (Some(now), peak) = (rss(&pid), peak_rss(&pid)) else {
        report.note(format!("agent {what}: no RSS (exited?)"));
        return;
    };
    report.row(
        format!("`autocluster agent` RSS, idle, {what}"),
        format!("{} (peak {})", mib(now), peak.map_or("n/a".into(), mib)),
        "",
        "",
        "< 15 MiB",
        Some(now < 15 * 1024 * 1024),
    );
    let _ = since;
}
