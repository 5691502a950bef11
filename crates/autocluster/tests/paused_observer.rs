//! A node that did not run for a while (SIGSTOP, a paused VM, starved of CPU) does not blame
//! its peers for it: a heartbeat member whose TTL ran out meanwhile is heard from first (its
//! heartbeats wait in the socket), and expires only if it stays silent. A member that really
//! goes silent still expires on time.
//!
//! The backend here is the test's own observing backend (the shape of multicast: what it
//! hears, passed on as observations with a TTL), and the pause is tokio's paused clock
//! jumping ahead in one step, which is what the engine's timers see after a SIGCONT.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autocluster::plugin::{
    async_trait, BoxStream, Capabilities, Change, Discovery, Incarnation, Member, Registration,
    Result, Revision, WatchBatch,
};
use autocluster::{Cluster, EngineConfig, EventKind, NodeName};
use futures::StreamExt;
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(3);

/// Passes on the batches the test sends, as a multicast backend passes on what it hears.
#[derive(Debug)]
struct Heard(Mutex<Option<mpsc::UnboundedReceiver<WatchBatch>>>);

#[async_trait]
impl Discovery for Heard {
    fn name(&self) -> &'static str {
        "heard"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::observe().with_ttl(TTL)
    }

    fn observe(&self) -> BoxStream<Result<WatchBatch>> {
        match self.0.lock().unwrap().take() {
            Some(rx) => tokio_stream_of(rx).map(Ok).boxed(),
            None => futures::stream::pending().boxed(),
        }
    }
}

fn tokio_stream_of(
    mut rx: mpsc::UnboundedReceiver<WatchBatch>,
) -> impl futures::Stream<Item = WatchBatch> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn heartbeat(peer: &NodeName) -> WatchBatch {
    WatchBatch {
        revision: Revision(0),
        changes: vec![Change::Put(
            Member::new(peer.clone(), Incarnation(7)).with_ttl(TTL),
        )],
    }
}

/// A node observing one peer, which has joined: the node, the peer's heartbeats, the node's
/// events after the join, and the peer's name.
async fn observing_a_peer() -> (
    Cluster,
    mpsc::UnboundedSender<WatchBatch>,
    tokio::sync::broadcast::Receiver<autocluster::Event>,
    NodeName,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend: Arc<dyn Discovery> = Arc::new(Heard(Mutex::new(Some(rx))));
    let me = NodeName::parse("me@h").unwrap();
    let config = EngineConfig::new(Registration {
        node: me.clone(),
        meta: autocluster::Metadata::of(me),
    });
    let cluster = Cluster::with_backend(backend, config);
    let mut changes = cluster.events();
    let peer = NodeName::parse("peer@h").unwrap();
    tx.send(heartbeat(&peer)).unwrap();
    let mut view = cluster.watch();
    view.wait_for(|v| v.is_running(&peer)).await.unwrap();
    assert_eq!(changes.recv().await.unwrap().kind, EventKind::Joined);
    (cluster, tx, changes, peer)
}

#[tokio::test(start_paused = true)]
async fn a_ttl_that_ran_out_while_this_node_was_paused_waits_for_the_queued_heartbeat() {
    let (cluster, tx, mut changes, peer) = observing_a_peer().await;

    // Paused for 10 s, three TTLs: the clock jumps at once. The peer kept sending; its
    // heartbeat is queued, and reaches the engine just after it runs again.
    tokio::time::advance(Duration::from_secs(10)).await;
    // The engine's timers run first (as after a SIGCONT, before the socket is read).
    tokio::time::sleep(Duration::from_millis(1)).await;
    tx.send(heartbeat(&peer)).unwrap();
    // Well past the catch-up window: the peer stayed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(cluster.view().is_running(&peer), "{:?}", cluster.view());
    assert_eq!(cluster.stats().expiries_postponed(), 1);
    let event = changes.try_recv().ok().map(|e| e.kind);
    assert_eq!(event, None, "no event: the peer never left");

    // A peer that really goes silent expires one TTL after its last heartbeat, on time.
    let t0 = tokio::time::Instant::now();
    let left = changes.recv().await.unwrap();
    assert_eq!((left.kind, &left.node), (EventKind::Left, &peer));
    assert!(t0.elapsed() <= TTL, "{:?}", t0.elapsed());
    assert_eq!(cluster.stats().expiries_postponed(), 1);
    cluster.leave().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_peer_still_silent_after_the_catch_up_expires() {
    let (cluster, _heartbeats, mut changes, peer) = observing_a_peer().await;

    // Paused, and the peer died meanwhile: nothing queued. It leaves after the catch-up
    // (half a second).
    tokio::time::advance(Duration::from_secs(10)).await;
    let t0 = tokio::time::Instant::now();
    let left = changes.recv().await.unwrap();
    assert_eq!((left.kind, &left.node), (EventKind::Left, &peer));
    assert!(
        t0.elapsed() <= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(cluster.stats().expiries_postponed(), 1);
    cluster.leave().await.unwrap();
}
