//! Agents and in-process observers on a real etcd (the test kit's fixture).

use std::time::Duration;

use autocluster::plugin::Registration;
use autocluster::{EngineConfig, Metadata, NodeName, Settings};
use autocluster_testkit::suite::Node;

/// The `.conf` lines of a node on `server` with `cluster.etcd.node_ttl = node_ttl`, prefix
/// `emqxcl`, and call and retry bounds short enough for a test.
pub fn etcd_body(server: &str, node_ttl: &str) -> String {
    format!(
        "cluster.discovery = etcd\n\
         cluster.etcd.server = {server}\n\
         cluster.etcd.prefix = emqxcl\n\
         cluster.etcd.node_ttl = {node_ttl}\n\
         cluster.call_timeout = 2s\n\
         cluster.backoff_min = 50ms\n\
         cluster.backoff_max = 500ms\n"
    )
}

/// An in-process node on `server` (prefix `emqxcl`), recording every event it sees. Call it
/// inside a tokio runtime.
pub fn observer(node: &str, server: &str, node_ttl: &str) -> Node {
    let settings = Settings::from_pairs([
        ("node.name", node),
        ("cluster.discovery", "etcd"),
        ("cluster.etcd.server", server),
        ("cluster.etcd.prefix", "emqxcl"),
        ("cluster.etcd.node_ttl", node_ttl),
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
