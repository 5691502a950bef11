//! Replay protection: per node, the newest incarnation heard and its last sequence number.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use autocluster_plugin::NodeName;

use crate::packet::{Kind, Packet};

/// A packet whose timestamp is further than this from our clock is refused as stale, so a
/// recording cannot be replayed to a node that never heard the original.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// A node not heard from for this long is forgotten. Longer than twice the skew window, so
/// any packet that could still pass the timestamp check finds its node remembered.
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// At most this many nodes remembered; a packet from a further node is refused.
const MAX_PEERS: usize = 65_536;

/// What to do with an authentic packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: act on it.
    Accept,
    /// A sequence number already seen, or an incarnation older than the newest: drop, count.
    Replayed,
    /// The second leave of an incarnation: drop quietly.
    AlreadyLeft,
    /// The table is full of live nodes: drop, count.
    Full,
}

struct Peer {
    incarnation: u64,
    seq: u64,
    left: bool,
    heard: Instant,
}

#[derive(Default)]
pub(crate) struct Peers {
    map: HashMap<NodeName, Peer>,
}

impl Peers {
    pub fn check(&mut self, p: &Packet, now: Instant) -> Verdict {
        let leave = p.kind == Kind::Leave;
        if let Some(peer) = self.map.get_mut(&p.node) {
            if p.incarnation < peer.incarnation
                || (p.incarnation == peer.incarnation && p.seq <= peer.seq)
            {
                return Verdict::Replayed;
            }
            let again = leave && peer.left && p.incarnation == peer.incarnation;
            *peer = Peer {
                incarnation: p.incarnation,
                seq: p.seq,
                left: leave,
                heard: now,
            };
            return if again {
                Verdict::AlreadyLeft
            } else {
                Verdict::Accept
            };
        }
        if self.map.len() >= MAX_PEERS {
            self.map
                .retain(|_, peer| now.duration_since(peer.heard) < FORGET_AFTER);
            if self.map.len() >= MAX_PEERS {
                return Verdict::Full;
            }
        }
        self.map.insert(
            p.node.clone(),
            Peer {
                incarnation: p.incarnation,
                seq: p.seq,
                left: leave,
                heard: now,
            },
        );
        Verdict::Accept
    }

    /// Forgets nodes not heard from for a long time.
    pub fn prune(&mut self, now: Instant) {
        self.map
            .retain(|_, peer| now.duration_since(peer.heard) < FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: Kind, incarnation: u64, seq: u64) -> Packet {
        Packet {
            kind,
            cluster: "c".into(),
            node: NodeName::parse("a@h").unwrap(),
            incarnation,
            seq,
            timestamp_ms: 0,
            member_ttl: Duration::from_secs(5),
            meta: None,
        }
    }

    #[test]
    fn sequence_and_incarnation_only_move_forward() {
        let mut p = Peers::default();
        let now = Instant::now();
        assert_eq!(
            p.check(&packet(Kind::Announce, 10, 1), now),
            Verdict::Accept
        );
        assert_eq!(
            p.check(&packet(Kind::Heartbeat, 10, 1), now),
            Verdict::Replayed
        );
        assert_eq!(
            p.check(&packet(Kind::Heartbeat, 10, 3), now),
            Verdict::Accept
        );
        assert_eq!(
            p.check(&packet(Kind::Heartbeat, 10, 2), now),
            Verdict::Replayed
        );
        assert_eq!(
            p.check(&packet(Kind::Heartbeat, 9, 100), now),
            Verdict::Replayed
        );
        assert_eq!(p.check(&packet(Kind::Leave, 10, 4), now), Verdict::Accept);
        assert_eq!(
            p.check(&packet(Kind::Leave, 10, 5), now),
            Verdict::AlreadyLeft
        );
        // A restart: a new incarnation starts its own sequence.
        assert_eq!(
            p.check(&packet(Kind::Announce, 11, 1), now),
            Verdict::Accept
        );
        assert_eq!(
            p.check(&packet(Kind::Heartbeat, 10, 6), now),
            Verdict::Replayed
        );
    }
}
