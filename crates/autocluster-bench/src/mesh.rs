//! `autocluster-bench mesh --agents N`: a full mesh of real `autocluster agent` processes on
//! one etcd (issue 17). Every agent registers and every agent watches, all started at once.
//!
//! It starts its own etcd (the testkit fixture; optionally `--proxies P` etcd gRPC proxies in
//! front of it, the agents split over them), measures a floor first (N bare etcd-client
//! clients in this process: lease + put + prefix watch, until all see all), then starts the
//! N agents and reads a sample of them through their admin `/metrics`, every 500 ms: when
//! every sampled agent sees all N, how long a clean leave takes to reach all sampled, their
//! RSS, etcd's CPU time during formation (`/proc`), and the sampled agents' lease losses,
//! re-registrations, resyncs and timed-out calls during formation. Figures are printed,
//! never asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::grpc_proxy::GrpcProxy;
use clap::Parser;

use crate::machine::{load_average, mib, rss};
use crate::mesh_agents::{raise_nofile, MeshAgent, Spawn};
use crate::mesh_probe::{cpu_seconds, cpu_seconds_precise, get, pid_with_arg, Counters};
use crate::probes::BoxError;

/// How often each sampled agent is read.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// One read's bound.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(
    name = "autocluster-bench mesh",
    about = "N real agents on one etcd, all started at once: convergence, a clean leave, churn"
)]
pub struct MeshArgs {
    /// How many agents.
    #[arg(long, value_name = "N")]
    pub agents: usize,
    /// How many of them are read (spread evenly).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub sample: usize,
    /// etcd gRPC proxies in front of etcd, the agents split over them (0: straight to etcd).
    #[arg(long, default_value_t = 0, value_name = "P")]
    pub proxies: usize,
    /// The agents' `node_ttl`, seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub node_ttl: u64,
    /// How long formation may take before it is reported as not reached, seconds.
    #[arg(long, default_value_t = 150, value_name = "SECS")]
    pub timeout: u64,
    /// The first agent's admin port (agent i listens on base + i).
    #[arg(long, default_value_t = 20000, value_name = "PORT")]
    pub admin_base: u16,
    /// Skip the floor (N raw clients in this process).
    #[arg(long)]
    pub no_floor: bool,
    /// The `autocluster` binary (default: the one next to this binary).
    #[arg(long, value_name = "FILE")]
    pub agent_bin: Option<PathBuf>,
    /// The etcd binary (default: the testkit's choice, /usr/bin/etcd first).
    #[arg(long, value_name = "FILE")]
    pub etcd_bin: Option<PathBuf>,
    /// Keep the agents' configurations and logs in DIR (created; default: a temporary
    /// directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub keep_dir: Option<PathBuf>,
    /// Where etcd (and its proxies) run: `own`, in a session of their own, as a service
    /// manager starts etcd (with Linux's autogroup scheduling the cores are then shared
    /// between etcd's group and the agents' group); `shared`, in this harness's session, where
    /// etcd's threads compete one by one with a thousand agent processes.
    #[arg(long, value_enum, default_value_t = EtcdSession::Own, value_name = "WHERE")]
    pub etcd_session: EtcdSession,
    /// Start the agents with this niceness (`nice -n N`), so that etcd, on the same cores,
    /// comes first, as it does on hosts of its own (0: an equal share, the default).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub agents_nice: i32,
}

/// Where the harness starts etcd, for the scheduler (see [`MeshArgs::etcd_session`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdSession {
    Own,
    Shared,
}

/// How etcd was started, for the report's first line: its session, and whether the kernel
/// groups by session at all.
fn session_label(session: EtcdSession) -> String {
    let autogroup = match std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled") {
        Ok(v) if v.trim() == "1" => "autogroup on",
        Ok(_) => "autogroup off: a session of its own changes nothing for the scheduler",
        Err(_) => "autogroup unknown",
    };
    match session {
        EtcdSession::Own => format!("etcd in a session of its own ({autogroup})"),
        EtcdSession::Shared => format!("etcd in the harness's session ({autogroup})"),
    }
}

