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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autocluster::plugin::Registration;
use autocluster::{EngineConfig, EventKind, LeftReason, Metadata, NodeName, Settings};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::suite::Node;

const BIN: &str = env!("CARGO_BIN_EXE_autocluster");
const WAIT: Duration = Duration::from_secs(40);
const NODE_TTL: Duration = Duration::from_secs(3);

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// `autocluster agent -c <conf>`, killed (SIGCONT first, in case it is stopped) when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
    admin: SocketAddr,
}

impl Agent {
    fn start(dir: &Path, node: &str, server: &str) -> Agent {
        let admin = free_addr();
        let conf = dir.join(format!("{}.conf", node.replace('@', "_")));
        std::fs::write(
            &conf,
            format!(
                "node.name = {node}\n\
                 node.admin_listen = {admin}\n\
                 cluster.discovery = etcd\n\
                 cluster.etcd.server = {server}\n\
                 cluster.etcd.prefix = emqxcl\n\
                 cluster.etcd.node_ttl = {}s\n\
                 cluster.call_timeout = 2s\n\
                 cluster.backoff_min = 50ms\n\
                 cluster.backoff_max = 500ms\n",
                NODE_TTL.as_secs()
            ),
        )
        .unwrap();
        let log = conf.with_extension("log");
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            let k_text = k.to_string_lossy();
            if k_text.starts_with("AUTOCLUSTER_") || k_text == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .args(["agent", "-c", conf.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log, admin }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.child.id());
    }

    /// `GET /health/ready`: the status code.
    fn ready(&self) -> Option<u16> {
        let mut s = TcpStream::connect_timeout(&self.admin, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /health/ready HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        r.get(9..12)?.parse().ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-process observer on `server`, recording every event.
fn observer(node: &str, server: &str) -> Node {
    let settings = Settings::from_pairs([
        ("node.name", node),
        ("cluster.discovery", "etcd"),
        ("cluster.etcd.server", server),
        ("cluster.etcd.prefix", "emqxcl"),
        ("cluster.etcd.node_ttl", "3s"),
    ])
    .unwrap();
    let backend = autocluster::dispatch::build_backend(&settings).unwrap();
    let node = NodeName::parse(node).unwrap();
    let mut config = EngineConfig::new(Registration {
        node: node.clone(),
        meta: Metadata::of(node),
    });
    config.call_timeout = Duration::from_secs(2);
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    Node::start_with(backend, config)
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
    let agent = Agent::start(dir.path(), paused, &etcd.endpoint());
    let observers = [
        observer(o1, &etcd.endpoint()),
        observer(o2, &etcd.endpoint()),
    ];
    let all = [paused, o1, o2];
    for o in &observers {
        o.wait_for_running(&all, WAIT).await;
    }
    let deadline = Instant::now() + WAIT;
    while agent.ready() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the agent is not ready:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let deadline = Instant::now() + WAIT;
    while agent.ready() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "not ready again:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
