//! Whom to join: under the cluster lock when the backend has one, the oldest member.

use std::time::Duration;

use autocluster::{Cluster, ClusterLock, ErrorKind};

/// Decides, prints the decision, and returns once the lock (if any) is released. Every wait
/// is bounded: a node that cannot decide runs alone rather than hang.
/// `join_time` stands in for the application's own join (connecting to the seed, syncing
/// data), done while the lock is held.
pub async fn join_or_start(
    cluster: &Cluster,
    ready_timeout: Duration,
    lock_timeout: Duration,
    join_time: Duration,
) {
    if !cluster.ready(ready_timeout).await {
        println!(
            "not ready after {ready_timeout:?} (last error: {}): cannot tell whom to join; \
             running alone for now",
            cluster.health().last_error.as_deref().unwrap_or("none")
        );
        return;
    }
    // The oldest member is in any view that holds this node itself: a member the view has
    // not seen yet registered after it, so it is younger. Wait (bounded) until it does.
    let me = cluster.node().clone();
    let mut views = cluster.watch();
    // `wait_for` hands back a borrow of the view: drop it at once (`is_ok_and`), since a
    // borrow held on keeps the engine from publishing and `cluster.oldest()` from reading.
    let seen = tokio::time::timeout(ready_timeout, views.wait_for(|v| v.is_running(&me)))
        .await
        .is_ok_and(|r| r.is_ok());
    if !seen {
        println!("this node is not in its own view after {ready_timeout:?}; running alone");
        return;
    }

    let lock = take_lock(cluster, lock_timeout).await;
    let view = cluster.view();
    let members: Vec<String> = view
        .members()
        .map(|e| format!("{} (created {})", e.member.node, e.member.created.0))
        .collect();
    println!(
        "deciding on the view at revision {}: {}",
        view.revision.0,
        members.join(", ")
    );
    match view.oldest().map(|e| &e.member) {
        Some(oldest) if oldest.node == me => {
            println!("I am the oldest: starting a new cluster");
            tokio::time::sleep(join_time).await;
        }
        Some(oldest) => {
            let addrs = oldest
                .meta
                .as_ref()
                .map(|m| m.addrs.join(","))
                .unwrap_or_default();
            println!("joining {} (addrs [{addrs}])", oldest.node);
            // The application joins here (connects to the seed, syncs its data), still under
            // the lock, so two joiners never race each other.
            tokio::time::sleep(join_time).await;
        }
        None => println!("no running member at all: starting a new cluster"),
    }
    if let Some(lock) = lock {
        let key = lock.key().to_string();
        match lock.unlock().await {
            Ok(()) => println!("released the cluster lock {key}"),
            // The lock is on this node's lease: it is released when the lease ends anyway.
            Err(e) => {
                println!("could not release the cluster lock {key} ({e}); it goes with the lease")
            }
        }
    }
}

/// The lock, or `None` with the reason said clearly.
async fn take_lock(cluster: &Cluster, timeout: Duration) -> Option<ClusterLock> {
    println!("taking the cluster lock (at most {timeout:?})");
    let asked = std::time::Instant::now();
    match cluster.lock(timeout).await {
        Ok(lock) => {
            println!(
                "holding the cluster lock {} (fence {}) after {:?}",
                lock.key(),
                lock.fence(),
                asked.elapsed()
            );
            Some(lock)
        }
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            println!(
                "the {} backend has no cluster lock: deciding by the oldest member alone \
                 (joins are not serialized, and a peer not heard from yet may be older)",
                cluster.backend_name()
            );
            None
        }
        Err(e) if e.kind() == ErrorKind::LockTimeout => {
            println!(
                "no cluster lock within {timeout:?} ({e}): another node holds it too long; \
                 deciding by the oldest member alone"
            );
            None
        }
        Err(e) => {
            println!("cannot take the cluster lock ({e}): deciding by the oldest member alone");
            None
        }
    }
}
