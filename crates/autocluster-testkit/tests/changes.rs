//! `Cluster::changes`, on the in-memory backend and tokio's paused clock: a subscriber made
//! at any point (before, during, after a burst of 1,000 joins and 300 leaves) sees the
//! members of its first snapshot and then every change, none twice, none missing; one that
//! falls behind gets `Lagged` and a fresh snapshot. And `Cluster::update_metadata`: peers
//! see one `Updated` per update, bad or oversized metadata is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use autocluster::{Cluster, EngineConfig, EventKind, Status, View, ViewChange};
use autocluster_plugin::{Discovery, Incarnation, Lease, Metadata, NodeName, Registration};
use autocluster_testkit::memory::MemoryServer;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(9);
/// The joiners' registrations live far longer than the test.
const LONG: Duration = Duration::from_secs(24 * 3600);
const PATIENCE: Duration = Duration::from_secs(600);
const JOINS: usize = 1000;
const LEAVES: usize = 300;

fn name(s: &str) -> NodeName {
    NodeName::parse(s).unwrap()
}

fn config(node: &str) -> EngineConfig {
    let node = name(node);
    let mut c = EngineConfig::new(Registration {
        node: node.clone(),
        meta: Metadata::of(node).with_version("changes-test"),
    });
    c.backoff_min = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(500);
    c
}

/// The running members of a view, by node.
fn running(view: &View) -> BTreeMap<NodeName, Incarnation> {
    view.members()
        .filter(|e| e.status == Status::Running)
        .map(|e| (e.member.node.clone(), e.member.incarnation))
        .collect()
}

