//! `autocluster::tower::Discover` on the in-memory backend: a discover created before the
//! members join and one created after see the same members, inserted once with their
//! advertised endpoint, removed when they leave, and never a member without the endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use autocluster::plugin::{Metadata, Registration};
use autocluster::tower::{discover, Change, Discover};
use autocluster::{Cluster, EngineConfig};
use autocluster_plugin::NodeName;
use autocluster_testkit::memory::MemoryServer;
use futures::StreamExt;

const TTL: Duration = Duration::from_secs(9);
const PATIENCE: Duration = Duration::from_secs(120);

fn join(server: &MemoryServer, node: &str, grpc: Option<String>) -> Cluster {
    let node = NodeName::parse(node).unwrap();
    let mut meta = Metadata::of(node.clone());
    if let Some(addr) = grpc {
        meta = meta.with_endpoint("grpc", addr);
    }
    let config = EngineConfig::new(Registration { node, meta });
    Cluster::with_backend(server.backend(TTL), config)
}

/// Reads `d` until its members (`now`: what it told so far) are `expected`, checking each change on the way: an insert
/// is of a member that advertises `grpc`, with its address, and a remove is of a member it
/// inserted.
async fn read_until(
    (d, now): &mut (Discover<String>, BTreeMap<NodeName, String>),
    expected: &BTreeMap<NodeName, String>,
    all: &BTreeMap<NodeName, String>,
) {
    let read = async {
        while now != expected {
            match d.next().await.expect("the stream ended").unwrap() {
                Change::Insert(node, addr) => {
                    assert_eq!(all.get(&node), Some(&addr), "an insert of {node}");
                    now.insert(node, addr);
                }
                Change::Remove(node) => {
                    assert!(
                        now.remove(&node).is_some(),
                        "a remove of {node}, never inserted"
                    );
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("never reached the expected members"));
}

#[tokio::test(start_paused = true)]
async fn discover_inserts_advertised_members_and_removes_departed_ones() {
    let server = MemoryServer::new();
    let observer = join(&server, "observer@h", None);
    assert!(observer.ready(PATIENCE).await);
    let mut early = (discover(&observer, "grpc"), BTreeMap::new());

    let mut all = BTreeMap::new();
    let mut members = Vec::new();
    for i in 0..60 {
        let node = format!("n{i:02}@h");
        // The last ten advertise no grpc endpoint: never inserted.
        let grpc = (i < 50).then(|| format!("10.0.0.{i}:50051"));
        if let Some(addr) = &grpc {
            all.insert(NodeName::parse(&node).unwrap(), addr.clone());
        }
        members.push(join(&server, &node, grpc));
    }
    let mut watch = observer.watch();
    tokio::time::timeout(PATIENCE, watch.wait_for(|v| v.members().count() == 61))
        .await
        .unwrap()
        .unwrap();
    let mut late = (discover(&observer, "grpc"), BTreeMap::new());
    read_until(&mut early, &all, &all).await;
    read_until(&mut late, &all, &all).await;

    for c in members.drain(..20) {
        c.leave().await.unwrap();
    }
    let expected: BTreeMap<_, _> = all
        .iter()
        .skip(20)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(expected.len(), 30);
    read_until(&mut early, &expected, &all).await;
    read_until(&mut late, &expected, &all).await;

    for c in members {
        c.leave().await.unwrap();
    }
    read_until(&mut early, &BTreeMap::new(), &all).await;
    observer.leave().await.unwrap();
    assert!(
        early.0.next().await.is_none(),
        "the stream ends when the cluster stops"
    );
}