/// Runs `autocluster-bench mesh <argv>` (argv without the program and `mesh`); the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let args = match MeshArgs::try_parse_from(
        std::iter::once("autocluster-bench mesh".to_string()).chain(argv),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if args.agents == 0 || args.node_ttl < 3 {
        eprintln!("autocluster-bench mesh: --agents must be at least 1 and --node-ttl at least 3");
        return 2;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return 2;
        }
    };
    // Interrupted, the run is dropped: etcd (in a session of its own, out of reach of the
    // terminal's Ctrl-C), its proxies and the agents are killed by their owners' `Drop`.
    let outcome = rt.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            sig = interrupted() => Err(format!("stopped by {sig}; etcd and the agents with it").into()),
        }
    });
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("autocluster-bench mesh: {e}");
            1
        }
    }
}

/// The first of SIGINT, SIGTERM and SIGHUP, by name (never, when they cannot be caught).
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn run(a: &MeshArgs) -> Result<(), BoxError> {
    let bin = a
        .agent_bin
        .clone()
        .or_else(crate::agent::default_bin)
        .ok_or("no `autocluster` binary next to this one (cargo build --release -p autocluster-cli, or --agent-bin)")?;
    let nofile = raise_nofile();
    let mut builder = EtcdServer::builder().own_session(a.etcd_session == EtcdSession::Own);
    if let Some(b) = &a.etcd_bin {
        builder = builder.binary(b);
    }
    let etcd = builder.start().await?;
    let etcd_pid = pid_with_arg(&format!("--listen-client-urls={}", etcd.endpoint()))
        .ok_or("cannot find etcd's process in /proc")?;
    eprintln!(
        "mesh: etcd {} at {} (pid {etcd_pid}); open files {nofile}; load {}",
        etcd.version(),
        etcd.endpoint(),
        load_average()
    );
    let mut out = Vec::new();
    out.push(format!(
        "mesh, {} agents (niceness {}), node_ttl {} s, {} proxies, etcd {}, {}; load at start {}",
        a.agents,
        a.agents_nice,
        a.node_ttl,
        a.proxies,
        etcd.version(),
        session_label(a.etcd_session),
        load_average()
    ));
    if !a.no_floor {
        out.push(floor(a, &etcd, etcd_pid).await?);
    }
    let mut proxies = Vec::new();
    for _ in 0..a.proxies {
        proxies.push(GrpcProxy::start(&etcd).await?);
    }
    let endpoints: Vec<String> = if proxies.is_empty() {
        vec![etcd.endpoint()]
    } else {
        proxies.iter().map(GrpcProxy::endpoint).collect()
    };
    out.extend(agents(a, &bin, &endpoints, etcd_pid).await?);
    out.push(format!("load at end {}", load_average()));
    drop(proxies);
    println!("{}", out.join("\n"));
    Ok(())
}

async fn floor(a: &MeshArgs, etcd: &EtcdServer, etcd_pid: u32) -> Result<String, BoxError> {
    eprintln!("mesh: floor, {} raw clients", a.agents);
    let cpu0 = cpu_seconds(etcd_pid).unwrap_or(0.0);
    let timeout = Duration::from_secs(a.timeout);
    let f = crate::mesh_floor::run(&etcd.endpoint(), "floor", a.agents, timeout).await?;
    let cpu = cpu_seconds(etcd_pid).unwrap_or(0.0) - cpu0;
    let seen = match f.all_see_all {
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => format!(
            "not within {} s ({} of {} complete, {} failed)",
            a.timeout, f.complete, a.agents, f.failed
        ),
    };
    Ok(format!(
        "floor ({} raw etcd-client clients, one process): all see all {seen}; etcd CPU {cpu:.1} s; load {}",
        a.agents,
        load_average()
    ))
}

