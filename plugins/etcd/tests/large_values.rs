//! Values near etcd's size limit (issue 13, item 4): 200 values of 1.45 MB under `nodes/`
//! wedged every agent: a snapshot page of 1,000 keys was too large to decode, and so was the
//! watch's batch of their deletes (it asked for previous values). A snapshot and a watch
//! must survive any content etcd accepts; values over `MAX_VALUE` are skipped and counted.

mod common;

use std::time::{Duration, Instant};

use autocluster_plugin::{Change, Revision, WatchBatch};
use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdServer};
use common::*;
use etcd_client::{Client, DeleteOptions};
use futures::StreamExt;

const BIG: usize = 1_450_000;
const COUNT: usize = 200;

fn big_key(i: usize) -> String {
    format!("/emqxcl/emqxcl/nodes/big{i}@10.0.{}.{}", i / 250, i % 250)
}

/// Changes from `watch` until `done` says they are all there; panics after `bound`.
async fn collect(
    watch: &mut autocluster_plugin::BoxStream<autocluster_plugin::Result<WatchBatch>>,
    bound: Duration,
    done: impl Fn(&[Change]) -> bool,
) -> Vec<Change> {
    let mut seen = Vec::new();
    tokio::time::timeout(bound, async {
        while !done(&seen) {
            match watch.next().await {
                Some(Ok(b)) => seen.extend(b.changes),
                other => panic!("the watch broke: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} changes within {bound:?}", seen.len()));
    seen
}

fn deletes(changes: &[Change]) -> usize {
    changes
        .iter()
        .filter(|c| matches!(c, Change::Delete { node, .. } if node.as_str().starts_with("big")))
        .count()
}

async fn huge_values(etcd: &EtcdServer) {
    let a = backend(etcd, &[("node_ttl", "120s")]);
    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    let before = bounded(a.snapshot()).await.unwrap();
    // A running agent's watch, open while the values are written.
    let mut live = a.watch(before.revision);

    let mut c = Client::connect([etcd.endpoint()], None).await.unwrap();
    let value = vec![b'x'; BIG];
    for i in 0..COUNT {
        c.put(big_key(i), value.clone(), None).await.unwrap();
    }
    // Each oversized value is skipped: the node it names is not a member.
    let seen = collect(&mut live, Duration::from_secs(60), |s| deletes(s) == COUNT).await;
    assert!(
        seen.iter().all(|c| !matches!(c, Change::Put(_))),
        "{seen:?}"
    );

    // A new agent's snapshot reads past them, counting each as invalid.
    let b = backend(etcd, &[]);
    let start = Instant::now();
    let snap = bounded(b.snapshot()).await.unwrap();
    eprintln!(
        "etcd {}: snapshot with {COUNT} values of {BIG} bytes in {:?}",
        etcd.version(),
        start.elapsed()
    );
    let names: Vec<_> = snap.members.iter().map(|m| m.node.to_string()).collect();
    assert_eq!(names, vec![me.node.to_string()]);
    assert_eq!(b.invalid_entries(), COUNT as u64);

    // A watch that has to catch up on all of them (a reconnect from before) gets through.
    let mut catching_up = b.watch(before.revision);
    let seen = collect(&mut catching_up, Duration::from_secs(60), |s| {
        deletes(s) == COUNT
    })
    .await;
    assert_eq!(deletes(&seen), COUNT);

    // Deleting them all in one request freezes no watch.
    c.delete(
        "/emqxcl/emqxcl/nodes/big",
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    let start = Instant::now();
    let seen = collect(&mut live, Duration::from_secs(10), |s| deletes(s) == COUNT).await;
    eprintln!(
        "the delete of all {COUNT} reached the watch in {:?}",
        start.elapsed()
    );
    assert_eq!(deletes(&seen), COUNT);
    let snap = bounded(b.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    assert!(snap.revision > Revision(0));
    bounded(a.deregister(&lease)).await.unwrap();
}

#[tokio::test]
async fn snapshot_and_watch_survive_values_near_the_size_limit() {
    for bin in available_binaries() {
        let etcd = EtcdServer::builder()
            .binary(&bin.etcd)
            .arg("--quota-backend-bytes=4294967296")
            .start()
            .await
            .unwrap();
        huge_values(&etcd).await;
    }
}

/// A value larger than a snapshot page may hold (64 MiB, with etcd told to accept it) is
/// skipped by the snapshot, and does not stop the watch.
#[tokio::test]
async fn a_value_too_large_for_a_page_is_skipped() {
    let etcd = EtcdServer::builder()
        .arg("--max-request-bytes=100000000")
        .start()
        .await
        .unwrap();
    let a = backend(&etcd, &[]);
    let before = bounded(a.snapshot()).await.unwrap();
    let mut c = Client::connect([etcd.endpoint()], None).await.unwrap();
    c.put(big_key(0), vec![b'x'; 70 * 1024 * 1024], None)
        .await
        .unwrap();
    c.put("/emqxcl/emqxcl/nodes/small@h", "", None)
        .await
        .unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    let names: Vec<_> = snap.members.iter().map(|m| m.node.to_string()).collect();
    assert_eq!(names, vec!["small@h"]);
    assert_eq!(a.invalid_entries(), 1);
    let mut watch = a.watch(before.revision);
    let seen = collect(&mut watch, Duration::from_secs(30), |s| {
        s.iter()
            .any(|c| matches!(c, Change::Put(m) if m.node.as_str() == "small@h"))
    })
    .await;
    assert!(seen.iter().any(|c| matches!(c, Change::Delete { .. })));
}
