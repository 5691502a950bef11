//! `autocluster-bench`: the end-to-end benchmarks of docs/benchmarks.md.
//!
//! It starts its own etcd on free loopback ports (the testkit fixture) and measures, in one
//! run, autocluster against etcd's own watch notification (a raw `etcd-client` watch) and
//! against a 1 s polling loop: join, leave and crash visibility at a peer, convergence of N
//! members started at once against a bare etcd-client loop issuing the same N leases and
//! puts, etcd's load in steady state from its `/metrics`, and memory. It prints a markdown
//! table of every figure with its goal, and whether the figure meets it.
//!
//! How members are simulated: each simulated member is the engine's registration task
//! (`bench_support::Registrar`: register = lease grant + put, a keep-alive every
//! `node_ttl / 3` on its own keep-alive stream, revoke on leave) over its own
//! `EtcdBackend::sibling`, so it has its own lease and stream but shares one HTTP/2
//! connection with the other simulated members. Members run no view task. The peers that
//! watch are whole nodes (`Cluster`), each with its own backend and connection.
//!
//! The stages, one file each: `convergence`, `join_leave`, `crashes`, `steady` (etcd's load)
//! and `memory`. What they run: `members` (the simulated members), `probes` (the observers,
//! the raw watch, the polling loop), `agent` (the real binary), `metrics` (etcd's counters),
//! `machine`. `args` resolves the command line into a plan; `report` and `verdict` make the
//! table.
//!
//! `cargo run --release -p autocluster-bench -- --quick` (seconds) or without `--quick` (the
//! full run, a few minutes).

mod agent;
mod args;
mod convergence;
mod crashes;
mod formation;
mod formation_env;
mod join_leave;
mod machine;
mod members;
mod memory;
mod mesh;
mod mesh_agents;
mod mesh_floor;
mod mesh_probe;
mod metrics;
mod probes;
mod report;
mod steady;
mod verdict;

use std::path::Path;
use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::etcd::EtcdServer;
use clap::Parser;

use agent::Agent;
use args::{Args, Plan};
use convergence::Stage;
use machine::{load_average, Machine};
use probes::{etcd_config, BoxError, Seen};
use report::Report;
use steady::Load;

fn main() {
    // `autocluster-bench formation ...`: the formation trials (formation.rs).
    if std::env::args().nth(1).as_deref() == Some("formation") {
        let argv = std::env::args().skip(1).collect();
        std::process::exit(formation::main(argv));
    }
    // `autocluster-bench mesh ...`: real agents in a full mesh (mesh.rs, issue 17).
    if std::env::args().nth(1).as_deref() == Some("mesh") {
        std::process::exit(mesh::main(std::env::args().skip(2).collect()));
    }
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(n) = args.table_memory {
        memory::table_child(n, args.subscribed);
        return;
    }
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("autocluster-bench: {e}");
            std::process::exit(2);
        }
    };
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
    // Figures are reported, not asserted: a missed goal is not a failed run.
    if let Err(e) = runtime.block_on(run(&args, &plan)) {
        eprintln!("autocluster-bench: {e}");
        std::process::exit(1);
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
}

