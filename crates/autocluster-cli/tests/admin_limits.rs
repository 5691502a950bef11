//! Idle connections to the admin endpoint against an agent under systemd's default open-file
//! limit (`prlimit --nofile=1024:1024`), run for real: an `autocluster agent` on a real etcd,
//! with an `--on-change` hook and a `--members-file`, and 1,100 connections that never send
//! a byte. The agent must keep answering its health check, run its hook on a join and keep
//! the members file current.
//!
//! Every child process is killed when its guard drops, also on failure.
#![cfg(all(feature = "etcd", target_os = "linux"))]

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::etcd::{etcd_body, observer};
use common::{http_get, ms, node_conf, wait_within, Agent, Launch};

const AGENT: &str = "agent@127.0.0.1";
const PEER: &str = "peer@127.0.0.1";
/// The idle connections: more than the agent's open-file limit.
const IDLE: usize = 1_100;
/// How long the agent may take to answer, to run the hook, to rewrite the file.
const BOUND: Duration = Duration::from_secs(5);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Lets this test process open the connections (its own limit may be 1,024 too).
fn raise_own_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let want = (IDLE as u64) * 2 + 256;
    if limit.current.is_some_and(|c| c < want) {
        limit.current = limit.maximum.map(|m| m.min(want)).or(Some(want));
        setrlimit(Resource::Nofile, limit).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_starve_neither_health_nor_hooks_nor_the_members_file() {
    raise_own_limit();
    let etcd = EtcdServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("members");
    let events = dir.path().join("events");
    let hook = format!(
        "echo \"$AUTOCLUSTER_EVENT $AUTOCLUSTER_NODE\" >> {}",
        events.display()
    );
    let conf = node_conf(
        dir.path(),
        "agent",
        AGENT,
        &etcd_body(&etcd.endpoint(), "60s"),
    );
    let flags = [
        "--on-change",
        &hook,
        "--members-file",
        members.to_str().unwrap(),
    ];
    let mut agent = Agent::launch(
        &conf,
        Launch {
            flags: &flags,
            wrapper: &["prlimit", "--nofile=1024:1024", "--"],
            ..Launch::default()
        },
    );
    tokio::task::block_in_place(|| agent.wait_ready());
    let admin = agent.admin();

    // The flood: connections that send nothing, held open.
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..IDLE)
        .filter_map(|_| TcpStream::connect_timeout(&admin, Duration::from_secs(1)).ok())
        .collect();
    eprintln!(
        "{} of {IDLE} idle connections open after {}",
        idle.len(),
        ms(started.elapsed())
    );

    // Health answers.
    let asked = Instant::now();
    let (code, body) = tokio::task::block_in_place(|| {
        wait_within(
            BOUND,
            "/health/ready to answer during the flood",
            || http_get(admin, "/health/ready").ok(),
            || agent.diag(),
        )
    });
    assert_eq!(code, 200, "{body}\n{}", agent.diag());
    eprintln!(
        "/health/ready answered 200 {} into the flood",
        ms(asked.elapsed())
    );

    // A join runs the hook and rewrites the members file.
    let peer = observer(PEER, &etcd.endpoint(), "60s");
    let joined = Instant::now();
    tokio::task::block_in_place(|| {
        wait_within(
            BOUND,
            "the hook to run on the peer's join",
            || {
                read(&events)
                    .contains(&format!("joined {PEER}"))
                    .then_some(())
            },
            || format!("events: {:?}\n{}", read(&events), agent.diag()),
        );
        eprintln!("the hook ran {} after the join", ms(joined.elapsed()));
        let want = format!("{AGENT}\n{PEER}\n");
        wait_within(
            BOUND,
            "the members file to list the peer",
            || (read(&members) == want).then_some(()),
            || format!("members: {:?}\n{}", read(&members), agent.diag()),
        );
    });
    let evicted = agent.metric("autocluster_admin_connections_closed_total{reason=\"evicted\"}");
    assert!(evicted.is_some_and(|n| n > 0.0), "evicted: {evicted:?}");
    let open = agent
        .metric("autocluster_admin_connections")
        .unwrap_or(f64::MAX);
    let cap = agent
        .metric("autocluster_admin_connections_max")
        .unwrap_or(0.0);
    assert!(
        open <= cap && cap < 1024.0,
        "{open} connections open, cap {cap}"
    );
    eprintln!("admin connections: {open} open, cap {cap}, {evicted:?} evicted");

    drop(idle);
    assert_eq!(
        tokio::task::block_in_place(|| agent.stop()),
        Some(0),
        "{}",
        agent.diag()
    );
    peer.leave().await;
}

/// A soft limit below the hard one is raised at start; the admin endpoint gets its share of
/// the raised one, and `--on-change` handlers still run with the limit the agent started
/// with (programs that use `select()` expect no more than 1,024).
#[test]
fn the_soft_limit_is_raised_for_the_agent_and_not_for_its_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let limits = dir.path().join("limits");
    let hook = format!("ulimit -S -n >> {}", limits.display());
    let conf = node_conf(dir.path(), "agent", AGENT, "cluster.discovery = manual\n");
    let mut agent = Agent::launch(
        &conf,
        Launch {
            flags: &["--on-change", &hook],
            wrapper: &["prlimit", "--nofile=1000:4096", "--"],
            ..Launch::default()
        },
    );
    agent.wait_ready();
    wait_within(
        BOUND,
        "the handler of the agent's own join",
        || (!read(&limits).is_empty()).then_some(()),
        || agent.diag(),
    );
    assert_eq!(read(&limits), "1000\n", "{}", agent.diag());
    let log = agent.log();
    assert!(
        log.contains("open-file limit 4096 (raised from 1000): at most 512 admin connections"),
        "{log}"
    );
    assert_eq!(
        agent.metric("autocluster_admin_connections_max"),
        Some(512.0)
    );
    assert_eq!(agent.stop(), Some(0));
}
