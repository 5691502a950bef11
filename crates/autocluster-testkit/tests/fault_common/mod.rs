//! Helpers of the fault tests (`faults_*.rs`): agents are in-process [`Cluster`]s over the real
//! etcd backend, each recorded by a [`Node`] (every event it sees, in order).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use autocluster::{EngineConfig, EventKind, Metadata, NodeName};
use autocluster_plugin::{BackendContext, Origin, Registration, Section};
use autocluster_testkit::suite::Node;

/// The longest any awaited condition may take: generous, the machine is shared.
pub const WAIT: Duration = Duration::from_secs(40);

/// The cluster name of every agent here (keys `/emqxcl/faults/nodes/<node>`).
pub const CLUSTER: &str = "faults";
/// Where node keys live.
pub const NODES: &str = "/emqxcl/faults/nodes/";

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `cluster.etcd.node_ttl`.
    pub ttl: Duration,
    /// The engine's bound on every backend call.
    pub call_timeout: Duration,
    /// The grace period (`None`: the TTL).
    pub grace: Option<Duration>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            ttl: Duration::from_secs(3),
            call_timeout: Duration::from_secs(2),
            grace: None,
        }
    }
}

pub fn name(s: &str) -> NodeName {
    NodeName::parse(s).unwrap()
}

pub fn names(v: &[&str]) -> Vec<NodeName> {
    let mut v: Vec<NodeName> = v.iter().map(|s| name(s)).collect();
    v.sort();
    v
}

/// An agent `node` against `servers` (a comma list of etcd URLs).
pub fn agent(servers: &str, node: &str, opts: &Opts) -> Node {
    let node = name(node);
    let mut section = Section::new("cluster.etcd");
    section.set("server", servers, Origin::Program);
    section.set("prefix", "emqxcl", Origin::Program);
    section.set(
        "node_ttl",
        format!("{}s", opts.ttl.as_secs()),
        Origin::Program,
    );
    let backend = autocluster_etcd::build(&BackendContext::new(node.clone(), CLUSTER, section))
        .expect("etcd backend");
    let mut config = EngineConfig::new(Registration {
        node: node.clone(),
        meta: Metadata::of(node.clone()).with_version("faults"),
    });
    config.call_timeout = opts.call_timeout;
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    config.grace = opts.grace;
    Node::start_with(backend, config)
}

/// Waits until every node is ready (registered, in its own view, fresh) and sees exactly
/// `all` running.
pub async fn converge(nodes: &[&Node], all: &[&str]) {
    for n in nodes {
        n.wait_for_running(all, WAIT).await;
        assert!(
            n.cluster.ready(WAIT).await,
            "{} not ready: {:?}",
            n.cluster.node(),
            n.cluster.health()
        );
    }
}

/// The events `node`'s engine published so far (its own counters).
pub fn published(node: &Node) -> usize {
    let s = node.cluster.stats();
    (s.joined() + s.left() + s.updated()) as usize
}

