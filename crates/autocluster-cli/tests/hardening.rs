//! The agent against what its surroundings do to it, run for real: `autocluster agent`
//! processes on a real etcd (the test kit's fixture), watched by in-process observers.
//!
//! - Its stderr closes (`autocluster agent ... 2>&1 | head -c 100`, a log collector that
//!   restarts), or nobody reads it (a full pipe): the view keeps changing, the agent stays
//!   ready, the lines it could not write are counted, and SIGTERM still deregisters.
//! - SIGHUP, SIGINT, SIGTERM and SIGQUIT each make it leave: peers see `left`, reason
//!   `deregistered`, at once.
//!
//! Every agent has `cluster.etcd.node_ttl = 60s`: a peer that sees it go within [`PROMPT`]
//! saw a deregistration, not a lease running out. Every child process is killed when its
//! guard drops, also on failure.
#![cfg(feature = "etcd")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use autocluster::{EventKind, LeftReason};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::suite::Node;
use common::etcd::{etcd_body, observer};
use common::{ms, node_conf, wait_within, Agent, Launch};

/// The lease TTL of every node here: far longer than any wait below.
const NODE_TTL: &str = "60s";
/// How soon a deregistration is seen.
const PROMPT: Duration = Duration::from_secs(5);
/// How long a signalled agent may take to exit.
const EXIT: Duration = Duration::from_secs(15);

const AGENT: &str = "agent@127.0.0.1";
const PEER: &str = "peer@127.0.0.1";
const WATCHER: &str = "watcher@127.0.0.1";

/// Runs a blocking wait on this worker thread (the runtime moves its other tasks away).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// An agent for `node` on `server`, started as `launch` says.
fn start_agent(dir: &Path, node: &str, server: &str, launch: Launch) -> Agent {
    let file = node.replace('@', "_");
    let conf = node_conf(dir, &file, node, &etcd_body(server, NODE_TTL));
    Agent::launch(&conf, launch)
}

/// Waits until the agent's `/status` lists exactly `nodes` running.
fn await_running(agent: &Agent, nodes: &[&str]) {
    let mut want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    want.sort();
    blocking(|| {
        wait_within(
            Duration::from_secs(20),
            &format!("{} to see {want:?} running", agent.name),
            || agent.running_nodes().filter(|r| *r == want),
            || format!("/status: {:?}\n{}", agent.status(), agent.diag()),
        )
    });
}

/// Waits until `observer` sees `node` go, at most [`PROMPT`] after `since`; checks that the
/// last event about it is a `left` with reason `deregistered`.
async fn await_deregistered(observer: &Node, node: &str, since: Instant) {
    let others: Vec<String> = observer
        .cluster
        .view()
        .running_nodes()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| n != node)
        .collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    observer.wait_for_running(&others, PROMPT).await;
    observer.wait_count(node, EventKind::Left, 1, PROMPT).await;
    let last = observer
        .events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e.node.as_str() == node)
        .map(|e| (e.kind, e.reason));
    assert_eq!(
        last,
        Some((EventKind::Left, Some(LeftReason::Deregistered))),
        "{node}: {:?}",
        observer.summary()
    );
    eprintln!(
        "{node}: seen leaving {} after the signal",
        ms(since.elapsed())
    );
}

/// The etcd keys of the nodes, by name.
async fn keys(etcd: &EtcdServer) -> Vec<String> {
    let out = etcd
        .etcdctl(&["get", "--prefix", "--keys-only", "/emqxcl/emqxcl/nodes/"])
        .await
        .unwrap();
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect()
}

/// Reads `stderr` until a line contains `marker`; returns the lines read.
fn read_until(stderr: impl std::io::Read, marker: &str) -> String {
    let mut seen = String::new();
    let mut reader = BufReader::new(stderr);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => panic!("stderr ended before {marker:?}:\n{seen}"),
            Ok(_) => seen.push_str(&line),
        }
        if line.contains(marker) {
            return seen;
        }
    }
}

