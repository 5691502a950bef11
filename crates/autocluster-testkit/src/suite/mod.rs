//! The behaviour suite: one set of checks every backend runs, chosen by its capabilities.
//!
//! A backend crate implements [`Target`] (how to make a backend for a node, and which faults
//! it can inject) and calls [`run`] from one of its tests:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn behaviour() {
//!     let target = MyTarget::start().await;
//!     autocluster_testkit::suite::run(&target).await;
//! }
//! ```
//!
//! Each check starts fresh nodes through the real engine ([`autocluster::Cluster`]), records
//! every event each observer sees, and asserts on what a user relies on: a node sees itself
//! and its peers, sees a clean leave at once and a crash within the TTL, and never sees a
//! false `Left` through an outage or a resync.

mod node;

use std::sync::Arc;
use std::time::Duration;

use autocluster::{EngineConfig, EventKind};
use autocluster_plugin::{async_trait, Discovery, Metadata, NodeName, Registration, Registrations};

pub use node::Node;

/// What the suite needs from a backend under test.
#[async_trait]
pub trait Target: Send + Sync {
    /// A name for messages (`etcd 3.4.23`).
    fn name(&self) -> String;

    /// A backend for `node`, talking to the shared server (or group) under test.
    async fn backend(&self, node: &NodeName) -> Arc<dyn Discovery>;

    /// Engine settings for a node: short backoffs so faults heal quickly.
    fn engine_config(&self, node: &NodeName) -> EngineConfig {
        let mut c = EngineConfig::new(Registration {
            node: node.clone(),
            meta: Metadata::of(node.clone()).with_version("suite"),
        });
        c.call_timeout = Duration::from_secs(3);
        c.backoff_min = Duration::from_millis(50);
        c.backoff_max = Duration::from_millis(500);
        c
    }

    /// Takes the backend down (`true`) or brings it back with its data (`false`); returns
    /// false when the target cannot.
    async fn outage(&self, down: bool) -> bool {
        let _ = down;
        false
    }

    /// With `now`, loses the backend's history so watchers must resync (a compaction, or a
    /// wipe after which nodes register again); returns whether the target can (with `now`
    /// false it only answers that).
    async fn lose_history(&self, now: bool) -> bool {
        let _ = now;
        false
    }

