//! The v3 backend when etcd misbehaves: compaction, restart, wipe, dead endpoints.

mod common;

use std::net::TcpListener;

use autocluster_plugin::{Change, ErrorKind, Revision};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::*;
use futures::StreamExt;

#[tokio::test]
async fn compaction_past_the_watch_revision_is_compacted() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = backend(&etcd, &[]);
    bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    for i in 0..5 {
        etcd.etcdctl(&["put", "/elsewhere", &i.to_string()])
            .await
            .unwrap();
    }
    let rev = snap.revision.0 + 5;
    etcd.etcdctl(&["compact", &rev.to_string()]).await.unwrap();
    // The watch the snapshot opened started before the compaction: nothing is missing, and
    // it goes on.
    let mut prepared = a.watch(snap.revision);
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/y@h", ""])
        .await
        .unwrap();
    let b = next_changes(&mut prepared).await.unwrap();
    assert_eq!(b.changes[0].node(), &node("y@h"));
    drop(prepared);
    // A watch from that revision opened now has lost history between.
    let mut watch = a.watch(snap.revision);
    let e = next_changes(&mut watch).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
    assert!(e.to_string().contains(&rev.to_string()), "{e}");
    assert!(watch.next().await.is_none());
    // after the compaction revision (and y's put), watching works again
    let mut watch = a.watch(Revision(rev + 1));
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/x@h", ""])
        .await
        .unwrap();
    let b = next_changes(&mut watch).await.unwrap();
    assert_eq!(b.changes.len(), 1);
}

#[tokio::test]
async fn restart_keeps_leases_and_the_watch_resumes() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = backend(&etcd, &[("node_ttl", "30s")]);
    let lease = bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    bounded(a.keep_alive(&lease)).await.unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    let mut watch = a.watch(snap.revision);
    // a watch says at once that it is up, claiming nothing beyond where it started
    let up = bounded(async { watch.next().await.unwrap() })
        .await
        .unwrap();
    assert!(up.changes.is_empty());
    assert_eq!(up.revision, snap.revision);

    etcd.kill();
    // the open watch ends or reports the outage (after any progress notice already on its
    // way); calls fail as Unavailable, naming etcd
    let end = bounded(async {
        loop {
            match watch.next().await {
                Some(Ok(b)) if b.changes.is_empty() => continue,
                other => return Ok(other),
            }
        }
    })
    .await
    .unwrap();
    if let Some(item) = end {
        let e = item.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    let e = bounded(a.snapshot()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains(&etcd.endpoint()), "{e}");
    assert!(e.is_retryable());

    etcd.restart().await.unwrap();
    // the lease survived the restart: keep-alive reconnects on a new stream
    let left = eventually("keep-alive after restart", || async {
        a.keep_alive(&lease).await.ok()
    })
    .await;
    assert!(left.as_secs() > 0);
    // the engine resumes the watch from the last revision it saw and misses nothing
    let mut watch = a.watch(snap.revision);
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/late@h", ""])
        .await
        .unwrap();
    let b = next_changes(&mut watch).await.unwrap();
    assert_eq!(b.changes[0].node(), &node("late@h"));
}

#[tokio::test]
async fn wiped_etcd_gives_compacted_and_lease_lost() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = backend(&etcd, &[]);
    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    bounded(a.keep_alive(&lease)).await.unwrap();
    for i in 0..20 {
        etcd.etcdctl(&["put", "/elsewhere", &i.to_string()])
            .await
            .unwrap();
    }
    let snap = bounded(a.snapshot()).await.unwrap();
    assert!(snap.revision.0 > 20);

    etcd.wipe().await.unwrap();

    // a watch from the old revision: the new etcd is behind it -> resync (the watch the
    // snapshot opened may first tell it was established, before the wipe broke it)
    let e = eventually("a watch answer from the wiped etcd", || async {
        match a.watch(snap.revision).next().await {
            Some(Err(e)) if e.kind() == ErrorKind::Unavailable => None,
            Some(Ok(b)) if b.changes.is_empty() => None,
            other => Some(other),
        }
    })
    .await
    .expect("the watch ended without an answer")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
    // the lease is unknown to the new etcd
    let e = bounded(a.keep_alive(&lease)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    let e = bounded(a.refresh(&me, &lease)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    // the snapshot reads the (empty) new etcd, at its own revision
    let fresh = bounded(a.snapshot()).await.unwrap();
    assert!(fresh.members.is_empty());
    assert!(fresh.revision < snap.revision);
    // registering again puts us back
    let again = bounded(a.register(&me)).await.unwrap();
    let fresh = bounded(a.snapshot()).await.unwrap();
    assert_eq!(fresh.members.len(), 1);
    assert_eq!(fresh.members[0].incarnation.0, again.id);
}

/// A port nobody listens on.
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn a_dead_first_endpoint_does_not_stop_calls() {
    let etcd = EtcdServer::start().await.unwrap();
    for servers in [
        format!("{},{}", dead_endpoint(), etcd.endpoint()),
        format!(
            "{},{},{}",
            dead_endpoint(),
            dead_endpoint(),
            etcd.endpoint()
        ),
        format!("{},{}", etcd.endpoint(), dead_endpoint()),
    ] {
        let a = autocluster_etcd::build(&ctx(
            "emqx1@192.168.1.162",
            "emqxcl",
            section(&servers, &[]),
        ))
        .unwrap();
        // several rounds, so the balancer has to pick among the endpoints many times
        for _ in 0..5 {
            let lease = bounded(a.register(&reg("emqx1@192.168.1.162")))
                .await
                .unwrap_or_else(|e| panic!("{servers}: {e}"));
            bounded(a.keep_alive(&lease)).await.unwrap();
            let snap = bounded(a.snapshot()).await.unwrap();
            assert_eq!(snap.members.len(), 1);
            let mut watch = a.watch(snap.revision);
            bounded(a.deregister(&lease)).await.unwrap();
            let b = next_changes(&mut watch).await.unwrap();
            assert!(matches!(b.changes[..], [Change::Delete { .. }]));
        }
    }
}

#[tokio::test]
async fn etcd_down_at_start_is_unavailable_then_works() {
    let etcd = EtcdServer::start().await.unwrap();
    etcd.kill();
    // building does no I/O: a node starts while etcd is down
    let a = backend(&etcd, &[]);
    let e = bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(
        e.context().endpoint.as_deref(),
        Some(etcd.endpoint().as_str())
    );
    let e = next_changes(&mut a.watch(Revision(1))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");

    etcd.restart().await.unwrap();
    eventually("registration once etcd is up", || async {
        a.register(&reg("emqx1@192.168.1.162")).await.ok()
    })
    .await;
    assert_eq!(bounded(a.snapshot()).await.unwrap().members.len(), 1);
}
