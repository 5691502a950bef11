//! `autocluster-bench formation`: formation trials (docs/formation.md). Each trial starts N
//! fresh nodes (in-process `Cluster`s over the real backend: a fresh cluster name per trial)
//! with random start delays, lets every node decide, and counts the trials in which every
//! node reached the same decision: one cluster id, exactly one seed, every other node joining
//! it. Variants: a node arriving after formation (`--late`), the etcd connection of one node
//! cut during formation (`--cut`, through a TCP proxy).
//!
//! `cargo run --release -p autocluster-bench -- formation --nodes 5 --trials 1000
//! --discovery etcd --jitter 200`

use std::time::{Duration, Instant};

use autocluster::{Cluster, Formation, Role, Settings};
use autocluster_testkit::fixtures::proxy::Proxy;
use clap::Parser;
use rand::Rng;

use crate::formation_env::{Discovery, Env};
use crate::probes::BoxError;
use crate::report::{fmt_ms, pct};

#[derive(Parser, Debug)]
#[command(
    name = "autocluster-bench formation",
    about = "Formation trials: N fresh nodes per trial decide to seed or join; exactly one seed?"
)]
pub struct FormationArgs {
    /// Nodes per trial.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Trials.
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// The backend.
    #[arg(long, value_enum, default_value_t = Discovery::Etcd)]
    discovery: Discovery,
    /// Each node starts after a random delay of 0 to this many milliseconds.
    #[arg(long, default_value_t = 200)]
    jitter: u64,
    /// `cluster.formation.stable_for`, in milliseconds.
    #[arg(long, default_value_t = 300)]
    stable_for: u64,
    /// `cluster.formation.timeout`, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// After formation, one more node arrives: it must join the cluster formed.
    #[arg(long)]
    late: bool,
    /// etcd only: node 0 reaches etcd through a proxy that is cut during formation (for
    /// `stable_for`, at a random moment within the jitter) and healed.
    #[arg(long)]
    cut: bool,
    /// Trials run at once (each has its own cluster name).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// The etcd binary.
    #[arg(long)]
    etcd_bin: Option<std::path::PathBuf>,
}

/// One trial's outcome.
struct Trial {
    ok: bool,
    why: String,
    /// Per node: from its start to its decision.
    took: Vec<Duration>,
}

/// Runs `formation` with the arguments after the subcommand; the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let args = FormationArgs::parse_from(argv);
    if args.cut && args.discovery != Discovery::Etcd {
        eprintln!("autocluster-bench formation: --cut needs --discovery etcd");
        return 2;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return 2;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(all_ok) => i32::from(!all_ok),
        Err(e) => {
            eprintln!("autocluster-bench formation: {e}");
            2
        }
    }
}

async fn run(a: &FormationArgs) -> Result<bool, BoxError> {
    let env = Env::start(
        a.discovery,
        a.trials,
        a.nodes,
        Duration::from_millis(a.stable_for),
        Duration::from_secs(a.timeout),
        a.etcd_bin.as_deref(),
    )
    .await?;
    let started = Instant::now();
    let mut ok = 0;
    let mut took = Vec::new();
    let mut t = 0;
    while t < a.trials {
        let batch: Vec<usize> = (t..(t + a.parallel.max(1)).min(a.trials)).collect();
        t += batch.len();
        let results = futures::future::join_all(batch.iter().map(|&t| trial(&env, a, t))).await;
        for (i, r) in batch.iter().zip(results) {
            if r.ok {
                ok += 1;
            } else {
                eprintln!("trial {i}: FAILED: {}", r.why);
            }
            took.extend(r.took.iter().map(|d| d.as_secs_f64() * 1000.0));
        }
        if t % 50 == 0 || t == a.trials {
            eprintln!(
                "{t} trials, {ok} formed one cluster ({:?})",
                started.elapsed()
            );
        }
    }
    let variant = match (a.late, a.cut) {
        (true, true) => ", a late node, one node's etcd connection cut",
        (true, false) => ", a late node",
        (false, true) => ", one node's etcd connection cut",
        _ => "",
    };
    println!(
        "formation on {:?}: {} nodes per trial, start jitter 0-{} ms, stable_for {} ms{variant}; {:.0} s",
        a.discovery,
        a.nodes,
        a.jitter,
        a.stable_for,
        started.elapsed().as_secs_f64()
    );
    println!(
        "time to decision (each node, from its start): p50 {} p99 {} max {}",
        fmt_ms(pct(&took, 50.0)),
        fmt_ms(pct(&took, 99.0)),
        fmt_ms(pct(&took, 100.0))
    );
    println!("{ok} of {} trials formed one cluster", a.trials);
    Ok(ok == a.trials)
}

