//! An overloaded etcd must not cost a live node its lease (issue 17). Behind a link that
//! holds every chunk so long that each answer comes near the call time (`call_timeout`,
//! 5 s by default), sometimes past it, but well within the lease's TTL, an agent keeps its
//! lease: no lease loss, no second registration, its key stays on the same lease, and a peer
//! never sees it leave. Not timed: the figures of a real overload are in
//! docs/benchmarks.md (the mesh).
#![cfg(feature = "etcd")]

mod common;

use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::proxy::Proxy;
use common::{etcd::etcd_body, http_get, node_conf, wait_within, Agent, Events};

const SLOW: &str = "slow@127.0.0.1";
const PEER: &str = "peer@127.0.0.1";
/// How long the slowed agent is watched: several TTLs, many keep-alives.
const WINDOW: Duration = Duration::from_secs(40);

fn conf(dir: &std::path::Path, file: &str, node: &str, server: &str) -> std::path::PathBuf {
    // The agent's defaults for every call bound (call_timeout 5 s); a 10 s TTL: a
    // keep-alive every 3.3 s.
    let body = format!(
        "cluster.discovery = etcd\ncluster.etcd.server = {server}\n\
         cluster.etcd.prefix = emqxcl\ncluster.etcd.node_ttl = 10s\n"
    );
    node_conf(dir, file, node, &body)
}

#[test]
fn an_agent_whose_answers_come_near_the_call_timeout_keeps_its_lease() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(EtcdServer::start()).unwrap();
    let target = format!("127.0.0.1:{}", etcd.port()).parse().unwrap();
    let proxy = rt.block_on(Proxy::start(target)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let slow = Agent::start(&conf(dir.path(), "slow", SLOW, &proxy.endpoint()));
    let peer = Agent::start(&node_conf(
        dir.path(),
        "peer",
        PEER,
        &etcd_body(&etcd.endpoint(), "10s"),
    ));
    slow.wait_ready();
    peer.wait_ready();
    wait_within(
        Duration::from_secs(30),
        "the peer to see the slowed agent",
        || peer.incarnation_of(SLOW),
        || peer.diag(),
    );
    let incarnation = peer.incarnation_of(SLOW).unwrap();
    let mut events = Events::subscribe(peer.admin());

    // Every chunk held 2.2 to 2.8 s each way: an answer takes 4.4 to 5.6 s, around the
    // call time of 5 s; the lease's 10 s still hold two of them.
    proxy.delay(Duration::from_millis(2200), Duration::from_millis(2800));
    let start = Instant::now();
    let renewals_before = slow.metric("autocluster_lease_renewals_total").unwrap();
    while start.elapsed() < WINDOW {
        if let Some(ev) = events.next_within(Duration::from_secs(1)) {
            assert_ne!(
                (ev["event"].as_str(), ev["node"].as_str()),
                (Some("left"), Some(SLOW)),
                "the peer saw the slowed agent leave after {:?}: {ev}\n{}",
                start.elapsed(),
                slow.diag()
            );
        }
    }
    // The key is still there, on the lease it was first written on.
    assert_eq!(
        peer.incarnation_of(SLOW),
        Some(incarnation),
        "{}",
        slow.diag()
    );
    assert_eq!(lease_losses(&slow), 0.0, "{}", slow.diag());
    assert_eq!(
        slow.metric("autocluster_registrations_total"),
        Some(1.0),
        "{}",
        slow.diag()
    );
    // The keep-alives did go out through the slow link and were answered.
    let renewals = slow.metric("autocluster_lease_renewals_total").unwrap() - renewals_before;
    assert!(
        renewals >= 3.0,
        "{renewals} renewals in {WINDOW:?}\n{}",
        slow.diag()
    );
    proxy.delay(Duration::ZERO, Duration::ZERO);
}

/// Backend calls that answered "lease lost", whatever the operation.
fn lease_losses(agent: &Agent) -> f64 {
    let (_, body) = http_get(agent.admin(), "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with("autocluster_backend_calls_total{"))
        .filter(|l| l.contains("outcome=\"lease_lost\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}
