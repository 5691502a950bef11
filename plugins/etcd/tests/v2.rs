//! `api = v2`: EMQX 4.x's layout over etcd's HTTP v2 API (etcd 3.4 with --enable-v2).

mod common;

use std::time::Duration;

use autocluster_plugin::{Change, ErrorKind, Incarnation};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::*;

async fn v2_etcd() -> EtcdServer {
    EtcdServer::builder().v2(true).start().await.unwrap()
}

/// How many v2 watches etcd serves now (`watchers` of `/v2/stats/store`): a long poll of a
/// lock waiter is one.
async fn v2_watchers(etcd: &EtcdServer) -> u64 {
    let url = format!("{}/v2/stats/store", etcd.endpoint());
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["watchers"]
        .as_u64()
        .unwrap_or_else(|| panic!("no watchers in /v2/stats/store: {body}"))
}

fn v2_backend(etcd: &EtcdServer, name: &str) -> std::sync::Arc<dyn autocluster_plugin::Discovery> {
    autocluster_etcd::build(&ctx(
        name,
        "emqxcl",
        section(&etcd.endpoint(), &[("api", "v2"), ("node_ttl", "10s")]),
    ))
    .unwrap()
}

#[tokio::test]
async fn register_snapshot_watch_deregister_and_etcdctl_ls() {
    let etcd = v2_etcd().await;
    let a = v2_backend(&etcd, "emqx1@192.168.1.162");
    // an empty etcd: the nodes directory is created, the view is empty
    let empty = bounded(a.snapshot()).await.unwrap();
    assert!(empty.members.is_empty());

    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(10));
    let out = etcd
        .etcdctl_v2(&["ls", "/emqxcl/emqxcl", "--recursive"])
        .await
        .unwrap();
    assert_eq!(
        out,
        "/emqxcl/emqxcl/nodes\n/emqxcl/emqxcl/nodes/emqx1@192.168.1.162\n"
    );

    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    assert_eq!(snap.members[0].node, me.node);
    assert_eq!(snap.members[0].incarnation, Incarnation(lease.id));
    assert_eq!(snap.members[0].meta.as_ref(), Some(&me.meta));

    let mut watch = a.watch(snap.revision);
    let b = v2_backend(&etcd, "emqx2@192.168.1.163");
    let other = reg("emqx2@192.168.1.163");
    let lb = bounded(b.register(&other)).await.unwrap();
    let batch = next_changes(&mut watch).await.unwrap();
    match &batch.changes[..] {
        [Change::Put(m)] => {
            assert_eq!(m.node, other.node);
            assert_eq!(m.incarnation, Incarnation(lb.id));
        }
        c => panic!("expected one put, got {c:?}"),
    }
    // keep-alives refresh the TTL without waking watchers; refresh keeps the incarnation
    for _ in 0..3 {
        let left = bounded(b.keep_alive(&lb)).await.unwrap();
        assert!(left > Duration::ZERO && left <= Duration::from_secs(10));
    }
    bounded(b.refresh(&other, &lb)).await.unwrap();
    bounded(b.keep_alive(&lb)).await.unwrap();
    let batch = next_changes(&mut watch).await.unwrap();
    assert!(matches!(&batch.changes[..], [Change::Put(m)] if m.incarnation == Incarnation(lb.id)));

    bounded(b.deregister(&lb)).await.unwrap();
    let batch = next_changes(&mut watch).await.unwrap();
    match &batch.changes[..] {
        [Change::Delete { node, incarnation }] => {
            assert_eq!(node, &other.node);
            assert_eq!(*incarnation, Some(Incarnation(lb.id)));
        }
        c => panic!("expected one delete, got {c:?}"),
    }
    // the key is gone: keep-alive and refresh say so
    let e = bounded(b.keep_alive(&lb)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    let e = bounded(b.refresh(&other, &lb)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
}

#[tokio::test]
async fn emqx_keys_garbage_and_lost_history() {
    let etcd = v2_etcd().await;
    // what EMQX 4.x writes: empty values
    etcd.etcdctl_v2(&["set", "/emqxcl/emqxcl/nodes/emqx9@10.0.0.9", ""])
        .await
        .unwrap();
    etcd.etcdctl_v2(&["set", "/emqxcl/emqxcl/nodes/not-a-node", ""])
        .await
        .unwrap();
    etcd.etcdctl_v2(&["set", "/emqxcl/emqxcl/nodes/bad@json", "{"])
        .await
        .unwrap();
    etcd.etcdctl_v2(&["set", "/emqxcl/emqxcl2/nodes/x@h", ""])
        .await
        .unwrap();
    let a = v2_backend(&etcd, "emqx1@192.168.1.162");
    let snap = bounded(a.snapshot()).await.unwrap();
    let names: Vec<_> = snap.members.iter().map(|m| m.node.to_string()).collect();
    assert_eq!(names, vec!["emqx9@10.0.0.9"]);
    assert_eq!(snap.members[0].meta, None);
    assert_eq!(a.invalid_entries(), 2);

    // v2 keeps 1000 events: a watch from before them is told to resync
    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    for _ in 0..1010 {
        bounded(a.refresh(&me, &lease)).await.unwrap();
    }
    let e = next_changes(&mut a.watch(snap.revision)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");

    // a wiped etcd is behind any watch from before: resync; the registration is gone
    let snap = bounded(a.snapshot()).await.unwrap();
    etcd.wipe().await.unwrap();
    let e = next_changes(&mut a.watch(snap.revision)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
    let e = bounded(a.keep_alive(&lease)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
}

#[tokio::test]
async fn v2_lock_is_exclusive_and_bounded() {
    let etcd = v2_etcd().await;
    let a = v2_backend(&etcd, "a@h");
    let b = v2_backend(&etcd, "b@h");
    let la = bounded(a.register(&reg("a@h"))).await.unwrap();
    let lb = bounded(b.register(&reg("b@h"))).await.unwrap();
    let ta = bounded(a.lock(&la, Duration::from_secs(5))).await.unwrap();
    assert_eq!(ta.key, "/emqxcl/emqxcl/lock");
    let e = bounded(b.lock(&lb, Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
    let out = etcd
        .etcdctl_v2(&["get", "/emqxcl/emqxcl/lock"])
        .await
        .unwrap();
    assert_eq!(out.trim(), "a@h");
    // b's unlock cannot release a's lock
    bounded(b.unlock(&ta)).await.unwrap();
    assert_eq!(
        etcd.etcdctl_v2(&["get", "/emqxcl/emqxcl/lock"])
            .await
            .unwrap()
            .trim(),
        "a@h"
    );

    // b waits: once it found the lock taken, its long poll on the lock key is a v2 watcher
    // of etcd's, and a's unlock must wake it. (The poll of b's timed-out attempt above goes
    // away with its connection first.)
    eventually("no v2 watcher left", || async {
        (v2_watchers(&etcd).await == 0).then_some(())
    })
    .await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock(&lb, Duration::from_secs(20)).await })
    };
    eventually("b's long poll on the lock", || async {
        (v2_watchers(&etcd).await == 1).then_some(())
    })
    .await;
    assert!(!waiter.is_finished(), "b took a lock that a holds");
    bounded(a.unlock(&ta)).await.unwrap();
    let tb = waiter.await.unwrap().unwrap();
    assert!(tb.fence > ta.fence);
    assert_eq!(
        etcd.etcdctl_v2(&["get", "/emqxcl/emqxcl/lock"])
            .await
            .unwrap()
            .trim(),
        "b@h"
    );
    // a clean leave releases it
    bounded(b.deregister(&lb)).await.unwrap();
    bounded(a.lock(&la, Duration::from_secs(5))).await.unwrap();
}

#[tokio::test]
async fn v2_on_an_etcd_without_v2_is_unsupported() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = v2_backend(&etcd, "a@h");
    let e = bounded(a.snapshot()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("--enable-v2"), "{e}");
}