async fn run(args: &Args, plan: &Plan) -> Result<(), BoxError> {
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

    eprintln!("== engine memory per member");
    memory::engine(&mut report, &plan.memory_sizes)?;

    // An agent alone in its cluster; its RSS is read at the end, after minutes idle.
    let agent_bin = args.agent_bin.clone().or_else(agent::default_bin);
    if agent_bin.is_none() {
        report.note(
            "the agent's RSS was not measured: no `autocluster` binary next to this one \
             (build it: cargo build --release -p autocluster-cli, or pass --agent-bin)",
        );
    }
    let mut solo = agent_bin
        .as_deref()
        .map(|bin| Agent::start(bin, &endpoint, "agentsolo", "agent-solo", plan.node_ttl))
        .transpose()?;

    let cfg = etcd_config(&endpoint, plan.node_ttl)?;
    let mut stage = convergence::run_all(&mut report, plan, &cfg, &endpoint).await?;

    eprintln!("== join and leave visibility, {} members", stage.n);
    join_leave::run(&mut report, &stage, plan.samples).await?;

    eprintln!("== crash visibility");
    crashes::run(&mut report, &stage, &endpoint, plan.crashes, plan.crash_ttl).await?;

    eprintln!("== steady state, {} s", plan.steady.as_secs());
    let mut big_agent = match &agent_bin {
        Some(bin) => Some(join_agent(&mut report, bin, &endpoint, &stage, plan).await?),
        None => None,
    };
    let load = steady_load(&mut stage, plan, solo.is_some(), big_agent.is_some());
    // Let the agent finish reading its first snapshot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    steady::run(&mut report, etcd.port(), plan, &load).await?;

    eprintln!("== agent memory");
    if let Some(a) = &mut solo {
        memory::agent(&mut report, a, "alone in its cluster (1 member)");
    }
    if let Some(a) = &mut big_agent {
        let what = format!("{} members in view", stage.n + plan.observers + 1);
        memory::agent(&mut report, a, &what);
    }
    for a in [solo, big_agent].into_iter().flatten() {
        a.stop();
    }
    stage.stop().await;

    let header = header(&machine, &etcd, &load_start, plan, started);
    print_report(&report, &header, args.out.as_deref())
}

/// The line above the table: the machine, etcd, the load, the mode and how long it took.
fn header(
    machine: &Machine,
    etcd: &EtcdServer,
    load_start: &str,
    plan: &Plan,
    started: Instant,
) -> String {
    format!(
        "Machine: {} CPUs ({}), {} memory, {}; etcd {} on loopback; {}; \
         load average (1/5/15 min) {} at start, {} at end; mode {}; {:.0} s.\n",
        machine.cpus,
        machine.cpu_model,
        machine.memory,
        machine.kernel,
        etcd.version(),
        machine.rustc,
        load_start,
        load_average(),
        if plan.quick { "--quick" } else { "full" },
        started.elapsed().as_secs_f64()
    )
}

/// An agent in the large cluster, seen joining by the first observer (or noted).
async fn join_agent(
    report: &mut Report,
    bin: &Path,
    endpoint: &str,
    stage: &Stage,
    plan: &Plan,
) -> Result<Agent, BoxError> {
    let a = Agent::start(bin, endpoint, &stage.cluster, "agent", plan.node_ttl)?;
    let seen = stage.observers[0]
        .rec
        .wait("agent@127.0.0.1", Seen::Join, Duration::from_secs(30))
        .await;
    if seen.is_none() {
        report.note("the agent in the large cluster did not join within 30 s");
    }
    Ok(a)
}

/// What runs in the steady-state window; stops the polling loop (after reading its costs).
fn steady_load(stage: &mut Stage, plan: &Plan, solo: bool, big_agent: bool) -> Load {
    let agents = usize::from(solo) + usize::from(big_agent);
    let poll_costs = match stage.poller.take() {
        Some(p) => {
            let costs = p.costs.lock().unwrap_or_else(|e| e.into_inner());
            let last: Vec<(Duration, usize)> = costs.iter().rev().take(10).copied().collect();
            drop(costs);
            p.stop();
            last
        }
        None => Vec::new(),
    };
    Load {
        nodes: stage.n + plan.observers + agents,
        watches: plan.observers + agents + 1,
        members: stage.n,
        poll_costs,
    }
}

fn print_report(report: &Report, header: &str, out: Option<&Path>) -> Result<(), BoxError> {
    let md = report.markdown(header);
    println!("{md}");
    if let Some(out) = out {
        std::fs::write(out, &md).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    let (met, goals) = report.goals_met();
    eprintln!("autocluster-bench: {met} of {goals} goals met");
    Ok(())
}