/// One trial: start the nodes, let each decide, check, then stop them all.
async fn trial(env: &Env, a: &FormationArgs, t: usize) -> Trial {
    let proxy = match (a.cut, &env.etcd) {
        (true, Some(etcd)) => match etcd_addr(&etcd.endpoint()) {
            Some(addr) => Proxy::start(addr).await.ok(),
            None => None,
        },
        _ => None,
    };
    let starts = (0..env.nodes).map(|i| {
        let delay = Duration::from_millis(rand::rng().random_range(0..=a.jitter));
        let settings = env.settings(t, i, if i == 0 { proxy.as_ref() } else { None });
        node(settings, delay)
    });
    let cut = async {
        if let Some(p) = &proxy {
            let at = Duration::from_millis(rand::rng().random_range(0..=a.jitter));
            tokio::time::sleep(at).await;
            p.cut();
            tokio::time::sleep(env.stable_for).await;
            p.heal();
        }
    };
    let (nodes, ()) = tokio::join!(futures::future::join_all(starts), cut);
    let mut outcome = judge(&nodes);
    if outcome.ok && a.late {
        let late = node(env.settings(t, env.nodes, None), Duration::ZERO).await;
        outcome = judge_late(&nodes, &late, outcome);
        stop(&[late]).await;
    }
    stop(&nodes).await;
    outcome
}

type Decided = (Option<Cluster>, Result<Formation, String>, Duration);

/// A node: waits `delay`, starts, forms.
async fn node(settings: Vec<(String, String)>, delay: Duration) -> Decided {
    tokio::time::sleep(delay).await;
    let t0 = Instant::now();
    let settings = match Settings::from_pairs(settings) {
        Ok(s) => s,
        Err(e) => return (None, Err(e.to_string()), t0.elapsed()),
    };
    let cluster = match Cluster::start(&settings).await {
        Ok(c) => c,
        Err(e) => return (None, Err(e.to_string()), t0.elapsed()),
    };
    let f = cluster.form().await.map_err(|e| e.to_string());
    (Some(cluster), f, t0.elapsed())
}

/// Every node decided, one cluster id, exactly one seed, every other node joins it.
fn judge(nodes: &[Decided]) -> Trial {
    let took = nodes.iter().map(|n| n.2).collect();
    let fail = |why: String| Trial {
        ok: false,
        why,
        took: Vec::new(),
    };
    let mut decisions = Vec::new();
    for (c, f, _) in nodes {
        match f {
            Ok(f) => decisions.push((c.as_ref().map(|c| c.node().clone()), f)),
            Err(e) => return fail(format!("a node did not decide: {e}")),
        }
    }
    let seeds: Vec<_> = decisions
        .iter()
        .filter(|(_, f)| f.role == Role::Seed)
        .collect();
    let summary = || {
        decisions
            .iter()
            .map(|(n, f)| format!("{:?}: {} {} {}", n, f.role.as_str(), f.target, f.cluster_id))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if seeds.len() != 1 {
        return fail(format!("{} seeds: {}", seeds.len(), summary()));
    }
    let seed = &seeds[0].1;
    if decisions
        .iter()
        .any(|(_, f)| f.target != seed.target || f.cluster_id != seed.cluster_id)
    {
        return fail(format!("decisions differ: {}", summary()));
    }
    Trial {
        ok: true,
        why: String::new(),
        took,
    }
}

/// The late node joins the cluster formed: its seed, its id.
fn judge_late(nodes: &[Decided], late: &Decided, mut outcome: Trial) -> Trial {
    let seed = nodes
        .iter()
        .filter_map(|n| n.1.as_ref().ok())
        .find(|f| f.role == Role::Seed);
    match (&late.1, seed) {
        (Ok(f), Some(s)) if f.role == Role::Join && f.cluster_id == s.cluster_id => {
            outcome.took.push(late.2);
        }
        (Ok(f), _) => {
            outcome.ok = false;
            outcome.why = format!(
                "the late node decided {} {} {} (the cluster: {:?})",
                f.role.as_str(),
                f.target,
                f.cluster_id,
                seed.map(|s| (&s.target, &s.cluster_id))
            );
        }
        (Err(e), _) => {
            outcome.ok = false;
            outcome.why = format!("the late node did not decide: {e}");
        }
    }
    outcome
}

async fn stop(nodes: &[Decided]) {
    futures::future::join_all(nodes.iter().filter_map(|n| n.0.as_ref()).map(|c| c.leave())).await;
}

fn etcd_addr(endpoint: &str) -> Option<std::net::SocketAddr> {
    endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .ok()
}
