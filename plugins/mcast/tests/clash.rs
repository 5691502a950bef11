//! Two processes with one node name (a copied configuration), and a node whose clock
//! stepped back, through the real engine on loopback multicast:
//!
//! - while an impostor runs, both it and the real node report the clash (not ready, a
//!   `conflict` error, counted) and the peer counts it; the peer keeps the real node;
//! - once the impostor leaves, or stops, the real node is ready again within `member_ttl`
//!   (plus its next heartbeat, when the impostor stopped without a word);
//! - recorded packets of both, replayed afterwards, are refused and change nothing;
//! - a node that restarts with a smaller incarnation (its clock stepped back) is seen at
//!   once, and its old life's packets replayed are refused.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autocluster_mcast::{decode, encode, Key, Kind, McastDiscovery, Packet};
use autocluster_plugin::{Discovery, NodeName};
use autocluster_testkit::suite::{Node as Agent, Target};
use common::{eventually, name, Net, Node, Tap, WAIT};

const HEARTBEAT: &str = "200ms";
const MEMBER_TTL: Duration = Duration::from_secs(1);
const REAL: &str = "r@127.0.0.51";
const PEER: &str = "p@127.0.0.52";

/// Builds agents on `net`, keeping each backend to read its counters.
struct Group {
    net: Net,
}

#[autocluster_plugin::async_trait]
impl Target for Group {
    fn name(&self) -> String {
        "mcast clash".into()
    }

    async fn backend(&self, node: &NodeName) -> Arc<dyn Discovery> {
        Arc::new(self.build(node.as_str()))
    }
}

impl Group {
    fn build(&self, node: &str) -> McastDiscovery {
        Node {
            heartbeat: HEARTBEAT,
            member_ttl: "1s",
            ..Node::new(node)
        }
        .build(self.net)
    }

    /// An agent through the real engine, and its backend.
    fn start(&self, node: &str) -> (Agent, Arc<McastDiscovery>) {
        let backend = Arc::new(self.build(node));
        let dynamic: Arc<dyn Discovery> = backend.clone();
        let agent = Agent::start_with(dynamic, self.engine_config(&name(node)));
        (agent, backend)
    }
}

/// The incarnation `agent`'s view has for `node`, if it runs there.
fn seen(agent: &Agent, node: &str) -> Option<u64> {
    let view = agent.cluster.view();
    let n = name(node);
    view.is_running(&n)
        .then(|| view.get(&n).map(|e| e.member.incarnation.0))
        .flatten()
}

fn conflicted(agent: &Agent) -> bool {
    let h = agent.cluster.health();
    !h.is_ready() && h.last_error_kind == Some(autocluster_plugin::ErrorKind::Conflict)
}

/// Every datagram the tap heard from `node`.
fn recorded(tap: &Tap, node: &str) -> Vec<Vec<u8>> {
    let key = Key::derive("secret");
    let n = name(node);
    tap.drain()
        .into_iter()
        .filter(|d| decode(d, &key).is_ok_and(|p| p.node == n))
        .collect()
}

