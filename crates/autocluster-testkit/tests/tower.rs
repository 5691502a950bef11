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

/// A reader that falls far behind (an observer keeping 16 events, 70 changes unread) misses
/// events: the discover notices the lag, reads the view again and tells the difference, so
/// its reader still ends with exactly the members that advertise `grpc`, at their current
/// address, with no remove of a member it never inserted.
#[tokio::test(start_paused = true)]
async fn a_discover_that_falls_behind_resyncs_to_exactly_the_current_members() {
    let server = MemoryServer::new();
    let node = NodeName::parse("observer@h").unwrap();
    let mut config = EngineConfig::new(Registration {
        node: node.clone(),
        meta: Metadata::of(node),
    });
    config.event_capacity = 16;
    let observer = Cluster::with_backend(server.backend(TTL), config);
    assert!(observer.ready(PATIENCE).await);
    let mut d = (discover(&observer, "grpc"), BTreeMap::new());

    let addr = |i: usize| format!("10.0.0.{i}:50051");
    let mut all = BTreeMap::new();
    let mut members = Vec::new();
    for i in 0..5 {
        all.insert(NodeName::parse(&format!("a{i}@h")).unwrap(), addr(i));
        members.push(join(&server, &format!("a{i}@h"), Some(addr(i))));
    }
    // Read up to date: the discover has subscribed.
    read_until(&mut d, &all, &all).await;

    // Unread: 60 joins, 2 leaves, 2 new addresses (over the 16 events kept).
    for i in 10..70 {
        all.insert(NodeName::parse(&format!("b{i}@h")).unwrap(), addr(i));
        members.push(join(&server, &format!("b{i}@h"), Some(addr(i))));
    }
    for c in members.drain(..2) {
        all.remove(c.node());
        c.leave().await.unwrap();
    }
    for (k, c) in members.iter().take(2).enumerate() {
        let moved = format!("10.0.1.{k}:50051");
        c.update_metadata(|m| {
            m.endpoints.insert("grpc".into(), moved.clone());
        })
        .unwrap();
        all.insert(c.node().clone(), moved);
    }
    let mut watch = observer.watch();
    let settled = |v: &autocluster::View| {
        v.running_nodes().len() == all.len() + 1
            && all.iter().all(|(n, a)| {
                v.members().any(|e| {
                    &e.member.node == n
                        && e.member.meta.as_ref().and_then(|m| m.endpoints.get("grpc")) == Some(a)
                })
            })
    };
    tokio::time::timeout(PATIENCE, watch.wait_for(settled))
        .await
        .unwrap()
        .unwrap();
    read_until(&mut d, &all, &all).await;
    assert_eq!(d.1, all);
    for c in members {
        c.leave().await.unwrap();
    }
    observer.leave().await.unwrap();
}