/// Starts the agents, reads formation and a clean leave, stops them; the report lines.
async fn agents(
    a: &MeshArgs,
    bin: &std::path::Path,
    endpoints: &[String],
    etcd_pid: u32,
) -> Result<Vec<String>, BoxError> {
    let temp = tempfile::Builder::new()
        .prefix("autocluster-mesh-")
        .tempdir()?;
    let dir = match &a.keep_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let spawn = Spawn {
        bin,
        endpoints,
        node_ttl: Duration::from_secs(a.node_ttl),
        admin_base: a.admin_base,
        dir: &dir,
        nice: a.agents_nice,
    };
    let n = a.agents;
    let k = a.sample.clamp(1, n);
    // The leaver is the last agent; the sample is spread over the others.
    let sampled: Vec<usize> = (0..k).map(|j| j * n.saturating_sub(1).max(1) / k).collect();
    eprintln!("mesh: starting {n} agents; load {}", load_average());
    let cpu0 = cpu_seconds(etcd_pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        all.push(spawn.start(i)?);
    }
    let spawned = t0.elapsed();
    let sample: Vec<&MeshAgent> = sampled.iter().map(|&i| &all[i]).collect();
    let deadline = t0 + Duration::from_secs(a.timeout);
    let formed = wait_counts(&sample, t0, deadline, |c| c.members >= n as u64).await;
    let cpu = cpu_seconds(etcd_pid).unwrap_or(0.0) - cpu0;
    // Where the machine's cores went: every agent's CPU time, from its start.
    let agents_cpu: f64 = all
        .iter()
        .filter_map(|m| cpu_seconds_precise(m.pid()))
        .sum();
    let counters = read_all(&sample).await;
    let failed = failed_calls(&sample).await;
    // And every agent's, once formation is over (read then, they load no one).
    let everyone: Vec<&MeshAgent> = all.iter().collect();
    let mut counters_all = None;
    for chunk in everyone.chunks(100) {
        if let Some((c, read)) = read_all(chunk).await {
            let (sum, total) = counters_all.get_or_insert((Counters::default(), 0));
            sum.add(&c);
            *total += read;
        }
    }
    let mut rss_all: Vec<u64> = sample
        .iter()
        .filter_map(|m| rss(&m.pid().to_string()))
        .collect();
    rss_all.sort_unstable();
    let rss_median = rss_all.get(rss_all.len() / 2).copied().unwrap_or(0);
    let mut lines = vec![format!(
        "agents spawned in {:.2} s; load after formation {}; CPU during formation: etcd {cpu:.1} s, \
         the {n} agents {agents_cpu:.1} s",
        spawned.as_secs_f64(),
        load_average()
    )];
    lines.push(formation_line(n, k, &formed, a.timeout));
    let leave = if n > 1 && formed.iter().all(Option::is_some) {
        all[n - 1].terminate();
        let t1 = Instant::now();
        let d = Instant::now() + Duration::from_secs(30);
        let left = wait_counts(&sample, t1, d, |c| c.members < n as u64).await;
        match left.iter().copied().collect::<Option<Vec<_>>>() {
            Some(v) => format!(
                "≤ {:.2} s",
                v.into_iter().max().unwrap_or_default().as_secs_f64()
            ),
            None => "not seen by all sampled within 30 s".into(),
        }
    } else {
        "not measured (no full formation)".into()
    };
    let exited = all
        .iter_mut()
        .take(n - 1)
        .filter_map(MeshAgent::exited)
        .take(3);
    let exited: Vec<String> = exited.collect();
    lines.push(format!(
        "| {n} | {} | {leave} | {} | {cpu:.1} s |",
        formed_cell(&formed, a.timeout),
        mib(rss_median),
    ));
    lines.push(counts_line(
        "during formation",
        &format!("{k} sampled agents"),
        &counters,
    ));
    lines.push(counts_line(
        "at the end of formation",
        &format!("all {n} agents"),
        &counters_all,
    ));
    lines.push(failed);
    if !exited.is_empty() {
        lines.push(format!(
            "agents that exited on their own (first 3): {exited:?}"
        ));
    }
    drop(all);
    Ok(lines)
}

fn formed_cell(formed: &[Option<Duration>], timeout: u64) -> String {
    match formed.iter().copied().collect::<Option<Vec<_>>>() {
        Some(v) => format!(
            "{:.1} s",
            v.into_iter().max().unwrap_or_default().as_secs_f64()
        ),
        None => format!("**not within {timeout} s**"),
    }
}