/// A peer joins and leaves while the agent cannot write its log; the agent sees both, stays
/// ready, counts the lines it dropped for `reason`, and leaves on SIGTERM (exit 0, its key
/// gone at once). First, `bad_requests` connections to its admin endpoint each send garbage
/// (the agent logs each at `debug`).
async fn survives_its_log(etcd: &EtcdServer, mut agent: Agent, reason: &str, bad_requests: usize) {
    let server = etcd.endpoint();
    blocking(|| agent.wait_ready());
    await_running(&agent, &[AGENT]);
    blocking(|| send_garbage(agent.admin(), bad_requests));
    let peer = observer(PEER, &server, NODE_TTL);
    await_running(&agent, &[AGENT, PEER]);
    peer.leave().await;
    await_running(&agent, &[AGENT]);
    let peer = observer(PEER, &server, NODE_TTL);
    await_running(&agent, &[AGENT, PEER]);
    blocking(|| agent.wait_ready());

    let metric = format!("autocluster_log_lines_dropped_total{{reason=\"{reason}\"}}");
    let dropped = agent.metric(&metric);
    assert!(
        dropped.is_some_and(|n| n > 0.0),
        "{metric} is {dropped:?}; the agent wrote its log somewhere"
    );
    eprintln!("{reason}: {metric} = {dropped:?}");

    let stopped = Instant::now();
    let code = blocking(|| agent.stop_within(EXIT));
    assert_eq!(code, Some(0), "SIGTERM exits 0");
    assert_eq!(
        keys(etcd).await,
        vec![PEER.to_string()],
        "the agent's key is gone"
    );
    eprintln!(
        "{reason}: exited and deregistered {} after SIGTERM",
        ms(stopped.elapsed())
    );
    peer.leave().await;
}

/// `n` connections to `admin` that each send a line that is not HTTP and close.
fn send_garbage(admin: std::net::SocketAddr, n: usize) {
    use std::io::{Read, Write};
    for _ in 0..n {
        let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_secs(2)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"not http\r\n\r\n");
        let _ = s.read(&mut [0u8; 256]);
    }
}

/// `autocluster agent ... 2>&1 | head -c 100`: the reader of stderr goes away. Writing the
/// log then fails (EPIPE); that must not end any task of the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_neither_freezes_the_view_nor_skips_the_leave() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        stderr_pipe: true,
        ..Launch::default()
    };
    let mut agent = start_agent(dir.path(), AGENT, &etcd.endpoint(), launch);
    let stderr = agent.take_stderr();
    let read = blocking(|| read_until(stderr, "admin endpoint listening"));
    assert!(read.contains("agent started"), "{read}");
    // The reader is gone: every later line fails to be written.
    survives_its_log(&etcd, agent, "write_error", 0).await;
}

/// A stderr nobody reads: the pipe fills (64 KiB) and every write would block. Logging at
/// `trace`, and a line for each of 4,000 bad requests, the agent must go on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_does_not_block_the_agent() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        env: &[("RUST_LOG", "trace")],
        stderr_pipe: true,
        ..Launch::default()
    };
    let mut agent = start_agent(dir.path(), AGENT, &etcd.endpoint(), launch);
    // Held open and never read.
    let _stderr = agent.take_stderr();
    survives_its_log(&etcd, agent, "queue_full", 4_000).await;
}

/// HUP (a closed terminal), INT (Ctrl-C), TERM (a service manager) and QUIT (Ctrl-\) each
/// make the agent leave: it exits 0 and its peers see `left`, reason `deregistered`, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stop_signal_deregisters_at_once() {
    let etcd = EtcdServer::start().await.unwrap();
    let server = etcd.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let watcher = observer(WATCHER, &server, NODE_TTL);
    let signals = ["HUP", "INT", "TERM", "QUIT"];
    let names: Vec<String> = signals
        .iter()
        .map(|s| format!("{}@127.0.0.1", s.to_lowercase()))
        .collect();
    let mut agents: Vec<Agent> = names
        .iter()
        .map(|n| start_agent(dir.path(), n, &server, Launch::default()))
        .collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push(WATCHER);
    watcher
        .wait_for_running(&all, Duration::from_secs(30))
        .await;
    for agent in &agents {
        blocking(|| agent.wait_ready());
    }

    for ((signal, name), agent) in signals.iter().zip(&names).zip(&mut agents) {
        let sent = Instant::now();
        agent.signal(&format!("-{signal}"));
        await_deregistered(&watcher, name, sent).await;
        let status = blocking(|| agent.wait_exit(EXIT));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "SIG{signal}: {status:?}\n{}",
            agent.diag()
        );
        let log = agent.log();
        assert!(
            log.contains(&format!("SIG{signal}: leaving the cluster")),
            "{log}"
        );
        assert!(log.contains("left the cluster"), "{log}");
    }
    assert_eq!(keys(&etcd).await, vec![WATCHER.to_string()]);
    watcher.leave().await;
}