    /// How long the suite waits for anything; generous.
    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// The node names the suite uses, for targets that must know them up front (static seeds).
pub const NODE_NAMES: &[&str] = &[
    "suite-a1@127.0.0.31",
    "suite-b1@127.0.0.32",
    "suite-a2@127.0.0.31",
    "suite-b2@127.0.0.32",
    "suite-a3@127.0.0.31",
    "suite-b3@127.0.0.32",
    "suite-a4@127.0.0.31",
    "suite-b4@127.0.0.32",
    "suite-a5@127.0.0.31",
    "suite-b5@127.0.0.32",
];

/// Runs every check the target's capabilities allow. Panics with a message naming the check
/// and the target on the first failure.
pub async fn run(target: &dyn Target) {
    let caps = {
        let probe = NodeName::parse("caps@127.0.0.1").unwrap();
        target.backend(&probe).await.capabilities()
    };
    let registers = caps.registration != Registrations::None;
    eprintln!("behaviour suite on {}: {caps:?}", target.name());
    sees_itself_and_a_peer(target).await;
    if registers {
        sees_a_clean_leave(target).await;
        sees_a_crash_expire(target).await;
    }
    if target.outage(false).await {
        survives_an_outage(target).await;
    }
    if registers && target.lose_history(false).await {
        resyncs_after_losing_history(target).await;
    }
}

/// Two nodes see each other (and themselves).
pub async fn sees_itself_and_a_peer(target: &dyn Target) {
    let p = target.patience();
    let a = Node::start(target, "suite-a1@127.0.0.31").await;
    let b = Node::start(target, "suite-b1@127.0.0.32").await;
    let both = ["suite-a1@127.0.0.31", "suite-b1@127.0.0.32"];
    a.wait_for_running(&both, p).await;
    b.wait_for_running(&both, p).await;
    a.wait_fresh(p).await;
    assert_eq!(
        a.wait_count("suite-b1@127.0.0.32", EventKind::Joined, 1, p)
            .await,
        1,
        "{}: one Joined for the peer",
        target.name()
    );
    a.leave().await;
    b.leave().await;
}

/// A clean leave is seen by the peer as `Left`, well within the TTL.
pub async fn sees_a_clean_leave(target: &dyn Target) {
    let p = target.patience();
    let a = Node::start(target, "suite-a2@127.0.0.31").await;
    let b = Node::start(target, "suite-b2@127.0.0.32").await;
    a.wait_for_running(&["suite-a2@127.0.0.31", "suite-b2@127.0.0.32"], p)
        .await;
    b.leave().await;
    a.wait_for_running(&["suite-a2@127.0.0.31"], p).await;
    assert_eq!(
        a.wait_count("suite-b2@127.0.0.32", EventKind::Left, 1, p)
            .await,
        1,
        "{}: one Left after a clean leave",
        target.name()
    );
    a.leave().await;
}

/// A node that stops without deregistering is gone once its TTL runs out.
pub async fn sees_a_crash_expire(target: &dyn Target) {
    let p = target.patience();
    let a = Node::start(target, "suite-a3@127.0.0.31").await;
    let b = Node::start(target, "suite-b3@127.0.0.32").await;
    a.wait_for_running(&["suite-a3@127.0.0.31", "suite-b3@127.0.0.32"], p)
        .await;
    b.crash();
    a.wait_for_running(&["suite-a3@127.0.0.31"], p).await;
    assert_eq!(
        a.wait_count("suite-b3@127.0.0.32", EventKind::Left, 1, p)
            .await,
        1,
        "{}: one Left after a crash; events seen: {:?}; view {:?}",
        target.name(),
        a.summary(),
        a.cluster.view()
    );
    a.leave().await;
}

/// Through an outage the view stays, marked stale; no `Left`; fresh again after.
pub async fn survives_an_outage(target: &dyn Target) {
    let p = target.patience();
    let both = ["suite-a4@127.0.0.31", "suite-b4@127.0.0.32"];
    let a = Node::start(target, both[0]).await;
    let b = Node::start(target, both[1]).await;
    a.wait_for_running(&both, p).await;
    b.wait_for_running(&both, p).await;
    assert!(target.outage(true).await);
    let mut rx = a.cluster.watch();
    tokio::time::timeout(p, rx.wait_for(|v| v.stale))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: the view is not marked stale during an outage",
                target.name()
            )
        })
        .ok();
    assert_eq!(
        a.cluster.view().running_nodes().len(),
        2,
        "{}: the last view is kept",
        target.name()
    );
    assert!(target.outage(false).await);
    a.wait_fresh(p).await;
    b.wait_fresh(p).await;
    a.wait_for_running(&both, p).await;
    assert_eq!(
        a.lefts_of(both[1]),
        0,
        "{}: no false Left through an outage",
        target.name()
    );
    assert_eq!(
        b.lefts_of(both[0]),
        0,
        "{}: no false Left through an outage",
        target.name()
    );
    a.leave().await;
    b.leave().await;
}

/// After the backend lost its history (compaction, wipe), the view resyncs and nobody is
/// reported as having left.
pub async fn resyncs_after_losing_history(target: &dyn Target) {
    let p = target.patience();
    let both = ["suite-a5@127.0.0.31", "suite-b5@127.0.0.32"];
    let a = Node::start(target, both[0]).await;
    let b = Node::start(target, both[1]).await;
    a.wait_for_running(&both, p).await;
    b.wait_for_running(&both, p).await;
    assert!(target.lose_history(true).await);
    a.wait_fresh(p).await;
    a.wait_for_running(&both, p).await;
    b.wait_for_running(&both, p).await;
    // Both must be registered again (a wipe loses the registrations too).
    let mut rx = a.cluster.watch_health();
    tokio::time::timeout(p, rx.wait_for(|h| h.registered && !h.stale))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{}: not registered again after losing history",
                target.name()
            )
        })
        .ok();
    assert_eq!(
        a.lefts_of(both[1]),
        0,
        "{}: no false Left after a resync",
        target.name()
    );
    assert_eq!(
        b.lefts_of(both[0]),
        0,
        "{}: no false Left after a resync",
        target.name()
    );
    a.leave().await;
    b.leave().await;
}
