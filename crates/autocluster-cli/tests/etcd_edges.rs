//! The real `autocluster agent` at etcd's edges (issue 13): an etcd behind a slow link, and
//! values near etcd's size limit under the prefix. Each test prints the figure it measures
//! (run with `--nocapture` to see them).
#![cfg(feature = "etcd")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::proxy::Proxy;
use common::{http_get, ms, node_conf, wait_within, Agent};

const NODE: &str = "emqx1@192.168.1.162";

/// The agent's file against `server`, with `extra` lines.
fn conf(dir: &std::path::Path, server: &str, extra: &str) -> std::path::PathBuf {
    node_conf(
        dir,
        "node",
        NODE,
        &format!(
            "cluster.discovery = etcd\n\
             cluster.etcd.server = {server}\n\
             cluster.etcd.prefix = emqxcl\n\
             {extra}"
        ),
    )
}

fn ready_within(agent: &Agent, within: Duration) -> Duration {
    let start = Instant::now();
    wait_within(
        within,
        "the agent to be ready",
        || agent.ready().filter(|(c, _)| *c == 200),
        || agent.diag(),
    );
    start.elapsed()
}

/// Behind a link that holds every chunk 2 to 5 s each way, an agent with
/// `cluster.call_timeout = 30s` registers and becomes ready, and stays so (on main it never
/// registered: the fixed 5 s transport timeouts killed every connection).
#[test]
fn an_agent_behind_a_slow_link_registers_with_a_longer_call_timeout() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(EtcdServer::start()).unwrap();
    let target = format!("127.0.0.1:{}", etcd.port()).parse().unwrap();
    let proxy = rt.block_on(Proxy::start(target)).unwrap();
    proxy.delay(Duration::from_secs(2), Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&conf(
        dir.path(),
        &proxy.endpoint(),
        "cluster.call_timeout = 30s\n",
    ));
    let took = ready_within(&agent, Duration::from_secs(90));
    println!(
        "behind a 2-5 s per chunk link: ready {} after start (call_timeout 30s)",
        ms(took)
    );
    let keys = rt
        .block_on(etcd.etcdctl(&["get", "--prefix", "--keys-only", "/emqxcl/emqxcl/nodes/"]))
        .unwrap();
    assert_eq!(keys.trim(), format!("/emqxcl/emqxcl/nodes/{NODE}"));
    // For 45 s (two keep-alive periods, several HTTP/2 ping intervals): ready throughout,
    // and no backend call failed (on main the pings' fixed 5 s timeout broke the streams).
    let until = Instant::now() + Duration::from_secs(45);
    while Instant::now() < until {
        assert_eq!(agent.ready().map(|(c, _)| c), Some(200), "{}", agent.diag());
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        failed_calls(&agent),
        Vec::<String>::new(),
        "{}",
        agent.diag()
    );
    assert!(agent.metric("autocluster_lease_renewals_total").unwrap() >= 1.0);
}

/// The `autocluster_backend_calls_total` samples of failed calls.
fn failed_calls(agent: &Agent) -> Vec<String> {
    let (_, body) = http_get(agent.admin(), "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with("autocluster_backend_calls_total{"))
        .filter(|l| !l.contains("outcome=\"ok\""))
        .map(String::from)
        .collect()
}

/// 200 values of 1.45 MB under `nodes/`: a new agent reads past them (skipping and counting
/// each) and becomes ready (on main its snapshot failed forever).
#[test]
fn an_agent_becomes_ready_with_huge_values_under_the_prefix() {
    const COUNT: usize = 200;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt
        .block_on(
            EtcdServer::builder()
                .arg("--quota-backend-bytes=4294967296")
                .start(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let value = dir.path().join("value");
    std::fs::write(&value, vec![b'x'; 1_450_000]).unwrap();
    for i in 0..COUNT {
        // etcdctl reads the value from stdin when none is given.
        let status = Command::new(&etcd.binary().etcdctl)
            .env("ETCDCTL_API", "3")
            .args([
                &format!("--endpoints={}", etcd.endpoint()),
                "put",
                &format!("/emqxcl/emqxcl/nodes/big{i}@10.0.0.{}", i % 250),
            ])
            .stdin(std::fs::File::open(&value).unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let agent = Agent::start(&conf(dir.path(), &etcd.endpoint(), ""));
    let took = ready_within(&agent, Duration::from_secs(60));
    println!(
        "with {COUNT} values of 1.45 MB under the prefix: ready {} after start",
        ms(took)
    );
    assert_eq!(agent.running_nodes().unwrap(), [NODE]);
    // Each read of the prefix counts what it skips (a snapshot retried after a timeout, as on
    // a loaded machine, counts again); each key is logged once.
    let skipped = agent
        .metric("autocluster_invalid_entries_total")
        .unwrap_or(0.0);
    assert!(skipped >= COUNT as f64, "{skipped}\n{}", agent.diag());
    let logged = agent
        .log()
        .lines()
        .filter(|l| l.contains("skipping an invalid entry under the prefix"))
        .count();
    assert_eq!(logged, COUNT, "{}", agent.diag());
}

/// Two agents with one `node.name` (a copied configuration): the second is refused, says
/// whose lease holds the name, and exits 2 after leaving nothing behind; the first keeps its
/// key, stays ready, and logs the attempt.
#[test]
fn a_second_agent_with_the_same_name_exits_2_and_the_first_keeps_its_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(EtcdServer::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = Agent::start(&node_conf(
        dir.path(),
        "first",
        NODE,
        &format!(
            "cluster.discovery = etcd\ncluster.etcd.server = {}\ncluster.etcd.node_ttl = 10s\n",
            etcd.endpoint()
        ),
    ));
    first.wait_ready();
    let lease = first
        .incarnation_of(NODE)
        .expect("the first agent's incarnation");
    let mut second = Agent::start(&node_conf(
        dir.path(),
        "second",
        NODE,
        &format!(
            "cluster.discovery = etcd\ncluster.etcd.server = {}\ncluster.etcd.node_ttl = 10s\n",
            etcd.endpoint()
        ),
    ));
    let status = second
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the second agent is still running: {}", second.diag()));
    assert_eq!(status.code(), Some(2), "{}", second.log());
    let log = second.log();
    assert!(
        log.contains("conflict") && log.contains(&format!("{lease:x}")),
        "the error names the clash and the holder's lease {lease:x}: {log}"
    );
    // The first keeps its key under its own lease, is still ready, and said so.
    let keys = rt
        .block_on(etcd.etcdctl(&["get", "--prefix", "--keys-only", "/emqxcl/emqxcl/nodes/"]))
        .unwrap();
    assert_eq!(keys.trim(), format!("/emqxcl/emqxcl/nodes/{NODE}"));
    assert_eq!(first.incarnation_of(NODE), Some(lease));
    assert_eq!(first.ready().map(|(c, _)| c), Some(200), "{}", first.diag());
    wait_within(
        Duration::from_secs(15),
        "the first agent to log the attempt",
        || first.log().contains("clash").then_some(()),
        || first.log(),
    );
}
