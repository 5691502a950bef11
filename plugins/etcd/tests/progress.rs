//! A watch that falls behind etcd is noticed (issue 13, item 5). On etcd 3.4 a watch with
//! previous values delivered nothing for 15-110 s after one DeleteRange of many keys; the
//! watch now asks for none, asks etcd how far it got every `progress_every`, passes each
//! answer on as a progress notice, and ends with `Compacted` (resync) when etcd stops
//! answering while the rest of the cluster moves on.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use autocluster_plugin::{BoxStream, Change, Discovery, ErrorKind, Result, WatchBatch};
use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdServer};
use autocluster_testkit::fixtures::etcd_cluster::EtcdCluster;
use autocluster_testkit::fixtures::grpc_proxy::GrpcProxy;
use common::*;
use etcd_client::{Client, DeleteOptions};
use futures::StreamExt;

/// `node_ttl` of these tests: a progress notice every second.
const TTL: &str = "3s";
const EVERY: Duration = Duration::from_secs(1);

fn agent(endpoints: &str) -> Arc<dyn Discovery> {
    autocluster_etcd::build(&ctx(
        "emqx1@192.168.1.162",
        "emqxcl",
        section(endpoints, &[("node_ttl", TTL)]),
    ))
    .unwrap()
}

/// Writes `n` keys under the nodes prefix, 20 at a time.
async fn fill(c: &Client, n: usize) {
    let mut tasks = Vec::new();
    for t in 0..20 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(20) {
                let key = format!("/emqxcl/emqxcl/nodes/n{i}@10.1.{}.{}", i / 250, i % 250);
                c.put(key, "", None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A put every 20 ms outside the prefix, as a busy cluster has (the 3.4 stall needs one).
fn background_writer(c: &Client) -> tokio::task::JoinHandle<()> {
    let mut c = c.clone();
    tokio::spawn(async move {
        loop {
            let _ = c.put("/elsewhere/k", "v", None).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The next item of `watch`, with when it came.
async fn next(watch: &mut BoxStream<Result<WatchBatch>>, bound: Duration) -> Result<WatchBatch> {
    tokio::time::timeout(bound, watch.next())
        .await
        .unwrap_or_else(|_| panic!("nothing from the watch within {bound:?}"))
        .expect("the watch ended")
}

/// One DeleteRange of 10,000 keys under the prefix, with a background writer: on etcd 3.4 a
/// watch with previous values stalled ~15 s here. The deletes now arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_delete_range_reaches_the_watch_at_once() {
    const N: usize = 10_000;
    let etcd = EtcdServer::start().await.unwrap();
    let c = Client::connect([etcd.endpoint()], None).await.unwrap();
    fill(&c, N).await;
    let a = agent(&etcd.endpoint());
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), N);
    let writer = background_writer(&c);
    let mut watch = a.watch(snap.revision);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    c.clone()
        .delete(
            "/emqxcl/emqxcl/nodes/",
            Some(DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let mut deleted = 0;
    while deleted < N {
        let b = next(&mut watch, Duration::from_secs(5)).await.unwrap();
        deleted += b
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Delete { .. }))
            .count();
    }
    let took = start.elapsed();
    eprintln!(
        "etcd {}: {N} deletes reached the watch in {took:?}",
        etcd.version()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    writer.abort();
}

/// An idle watch yields a progress notice at least every `progress_every`, on every etcd.
#[tokio::test]
async fn an_idle_watch_says_it_is_live() {
    for bin in available_binaries() {
        let etcd = EtcdServer::builder()
            .binary(&bin.etcd)
            .start()
            .await
            .unwrap();
        let a = agent(&etcd.endpoint());
        assert_eq!(a.capabilities().progress_every, Some(EVERY));
        let snap = bounded(a.snapshot()).await.unwrap();
        let mut watch = a.watch(snap.revision);
        let up = next(&mut watch, WAIT).await.unwrap();
        assert!(up.changes.is_empty());
        let start = Instant::now();
        let mut notices = 0;
        while start.elapsed() < Duration::from_secs(5) {
            let b = next(&mut watch, EVERY * 2).await.unwrap();
            assert!(b.changes.is_empty() && b.revision == snap.revision, "{b:?}");
            notices += 1;
        }
        eprintln!("etcd {}: {notices} notices in 5 s", etcd.version());
        assert!(notices >= 4, "{notices}");
    }
}

/// A member that stops answering (hung) while the others serve: the watch on it is told
/// stalled within `progress_every` + `stall_after` (here 1 s + 5 s), where the transport's
/// pings took 15 s.
#[tokio::test]
async fn a_watch_on_a_hung_member_ends_as_stalled() {
    let cluster = EtcdCluster::start().await.unwrap();
    let leader = cluster.wait_leader(WAIT).await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let endpoints = format!(
        "{},{}",
        cluster.endpoint(followers[0]),
        cluster.endpoint(followers[1])
    );
    let a = agent(&endpoints);
    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    let lease_revision = snap.revision;
    let mut watch = a.watch(snap.revision);
    // Established, and answering progress requests.
    for _ in 0..3 {
        next(&mut watch, WAIT).await.unwrap();
    }
    // The cluster moves on (writes through the other follower), the keep-alives go there.
    let other = Client::connect([cluster.endpoint(followers[1])], None)
        .await
        .unwrap();
    let writer = background_writer(&other);
    cluster.pause(followers[0]).unwrap();
    let start = Instant::now();
    let keeper = {
        let a = a.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(Duration::from_secs(5), a.keep_alive(&lease)).await;
                tokio::time::sleep(EVERY).await;
            }
        })
    };
    let e = loop {
        match next(&mut watch, Duration::from_secs(12)).await {
            Ok(b) => assert!(b.changes.is_empty(), "{b:?}"),
            Err(e) => break e,
        }
    };
    let took = start.elapsed();
    eprintln!("a watch on a hung member ended after {took:?}: {e}");
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
    assert!(took < Duration::from_secs(9), "{took:?}");
    // The resync works, on the member that answers (with a TTL this short, the lease may
    // have run out while the keep-alive moved over).
    let snap = bounded(a.snapshot()).await.unwrap();
    assert!(snap.revision > lease_revision, "{snap:?}");
    keeper.abort();
    writer.abort();
    cluster.resume(followers[0]).unwrap();
}

/// Behind an etcd gRPC proxy, which ignores progress requests, the watch is not taken for
/// stalled: notices keep coming by the clock, changes still come through.
#[tokio::test]
async fn behind_a_grpc_proxy_the_watch_keeps_going() {
    let etcd = EtcdServer::start().await.unwrap();
    let proxy = GrpcProxy::start(&etcd).await.unwrap();
    let (logs, _guard) = Logs::capture();
    let a = agent(&proxy.endpoint());
    let snap = bounded(a.snapshot()).await.unwrap();
    let mut watch = a.watch(snap.revision);
    let start = Instant::now();
    let mut notices = 0;
    // Past `stall_after` (5 s), twice.
    while start.elapsed() < Duration::from_secs(10) {
        let b = next(&mut watch, Duration::from_secs(7)).await.unwrap();
        assert!(b.changes.is_empty(), "{b:?}");
        notices += 1;
    }
    assert!(notices >= 4, "{notices}");
    assert!(
        logs.text()
            .contains("does not answer watch progress requests"),
        "{}",
        logs.text()
    );
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/new@h", ""])
        .await
        .unwrap();
    let b = next_changes(&mut watch).await.unwrap();
    assert!(matches!(&b.changes[..], [Change::Put(m)] if m.node.as_str() == "new@h"));
}
