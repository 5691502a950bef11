//! The `--on-change` queue, run for real: an `autocluster agent` on a real etcd, peers that
//! join at once (in-process nodes), and handlers that are real `sh` processes.
//!
//! - A handler that leaves a background process holding its stdout and stderr must not hold
//!   up the handlers queued behind it.
//! - Handlers still queued when the agent stops are reported with their count.
//!
//! Every child process is killed when its guard drops, also on failure; the background
//! processes the handlers start are killed by the test.
#![cfg(feature = "etcd")]

mod common;

use std::path::Path;
use std::time::Duration;

use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::suite::Node;
use common::etcd::{etcd_body, observer};
use common::{node_conf, wait_within, Agent};

const AGENT: &str = "agent@127.0.0.1";
/// Peers that join together.
const PEERS: usize = 8;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// An agent on `server` running `hook` on every event.
fn start_agent(dir: &Path, server: &str, hook: &str) -> Agent {
    let conf = node_conf(dir, "agent", AGENT, &etcd_body(server, "60s"));
    Agent::start_with(&conf, &["--on-change", hook], &[])
}

/// [`PEERS`] in-process nodes, started together.
fn peers(server: &str) -> Vec<Node> {
    (0..PEERS)
        .map(|i| observer(&format!("peer{i}@127.0.0.1"), server, "60s"))
        .collect()
}

/// Waits until `path` has `n` lines; returns them.
fn await_lines(path: &Path, n: usize, within: Duration, agent: &Agent) -> Vec<String> {
    tokio::task::block_in_place(|| {
        wait_within(
            within,
            &format!("{n} lines in {}", path.display()),
            || {
                let text = read(path);
                let lines: Vec<String> = text.lines().map(String::from).collect();
                (lines.len() >= n).then_some(lines)
            },
            || format!("it reads {:?}\n{}", read(path), agent.diag()),
        )
    })
}

/// `sleep 30 &` keeps the handler's stdout and stderr open after the handler exits. Each
/// handler records when it started; the handlers of a burst of joins must run back to back,
/// not one a second (or two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_leaves_a_daemon_does_not_hold_up_the_queue() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let pids = dir.path().join("pids");
    let hook = format!(
        "date +%s%N >> {starts}; sleep 30 & echo $! >> {pids}; echo started",
        starts = starts.display(),
        pids = pids.display()
    );
    let mut agent = start_agent(dir.path(), &etcd.endpoint(), &hook);
    tokio::task::block_in_place(|| agent.wait_ready());
    // The agent's own `joined`.
    await_lines(&starts, 1, Duration::from_secs(10), &agent);

    let peers = peers(&etcd.endpoint());
    let lines = await_lines(&starts, 1 + PEERS, Duration::from_secs(30), &agent);
    let nanos: Vec<u128> = lines[1..]
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let span =
        Duration::from_nanos((nanos.iter().max().unwrap() - nanos.iter().min().unwrap()) as u64);
    eprintln!("{PEERS} handlers of a burst of joins started within {span:?}");
    // Before: at least a second per handler (the pipes' grace), about 2 s in fact.
    assert!(
        span < Duration::from_secs(4),
        "{PEERS} handlers took {span:?} to start\n{}",
        agent.diag()
    );
    let log = agent.log();
    assert!(!log.contains("WARN"), "{log}");

    assert_eq!(tokio::task::block_in_place(|| agent.stop()), Some(0));
    for pid in read(&pids).lines() {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    for p in peers {
        p.leave().await;
    }
}

/// Handlers that take 3 s each, [`PEERS`] joins queued, then SIGTERM: the queued handlers get
/// 5 s; the one still running then is killed and the rest are not run; the log says how many
/// of each, and they add up with those that ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_still_queued_at_stop_are_counted() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let hook = format!(
        "echo \"$AUTOCLUSTER_NODE\" >> {}; sleep 3",
        starts.display()
    );
    let mut agent = start_agent(dir.path(), &etcd.endpoint(), &hook);
    tokio::task::block_in_place(|| agent.wait_ready());
    let peers = peers(&etcd.endpoint());
    // Every join is in the agent's view, so every event is queued for the handlers.
    let mut running: Vec<String> = (0..PEERS).map(|i| format!("peer{i}@127.0.0.1")).collect();
    running.push(AGENT.to_string());
    running.sort();
    tokio::task::block_in_place(|| {
        wait_within(
            Duration::from_secs(30),
            "the agent to see every peer",
            || agent.running_nodes().filter(|r| *r == running),
            || agent.diag(),
        )
    });

    assert_eq!(
        tokio::task::block_in_place(|| agent.stop()),
        Some(0),
        "{}",
        agent.diag()
    );
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("--on-change handlers") && l.contains("at stop"))
        .unwrap_or_else(|| panic!("no line about the handlers dropped at stop:\n{log}"));
    let number = |after: &str| -> usize {
        let (_, rest) = line
            .split_once(after)
            .unwrap_or_else(|| panic!("{after:?} in {line}"));
        rest.split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (killed, not_run) = (number("killed="), number("not_run="));
    let ran = read(&starts).lines().count();
    eprintln!("at stop: {ran} handlers started, {killed} killed while running, {not_run} not run");
    assert!(not_run > 0, "{line}");
    assert_eq!(ran + not_run, 1 + PEERS, "{line}\n{}", read(&starts));
    assert!(killed <= 1, "{line}");
    for p in peers {
        p.leave().await;
    }
}
