//! Process-level faults of the real `autocluster agent` binary against a real etcd (the test
//! kit's fixture, free loopback ports). Observers are in-process `Cluster`s over the real etcd
//! backend, each recording every event it sees.
//!
//! - An agent paused (SIGSTOP) past `node_ttl`: its lease expires, peers see it leave; after
//!   SIGCONT its next keep-alive finds the lease lost, it registers again, and peers see it
//!   join with a new incarnation.
//!
//! Measured figures are printed (`cargo test -p autocluster-cli --test faults --
//! --nocapture`). Every child process is killed when its guard drops, also on failure.
#![cfg(feature = "etcd")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use autocluster::{EventKind, LeftReason, NodeName};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::suite::Node;
use common::etcd::etcd_body;
use common::{ms, node_conf, wait_within, Agent};

const WAIT: Duration = Duration::from_secs(40);
const NODE_TTL: Duration = Duration::from_secs(3);

/// `autocluster agent` for `node` against `server`.
fn start_agent(dir: &Path, node: &str, server: &str) -> Agent {
    let body = etcd_body(server, &format!("{}s", NODE_TTL.as_secs()));
    Agent::start(&node_conf(dir, &node.replace('@', "_"), node, &body))
}

/// Waits until the agent answers 200 on `/health/ready`, at most [`WAIT`] (blocking this
/// worker thread only: the runtime moves its other tasks away meanwhile).
fn wait_ready(agent: &Agent, what: &str) {
    tokio::task::block_in_place(|| {
        wait_within(
            WAIT,
            what,
            || agent.ready().filter(|(code, _)| *code == 200),
            || agent.log(),
        );
    });
}

/// An in-process observer on `server`, recording every event.
fn observer(node: &str, server: &str) -> Node {
    common::etcd::observer(node, server, "3s")
}

fn incarnation(observer: &Node, node: &str) -> Option<u64> {
    observer
        .cluster
        .view()
        .get(&NodeName::parse(node).unwrap())
        .map(|e| e.member.incarnation.0)
}

/// The events `observer` recorded about `node` since `mark`: (kind, incarnation, reason).
fn about(observer: &Node, mark: usize, node: &str) -> Vec<(EventKind, u64, Option<LeftReason>)> {
    observer.events.lock().unwrap()[mark..]
        .iter()
        .filter(|e| e.node.as_str() == node)
        .map(|e| (e.kind, e.member.incarnation.0, e.reason))
        .collect()
}

/// 4. An agent paused (SIGSTOP) past `node_ttl`: peers see it leave (its lease expired);
///    SIGCONT: it registers again (lease lost on its next keep-alive) and peers see it join
///    with a new incarnation; nobody else is affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_agent_leaves_and_comes_back_with_a_new_incarnation() {
    let etcd = EtcdServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paused = "paused@127.0.0.1";
    let (o1, o2) = ("watcher1@127.0.0.1", "watcher2@127.0.0.1");
    let agent = start_agent(dir.path(), paused, &etcd.endpoint());
    let observers = [
        observer(o1, &etcd.endpoint()),
        observer(o2, &etcd.endpoint()),
    ];
    let all = [paused, o1, o2];
    for o in &observers {
        o.wait_for_running(&all, WAIT).await;
    }
    wait_ready(&agent, "the agent to be ready");
    let before = incarnation(&observers[0], paused).unwrap();
    // Marks once the recorders hold every Joined of the start.
    for o in &observers {
        for n in all {
            o.wait_count(n, EventKind::Joined, 1, WAIT).await;
        }
    }
    let marks: Vec<usize> = observers
        .iter()
        .map(|o| o.events.lock().unwrap().len())
        .collect();

    agent.signal("-STOP");
    let stopped = Instant::now();
    for o in &observers {
        o.wait_for_running(&[o1, o2], WAIT).await;
        eprintln!(
            "sigstop: {} saw the paused agent leave {} after SIGSTOP (node_ttl {:?})",
            o.cluster.node(),
            ms(stopped.elapsed()),
            NODE_TTL
        );
    }
    assert!(
        stopped.elapsed() <= NODE_TTL + Duration::from_secs(2),
        "the paused agent was seen leaving only after {}",
        ms(stopped.elapsed())
    );
    // Paused a while longer: nothing more happens.
    tokio::time::sleep(Duration::from_secs(1)).await;

    agent.signal("-CONT");
    let resumed = Instant::now();
    for o in &observers {
        o.wait_for_running(&all, WAIT).await;
        eprintln!(
            "sigcont: {} saw it join again {} after SIGCONT (paused {})",
            o.cluster.node(),
            ms(resumed.elapsed()),
            ms(resumed - stopped)
        );
    }
    let after = incarnation(&observers[0], paused).unwrap();
    assert_ne!(before, after, "a new incarnation");
    wait_ready(&agent, "the agent to be ready again");
    for (i, o) in observers.iter().enumerate() {
        o.wait_count(paused, EventKind::Joined, 2, WAIT).await;
        assert_eq!(incarnation(o, paused), Some(after));
        assert_eq!(
            about(o, marks[i], paused),
            vec![
                (EventKind::Left, before, Some(LeftReason::Deregistered)),
                (EventKind::Joined, after, None)
            ],
            "{}: left once (lease expired), joined once (new incarnation)",
            o.cluster.node()
        );
        for other in [o1, o2] {
            assert!(about(o, marks[i], other).is_empty(), "{:?}", o.summary());
        }
    }
    let log = agent.log();
    assert!(
        log.contains("lease lost"),
        "the agent found its lease lost on its next keep-alive:\n{log}"
    );
    let keys = etcd
        .etcdctl(&["get", "--prefix", "--keys-only", "/emqxcl/emqxcl/nodes/"])
        .await
        .unwrap();
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 3, "{keys}");
    drop(agent);
    for o in observers {
        o.leave().await;
    }
}