async fn impostor_runs_then(net: Net, leaves: bool) {
    let g = Group { net };
    let tap = Tap::open(net);
    let (peer, peer_backend) = g.start(PEER);
    let (real, real_backend) = g.start(REAL);
    peer.wait_for_running(&[PEER, REAL], WAIT).await;
    assert!(
        real.cluster.ready(WAIT).await,
        "{:?}",
        real.cluster.health()
    );
    let ours = real_backend.incarnation();
    assert_eq!(seen(&peer, REAL), Some(ours));

    // The impostor: the same name, a copied configuration.
    let (impostor, impostor_backend) = g.start(REAL);
    eventually("the real node to report the clash", || conflicted(&real)).await;
    eventually("the impostor to report the clash", || conflicted(&impostor)).await;
    eventually("the peer to count the clash", || {
        peer_backend.drops().name_clash > 0
    })
    .await;
    assert!(real_backend.drops().name_clash > 0);
    assert!(impostor_backend.drops().name_clash > 0);
    let h = real.cluster.health();
    let why = h.last_error.unwrap_or_default();
    assert!(
        why.contains(&format!("{:x}", impostor_backend.incarnation())),
        "{why}"
    );
    // While it runs (a few seconds), the peer passes on the real node, the first started.
    eventually("the peer to settle on the real node", || {
        seen(&peer, REAL) == Some(ours)
    })
    .await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(seen(&peer, REAL), Some(ours), "the peer lost the real node");
        assert!(conflicted(&real) && conflicted(&impostor));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let gone = Instant::now();
    if leaves {
        impostor.leave().await;
    } else {
        impostor.crash();
    }
    drop(impostor_backend);
    eventually("the real node ready again", || {
        real.cluster.health().is_ready()
    })
    .await;
    let back = gone.elapsed();
    let bound = MEMBER_TTL
        + if leaves {
            Duration::ZERO
        } else {
            Duration::from_millis(200)
        };
    eprintln!(
        "impostor {}: the real node ready again {back:?} later (member_ttl {MEMBER_TTL:?})",
        if leaves { "left" } else { "stopped" }
    );
    // (and a little for scheduling on a shared machine)
    assert!(back <= bound + Duration::from_millis(500), "{back:?}");
    assert_eq!(seen(&peer, REAL), Some(ours));

    // Everything the real node and the impostor sent, sent again: refused, nothing changes.
    let replays = recorded(&tap, REAL);
    let (peer_before, real_before) = (peer_backend.drops(), real_backend.drops());
    for d in &replays {
        tap.send(d).await;
    }
    let from_impostor = replays
        .iter()
        .filter(|d| decode(d, &Key::derive("secret")).is_ok_and(|p| p.incarnation != ours))
        .count() as u64;
    eventually("the peer to refuse every replay", || {
        peer_backend.drops().replayed >= peer_before.replayed + replays.len() as u64
    })
    .await;
    eventually("the real node to refuse the impostor's replays", || {
        real_backend.drops().replayed >= real_before.replayed + from_impostor
    })
    .await;
    assert_eq!(peer_backend.drops().name_clash, peer_before.name_clash);
    assert_eq!(real_backend.drops().name_clash, real_before.name_clash);
    assert!(
        real.cluster.health().is_ready(),
        "{:?}",
        real.cluster.health()
    );
    assert_eq!(seen(&peer, REAL), Some(ours));
    real.leave().await;
    peer.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_that_leaves_is_reported_and_the_real_node_stays() {
    impostor_runs_then(Net::new(51, 47151), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_that_stops_is_reported_and_the_real_node_stays() {
    impostor_runs_then(Net::new(52, 47152), false).await;
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A node sending its own packets from the test (so its clock can step back).
struct Handmade {
    incarnation: u64,
    seq: u64,
    /// Subtracted from the wall clock.
    behind_ms: u64,
}

impl Handmade {
    fn packet(&mut self, kind: Kind) -> Vec<u8> {
        self.seq += 1;
        let p = Packet {
            kind,
            cluster: "test".into(),
            node: name("c@127.0.0.53"),
            incarnation: self.incarnation,
            seq: self.seq,
            timestamp_ms: unix_ms() - self.behind_ms,
            member_ttl: MEMBER_TTL,
            meta: None,
        };
        encode(&p, &Key::derive("secret")).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_smaller_incarnation_is_seen_at_once() {
    let net = Net::new(53, 47153);
    let g = Group { net };
    let tap = Tap::open(net);
    let (peer, peer_backend) = g.start(PEER);
    assert!(peer.cluster.ready(WAIT).await);
    let mut first = Handmade {
        incarnation: unix_ms() << 16,
        seq: 0,
        behind_ms: 0,
    };
    let mut old = Vec::new();
    for kind in [Kind::Announce, Kind::Heartbeat, Kind::Heartbeat] {
        let d = first.packet(kind);
        tap.send(&d).await;
        old.push(d);
    }
    eventually("the first life", || {
        seen(&peer, "c@127.0.0.53") == Some(first.incarnation)
    })
    .await;

    // The clock steps back two minutes and the node restarts at once (no leave): its new
    // incarnation is smaller than the old one.
    let step = 120_000;
    let mut second = Handmade {
        incarnation: (unix_ms() - step) << 16,
        seq: 0,
        behind_ms: step,
    };
    assert!(second.incarnation < first.incarnation);
    let restarted = Instant::now();
    tap.send(&second.packet(Kind::Announce)).await;
    eventually("the second life", || {
        seen(&peer, "c@127.0.0.53") == Some(second.incarnation)
    })
    .await;
    eprintln!(
        "a restart with a smaller incarnation seen {:?} after its announce",
        restarted.elapsed()
    );
    assert!(restarted.elapsed() < MEMBER_TTL);

    // It heartbeats on and stays; the first life's packets, replayed, are refused.
    let before = peer_backend.drops().replayed;
    for d in &old {
        tap.send(d).await;
    }
    eventually("the old life's packets refused", || {
        peer_backend.drops().replayed == before + old.len() as u64
    })
    .await;
    for _ in 0..8 {
        tap.send(&second.packet(Kind::Heartbeat)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen(&peer, "c@127.0.0.53"), Some(second.incarnation));
    }
    assert_eq!(peer_backend.drops().replayed, before + old.len() as u64);
    assert_eq!(peer_backend.drops().name_clash, 0);
    assert_eq!(peer_backend.drops().stale, 0);
    peer.leave().await;
}
