//! The cluster lock (etcd's Lock API on the node's lease): bounded, fenced, no dangling keys.

mod common;

use std::time::Duration;

use autocluster_plugin::ErrorKind;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::*;

async fn lock_keys(etcd: &EtcdServer) -> Vec<String> {
    etcd.etcdctl(&["get", "--prefix", "--keys-only", "/emqxcl/emqxcl/lock"])
        .await
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn lock_is_exclusive_bounded_and_leaves_no_waiter_behind() {
    let etcd = EtcdServer::start().await.unwrap();
    let a = backend(&etcd, &[]);
    let b = backend(&etcd, &[]);
    let la = bounded(a.register(&reg("a@h"))).await.unwrap();
    let lb = bounded(b.register(&reg("b@h"))).await.unwrap();

    let ta = bounded(a.lock(&la, Duration::from_secs(5))).await.unwrap();
    assert_eq!(ta.lease, la.id);
    assert_eq!(ta.key, format!("/emqxcl/emqxcl/lock/{:x}", la.id));
    assert!(ta.fence.0 > 0);

    let e = bounded(b.lock(&lb, Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockTimeout, "{e}");
    assert!(e.to_string().contains("/emqxcl/emqxcl/lock"), "{e}");
    // no dangling waiter key of b: only a's key holds the lock name
    assert_eq!(lock_keys(&etcd).await, vec![ta.key.clone()]);

    // b waits while a holds it, and gets it when a unlocks
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock(&lb, Duration::from_secs(20)).await })
    };
    eventually("b's waiter key", || async {
        (lock_keys(&etcd).await.len() == 2).then_some(())
    })
    .await;
    bounded(a.unlock(&ta)).await.unwrap();
    let tb = bounded(async { Ok(waiter.await.unwrap()) })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tb.lease, lb.id);
    assert!(tb.fence > ta.fence, "fencing tokens grow");

    // a lost lease releases the lock: b deregisters, a gets it at once
    bounded(b.deregister(&lb)).await.unwrap();
    let ta2 = bounded(a.lock(&la, Duration::from_secs(5))).await.unwrap();
    assert!(ta2.fence > tb.fence);
    bounded(a.unlock(&ta2)).await.unwrap();
    assert!(lock_keys(&etcd).await.is_empty());
}