fn formation_line(n: usize, k: usize, formed: &[Option<Duration>], timeout: u64) -> String {
    let done: Vec<f64> = formed.iter().flatten().map(Duration::as_secs_f64).collect();
    let first = done.iter().copied().fold(f64::INFINITY, f64::min);
    format!(
        "formation: {} of {k} sampled agents saw all {n} within {timeout} s (first at {:.1} s)",
        done.len(),
        if first.is_finite() { first } else { 0.0 }
    )
}

/// The counters summed over `read` of `whom` (`20 sampled agents`), as `when` they were read.
fn counts_line(when: &str, whom: &str, c: &Option<(Counters, usize)>) -> String {
    match c {
        Some((c, read)) => format!(
            "{when}, over {read} of {whom}: lease losses {}, \
             re-registrations {}, resyncs {}, timed-out calls {}, unavailable calls {}, \
             keep-alives failed {} / ok {}, watches ended as behind {}, silent {}; \
             views {} (sum)",
            c.lease_lost,
            c.registrations.saturating_sub(*read as u64),
            c.resyncs,
            c.timeouts,
            c.unavailable,
            c.renewal_failures,
            c.renewals,
            c.compacted,
            c.silences,
            c.members
        ),
        None => format!("counters: none of {whom} answered /metrics"),
    }
}

/// Reads every sampled agent every `POLL_EVERY` until `done` holds for each (or the
/// deadline): when each first did, counted from `t0`.
async fn wait_counts(
    sample: &[&MeshAgent],
    t0: Instant,
    deadline: Instant,
    done: impl Fn(&Counters) -> bool,
) -> Vec<Option<Duration>> {
    let mut at: Vec<Option<Duration>> = vec![None; sample.len()];
    let done = &done;
    while Instant::now() < deadline && at.iter().any(Option::is_none) {
        let reads = sample
            .iter()
            .enumerate()
            .filter(|(j, _)| at[*j].is_none())
            .map(|(j, m)| async move {
                let c = get(m.admin, "/metrics", READ_TIMEOUT).await.ok()?;
                Counters::parse(&c).ok().filter(done).map(|_| j)
            });
        let results = futures::future::join_all(reads).await;
        let now = t0.elapsed();
        for j in results.into_iter().flatten() {
            at[j] = Some(now);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    at
}

/// The sampled agents' backend calls that did not answer `ok`, summed by operation and
/// outcome: which calls overload makes fail, and how.
async fn failed_calls(sample: &[&MeshAgent]) -> String {
    let reads = sample
        .iter()
        .map(|m| async move { get(m.admin, "/metrics", READ_TIMEOUT).await.ok() });
    let mut by: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for text in futures::future::join_all(reads).await.into_iter().flatten() {
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("autocluster_backend_calls_total{") else {
                continue;
            };
            let Some((labels, value)) = labels.rsplit_once("} ") else {
                continue;
            };
            let label = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix("=\"")?.strip_suffix('"'))
                    .unwrap_or("?")
                    .to_string()
            };
            let (op, outcome) = (label("operation"), label("outcome"));
            if outcome != "ok" {
                *by.entry((op, outcome)).or_default() +=
                    value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            }
        }
    }
    let list: Vec<String> = by
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|((op, outcome), n)| format!("{op} {outcome} {n}"))
        .collect();
    format!(
        "failed calls of the sampled agents, by operation: {}",
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    )
}

/// The sampled agents' counters summed, with how many answered.
async fn read_all(sample: &[&MeshAgent]) -> Option<(Counters, usize)> {
    let reads = sample.iter().map(|m| async move {
        let text = get(m.admin, "/metrics", READ_TIMEOUT).await.ok()?;
        Counters::parse(&text).ok()
    });
    let all: Vec<Counters> = futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect();
    let read = all.len();
    (read > 0).then(|| {
        let mut sum = Counters::default();
        all.iter().for_each(|c| sum.add(c));
        (sum, read)
    })
}
