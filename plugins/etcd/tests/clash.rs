//! Two processes with the same `node.name` (issue 13, item 2), v3 and v2, on every etcd
//! installed: the second never takes over the first's key; it gets a `Conflict` (not
//! retryable) naming the clash and the other incarnation; the first keeps its key, and its
//! watch logs the attempt.

mod common;

use autocluster_plugin::{Change, Discovery, ErrorKind, Incarnation};
use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdServer};
use common::*;
use futures::StreamExt;

const NODE: &str = "emqx1@192.168.1.162";
const KEY: &str = "/emqxcl/emqxcl/nodes/emqx1@192.168.1.162";

fn agent(etcd: &EtcdServer, api: &str) -> std::sync::Arc<dyn Discovery> {
    let s = section(&etcd.endpoint(), &[("api", api), ("node_ttl", "10s")]);
    autocluster_etcd::build(&ctx(NODE, "emqxcl", s)).unwrap()
}

/// The lease (v3) the node's key is attached to, from `etcdctl get -w json`.
async fn key_lease(etcd: &EtcdServer) -> Option<u64> {
    let out = etcd.etcdctl(&["get", "-w", "json", KEY]).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["kvs"].as_array()?.first()?["lease"].as_u64()
}

/// The clash, with `api` against `etcd`; `holder` says how the error names the first's
/// incarnation.
async fn clash(etcd: &EtcdServer, api: &str) {
    let (logs, _guard) = Logs::capture();
    let me = reg(NODE);
    let first = agent(etcd, api);
    let lease = bounded(first.register(&me)).await.unwrap();
    let snap = bounded(first.snapshot()).await.unwrap();
    let watching = drain(first.watch(snap.revision)).await;

    let second = agent(etcd, api);
    // The refused process watches too (as an agent does once it would be registered): its
    // own marker must not make it log an attempt of "another process".
    let mut second_watch = match api {
        "v3" => {
            let snap = bounded(second.snapshot()).await.unwrap();
            let mut w = second.watch(snap.revision);
            let up = bounded(async { w.next().await.expect("the watch ended") }).await;
            assert!(up.is_ok_and(|b| b.changes.is_empty()));
            Some(w)
        }
        _ => None,
    };
    let mut impostor = reg(NODE);
    impostor.meta = impostor.meta.with_addrs(vec!["10.9.9.9:4370".into()]);
    let e = bounded(second.register(&impostor)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(!e.is_retryable(), "{e}");
    let text = e.to_string();
    let holder = match api {
        "v3" => format!("lease {:x}", lease.id),
        _ => format!("createdIndex {}", lease.id),
    };
    for part in [
        NODE,
        "already registered by another process",
        &holder,
        "node.name",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }

    // The first keeps its key, its incarnation and its lease.
    let snap = bounded(second.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    assert_eq!(snap.members[0].incarnation, Incarnation(lease.id));
    assert_eq!(snap.members[0].meta.as_ref(), Some(&me.meta));
    bounded(first.keep_alive(&lease)).await.unwrap();
    if api == "v3" {
        assert_eq!(key_lease(etcd).await, Some(lease.id));
        // the second's lease was revoked: only the first's is left
        let leases = etcd.etcdctl(&["lease", "list"]).await.unwrap();
        assert!(leases.starts_with("found 1 leases"), "{leases}");
    }

    // The first's watch logs the attempt, with where the other process said it runs.
    eventually("the holder's log of the attempt", || async {
        let log = logs.text();
        (log.contains("another process tried to register this node's name")
            && log.contains("10.9.9.9:4370"))
        .then_some(())
    })
    .await;
    if let Some(mut w) = second_watch.take() {
        // A later change, seen by the refused process's watch: it has read its marker too.
        let sync = "/emqxcl/emqxcl/nodes/sync@127.0.0.1";
        let value = r#"{"node":"sync@127.0.0.1"}"#;
        etcd.etcdctl(&["put", sync, value]).await.unwrap();
        bounded(async {
            loop {
                let b = w.next().await.expect("the watch ended").unwrap();
                let synced = b
                    .changes
                    .iter()
                    .any(|c| matches!(c, Change::Put(m) if m.node.as_str() == "sync@127.0.0.1"));
                if synced {
                    return Ok(());
                }
            }
        })
        .await
        .unwrap();
        let log = logs.text();
        assert_eq!(
            log.matches("another process tried to register").count(),
            1,
            "only the holder logs the attempt: {log}"
        );
        etcd.etcdctl(&["del", sync]).await.unwrap();
    }
    watching.abort();
    bounded(first.deregister(&lease)).await.unwrap();
    // Once the first is gone, the name is free again.
    let again = bounded(second.register(&impostor)).await.unwrap();
    bounded(second.deregister(&again)).await.unwrap();
}

#[tokio::test]
async fn the_second_of_two_same_named_nodes_is_refused_v3() {
    for bin in available_binaries() {
        eprintln!("etcd {} (v3)", bin.version);
        let etcd = EtcdServer::builder()
            .binary(&bin.etcd)
            .start()
            .await
            .unwrap();
        clash(&etcd, "v3").await;
    }
}

#[tokio::test]
async fn the_second_of_two_same_named_nodes_is_refused_v2() {
    for bin in available_binaries() {
        eprintln!("etcd {} (v2)", bin.version);
        let etcd = EtcdServer::builder()
            .binary(&bin.etcd)
            .v2(true)
            .start()
            .await
            .unwrap();
        clash(&etcd, "v2").await;
    }
}

/// A node whose key was deleted writes it again on its lease, unless another process took the
/// name meanwhile; a key nobody holds (written by hand, without a lease) is taken over.
#[tokio::test]
async fn refresh_never_takes_the_key_back_from_another_holder() {
    let etcd = EtcdServer::start().await.unwrap();
    let me = reg(NODE);
    let first = agent(&etcd, "v3");
    let lease = bounded(first.register(&me)).await.unwrap();
    etcd.etcdctl(&["del", KEY]).await.unwrap();
    let second = agent(&etcd, "v3");
    let other = bounded(second.register(&me)).await.unwrap();
    let e = bounded(first.refresh(&me, &lease)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(
        e.to_string().contains(&format!("lease {:x}", other.id)),
        "{e}"
    );
    assert_eq!(key_lease(&etcd).await, Some(other.id));
    // its own key, still on its lease, is written again in place
    bounded(second.refresh(&me, &other)).await.unwrap();
    assert_eq!(key_lease(&etcd).await, Some(other.id));

    // a key without a lease (etcdctl put) holds nothing: registering takes it over
    bounded(second.deregister(&other)).await.unwrap();
    etcd.etcdctl(&["put", KEY, ""]).await.unwrap();
    let third = bounded(first.register(&me)).await.unwrap();
    assert_eq!(key_lease(&etcd).await, Some(third.id));
}