/// Waits until each node's recorder has every event its engine published and the events add
/// up to its view (events reach subscribers a moment after the view they change).
pub async fn settle(nodes: &[&Node]) {
    for n in nodes {
        let deadline = Instant::now() + WAIT;
        loop {
            let recorded = n.events.lock().unwrap().len();
            let (published, replayed, running) = (published(n), replayed(n), running(n));
            if recorded >= published && replayed == running {
                break;
            }
            if Instant::now() > deadline {
                let summary = n.summary();
                panic!(
                    "{}: recorded {recorded} events, the engine published {published}; the \
                     events say {replayed:?}, the view {running:?}; events {summary:?}",
                    n.cluster.node(),
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The running members (node, incarnation) the recorded events of `node` add up to.
pub fn replayed(node: &Node) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in node.events.lock().unwrap().iter() {
        match e.kind {
            EventKind::Joined | EventKind::Updated => {
                m.insert(e.node.to_string(), e.member.incarnation.0);
            }
            EventKind::Left => {
                m.remove(e.node.as_str());
            }
        }
    }
    m
}

/// The running members (node, incarnation) of the view of `node`.
pub fn running(node: &Node) -> BTreeMap<String, u64> {
    node.cluster
        .view()
        .members()
        .filter(|e| e.status == autocluster::Status::Running)
        .map(|e| (e.member.node.to_string(), e.member.incarnation.0))
        .collect()
}

/// How many events each node recorded so far, once every published event is recorded.
pub async fn marks(nodes: &[&Node]) -> Vec<usize> {
    settle(nodes).await;
    nodes
        .iter()
        .map(|n| n.events.lock().unwrap().len())
        .collect()
}

/// The events `node` recorded since `mark`, as `(kind, node)`.
pub fn since(node: &Node, mark: usize) -> Vec<(EventKind, String)> {
    node.events.lock().unwrap()[mark..]
        .iter()
        .map(|e| (e.kind, e.node.to_string()))
        .collect()
}

/// The `kind` events of `about` that `node` recorded since `mark`.
pub fn count_since(node: &Node, mark: usize, kind: EventKind, about: &str) -> usize {
    node.events.lock().unwrap()[mark..]
        .iter()
        .filter(|e| e.kind == kind && e.node.as_str() == about)
        .count()
}

/// Waits until `pred` holds of the view of `node`; returns how long it took.
pub async fn wait_view(
    node: &Node,
    what: &str,
    pred: impl FnMut(&autocluster::View) -> bool,
) -> Duration {
    let t = Instant::now();
    let mut rx = node.cluster.watch();
    if tokio::time::timeout(WAIT, rx.wait_for(pred)).await.is_err() {
        panic!(
            "{}: {what} not within {WAIT:?}; view {:?}; health {:?}; events {:?}",
            node.cluster.node(),
            node.cluster.view(),
            node.cluster.health(),
            node.summary()
        );
    }
    t.elapsed()
}

/// Waits until `pred` holds of the health of `node`; returns how long it took.
pub async fn wait_health(
    node: &Node,
    what: &str,
    pred: impl FnMut(&autocluster::Health) -> bool,
) -> Duration {
    let t = Instant::now();
    let mut rx = node.cluster.watch_health();
    if tokio::time::timeout(WAIT, rx.wait_for(pred)).await.is_err() {
        panic!(
            "{}: {what} not within {WAIT:?}; health {:?}; events {:?}",
            node.cluster.node(),
            node.cluster.health(),
            node.summary()
        );
    }
    t.elapsed()
}

/// Retries `f` every 50 ms until it returns `Some`, at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain etcd client on `endpoint`, for what etcdctl cannot do (binary keys) and to read
/// keys with their leases.
pub async fn client(endpoint: &str) -> etcd_client::Client {
    etcd_client::Client::connect([endpoint], None)
        .await
        .expect("etcd client")
}

/// The node keys in etcd now (names after `NODES`) with their lease ids, and the revision.
pub async fn etcd_nodes(endpoint: &str) -> (Vec<(String, u64)>, u64) {
    let mut c = client(endpoint).await;
    let resp = c
        .get(
            NODES,
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("etcd get");
    let mut out: Vec<(String, u64)> = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key()[NODES.len()..]).into_owned(),
                kv.lease() as u64,
            )
        })
        .collect();
    out.sort();
    let rev = resp.header().map_or(0, |h| h.revision()) as u64;
    (out, rev)
}

/// The node names whose keys are in etcd now.
pub async fn etcd_node_names(endpoint: &str) -> BTreeSet<String> {
    etcd_nodes(endpoint)
        .await
        .0
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// The incarnation `observer` has for `node`.
pub fn incarnation_in(observer: &Node, node: &str) -> Option<autocluster_plugin::Incarnation> {
    observer
        .cluster
        .view()
        .get(&name(node))
        .map(|e| e.member.incarnation)
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