/// Follows a stream the way an application would: the members of each snapshot, then each
/// event applied, failing on an event that cannot follow what came before (a join of a
/// member already there, a leave or update of one that is not). Publishes the members after
/// every item, and how many `Lagged` items came.
fn follow(
    mut changes: BoxStream<'static, ViewChange>,
) -> (
    watch::Receiver<BTreeMap<NodeName, Incarnation>>,
    watch::Receiver<u64>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let (lag_tx, lag_rx) = watch::channel(0);
    let task = tokio::spawn(async move {
        let first = changes.next().await;
        let Some(ViewChange::Snapshot(view)) = first else {
            panic!("the first item must be a snapshot, got {first:?}");
        };
        let mut members = running(&view);
        tx.send_replace(members.clone());
        let mut after_lag = false;
        while let Some(item) = changes.next().await {
            match item {
                ViewChange::Snapshot(view) => {
                    assert!(after_lag, "a snapshot comes first or after a lag only");
                    after_lag = false;
                    members = running(&view);
                }
                ViewChange::Lagged(n) => {
                    assert!(n > 0);
                    after_lag = true;
                    lag_tx.send_modify(|l| *l += 1);
                }
                ViewChange::Event(e) => {
                    assert!(!after_lag, "after a lag, a snapshot comes first");
                    match e.kind {
                        EventKind::Joined => {
                            let was = members.insert(e.node.clone(), e.member.incarnation);
                            assert!(was.is_none(), "{} joined twice", e.node);
                        }
                        EventKind::Left => {
                            let was = members.remove(&e.node);
                            assert_eq!(was, Some(e.member.incarnation), "{} left", e.node);
                        }
                        EventKind::Updated => {
                            let was = members.insert(e.node.clone(), e.member.incarnation);
                            assert!(was.is_some(), "{} updated but not there", e.node);
                        }
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
            tx.send_replace(members.clone());
        }
    });
    (rx, lag_rx, task)
}

/// Waits until the follower's members are exactly `want`.
async fn converges(
    rx: &mut watch::Receiver<BTreeMap<NodeName, Incarnation>>,
    want: &BTreeMap<NodeName, Incarnation>,
    who: &str,
) {
    let got = tokio::time::timeout(PATIENCE, rx.wait_for(|m| m == want))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        got,
        "{who}: has {} members, want {}",
        rx.borrow().len(),
        want.len()
    );
}

async fn join_all(backend: &Arc<dyn Discovery>, nodes: &[NodeName]) -> Vec<Lease> {
    let calls = nodes.iter().map(|n| {
        let backend = backend.clone();
        let reg = Registration {
            node: n.clone(),
            meta: Metadata::of(n.clone()),
        };
        tokio::spawn(async move { backend.register(&reg).await.expect("register") })
    });
    let mut leases = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        leases.push(call.await.unwrap());
    }
    leases
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_made_at_any_point_sees_every_change_once() {
    let server = MemoryServer::new();
    let observer = Cluster::with_backend(server.backend(TTL), config("obs@127.0.0.1"));
    let before = follow(observer.changes());
    assert!(observer.ready(PATIENCE).await);

    let joiners: Arc<dyn Discovery> = server.backend(LONG);
    let nodes: Vec<NodeName> = (0..JOINS)
        .map(|i| name(&format!("n{i}@10.0.{}.{}", i / 250, i % 250 + 1)))
        .collect();
    let joining = {
        let (joiners, nodes) = (joiners.clone(), nodes.clone());
        tokio::spawn(async move { join_all(&joiners, &nodes).await })
    };
    // Made while the engine is publishing the joins: it has seen some, not all.
    let mut all = observer.watch();
    let some = tokio::time::timeout(PATIENCE, all.wait_for(|v| v.len() > JOINS / 10))
        .await
        .is_ok();
    assert!(some);
    let during = follow(observer.changes());
    let leases = joining.await.unwrap();
    let joined = tokio::time::timeout(PATIENCE, all.wait_for(|v| v.len() == JOINS + 1))
        .await
        .is_ok();
    assert!(joined, "the observer sees every join");

    // 300 leave at once, with a subscriber made on the way.
    let leaving = {
        let joiners = joiners.clone();
        let leases = leases[..LEAVES].to_vec();
        tokio::spawn(async move {
            for lease in leases {
                joiners.deregister(&lease).await.expect("deregister");
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let mid_leave = follow(observer.changes());
    leaving.await.unwrap();
    let left = tokio::time::timeout(PATIENCE, all.wait_for(|v| v.len() == JOINS - LEAVES + 1))
        .await
        .is_ok();
    assert!(left, "the observer sees every leave");
    let after = follow(observer.changes());

    let want = running(&observer.view());
    assert_eq!(want.len(), JOINS - LEAVES + 1);
    for (who, mut f) in [
        ("before", before),
        ("during the joins", during),
        ("during the leaves", mid_leave),
        ("after", after),
    ] {
        converges(&mut f.0, &want, who).await;
        assert_eq!(*f.1.borrow(), 0, "{who}: no lag at the default capacity");
        assert!(!f.2.is_finished(), "{who}: the follower failed or ended");
    }
    observer.leave().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_falls_behind_gets_lagged_then_a_snapshot() {
    let server = MemoryServer::new();
    let mut c = config("obs@127.0.0.1");
    c.event_capacity = 16;
    let observer = Cluster::with_backend(server.backend(TTL), c);
    assert!(observer.ready(PATIENCE).await);
    // Made now, read only once 200 joins have been published: it fell behind.
    let stream = observer.changes();
    let joiners: Arc<dyn Discovery> = server.backend(LONG);
    let nodes: Vec<NodeName> = (0..200)
        .map(|i| name(&format!("n{i}@10.1.0.{}", i + 1)))
        .collect();
    join_all(&joiners, &nodes).await;
    let mut all = observer.watch();
    let joined = tokio::time::timeout(PATIENCE, all.wait_for(|v| v.len() == 201))
        .await
        .is_ok();
    assert!(joined);
    let (mut members, lags, task) = follow(stream);
    let want = running(&observer.view());
    converges(&mut members, &want, "the slow subscriber").await;
    assert_eq!(*lags.borrow(), 1, "one lag, then a fresh snapshot");
    assert!(!task.is_finished());
    observer.leave().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_stream_ends_after_leave() {
    let server = MemoryServer::new();
    let a = Cluster::with_backend(server.backend(TTL), config("a@127.0.0.1"));
    let mut changes = a.changes();
    assert!(matches!(
        changes.next().await,
        Some(ViewChange::Snapshot(_))
    ));
    a.leave().await.unwrap();
    let rest: Vec<ViewChange> = tokio::time::timeout(PATIENCE, changes.collect())
        .await
        .expect("the stream ends");
    // Whatever the engine published before it stopped (its own join) came before the end.
    assert!(rest.len() <= 2, "{rest:?}");
}

/// The next event `rx` gives about anyone but the subscriber itself.
async fn next_event(changes: &mut BoxStream<'static, ViewChange>) -> autocluster::Event {
    loop {
        let item = tokio::time::timeout(PATIENCE, changes.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on");
        if let ViewChange::Event(e) = item {
            return *e;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_update_is_one_updated_event_on_every_peer() {
    let server = MemoryServer::new();
    let a = Cluster::with_backend(server.backend(TTL), config("a@127.0.0.1"));
    let b = Cluster::with_backend(server.backend(TTL), config("b@127.0.0.1"));
    assert!(a.ready(PATIENCE).await && b.ready(PATIENCE).await);
    let mut rx = b.watch();
    let both = tokio::time::timeout(PATIENCE, rx.wait_for(|v| v.len() == 2))
        .await
        .is_ok();
    assert!(both);
    let mut changes = b.changes();
    assert!(matches!(changes.next().await, Some(ViewChange::Snapshot(v)) if v.len() == 2));

    let changed = a.update_metadata(|m| {
        m.labels.insert("zone".into(), "eu-1".into());
        m.endpoints.insert("grpc".into(), "10.0.0.5:50051".into());
        m.addrs = vec!["ignored:1".into()];
    });
    assert!(changed.unwrap());
    // The same update again changes nothing and writes nothing.
    assert!(!a
        .update_metadata(|m| {
            m.labels.insert("zone".into(), "eu-1".into());
        })
        .unwrap());

    let e = next_event(&mut changes).await;
    assert_eq!(
        (e.kind, e.node.as_str()),
        (EventKind::Updated, "a@127.0.0.1")
    );
    let meta = e.member.meta.as_ref().unwrap();
    assert_eq!(meta.labels.get("zone").map(String::as_str), Some("eu-1"));
    assert_eq!(
        meta.endpoints.get("grpc").map(String::as_str),
        Some("10.0.0.5:50051")
    );
    assert!(meta.addrs.is_empty(), "the engine's addresses stay");
    let previous = e.previous.as_ref().unwrap();
    assert_eq!(previous.incarnation, e.member.incarnation, "the same lease");

    // Refused, changing nothing: a bad key, a bad endpoint, more than the backend carries.
    let bad = a.update_metadata(|m| {
        m.labels.insert("Bad Key".into(), "x".into());
    });
    assert!(bad.unwrap_err().to_string().contains("label key Bad Key"));
    let bad = a.update_metadata(|m| {
        m.endpoints.insert("mqtt".into(), "nohost".into());
    });
    assert!(bad.unwrap_err().to_string().contains("endpoint mqtt"));
    let huge = a.update_metadata(|m| {
        for i in 0..300 {
            m.labels.insert(format!("k{i}"), "v".repeat(250));
        }
    });
    let why = huge.unwrap_err().to_string();
    assert!(why.contains("carries at most 65536"), "{why}");
    assert_eq!(a.metadata().labels.len(), 1);

    // The next event b sees is c joining: the update gave exactly one event.
    let c = Cluster::with_backend(server.backend(TTL), config("c@127.0.0.1"));
    let e = next_event(&mut changes).await;
    assert_eq!(
        (e.kind, e.node.as_str()),
        (EventKind::Joined, "c@127.0.0.1")
    );
    for n in [&a, &b, &c] {
        n.leave().await.unwrap();
    }
    assert!(a.update_metadata(|_| {}).is_err(), "no update after leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_from_many_threads_at_once_lose_none() {
    let server = MemoryServer::new();
    let a = Arc::new(Cluster::with_backend(
        server.backend(TTL),
        config("a@127.0.0.1"),
    ));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                a.update_metadata(|m| {
                    m.labels.insert(format!("k{i}"), i.to_string());
                })
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap());
    }
    assert_eq!(a.metadata().labels.len(), 64);
    // What is registered catches up with the last update.
    let mut view = a.watch();
    let me = name("a@127.0.0.1");
    let landed = tokio::time::timeout(
        PATIENCE,
        view.wait_for(|v| {
            v.get(&me)
                .and_then(|e| e.member.meta.as_ref())
                .is_some_and(|m| m.labels.len() == 64)
        }),
    )
    .await
    .is_ok();
    assert!(landed, "the registration carries all 64 labels");
    a.leave().await.unwrap();
}
