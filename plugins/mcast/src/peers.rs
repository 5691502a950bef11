//! Replay protection and name clashes: per node, the last few incarnations heard, each with
//! its last sequence number, and which one is passed on to the engine.
//!
//! - A packet is fresh when its incarnation is known and its sequence number is above the
//!   last one accepted from it, or when its incarnation is new and it is timestamped after
//!   every incarnation this table had to forget for room. With the timestamp window
//!   ([`MAX_CLOCK_SKEW`]), a recorded packet sent again is refused.
//! - The current incarnation is the one passed on. A new incarnation takes over at once (a
//!   restart, whatever its number: a clock stepped back gives a smaller one); so does any
//!   incarnation once the current one left or was not heard within its TTL.
//! - An incarnation that was superseded and keeps speaking ([`PROOF`] fresh packets) proves
//!   that two live processes use one name: a clash. While it lasts the lowest incarnation
//!   (the one started first) is passed on, on every node alike, and the other's packets are
//!   dropped, counted and logged. It ends when either leaves or goes quiet.

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
/// At most this many incarnations remembered per node (the real one, an impostor, restarts).
const MAX_LIVES: usize = 4;
/// Fresh packets a superseded incarnation sends before it counts as a clash, not as a late
/// datagram of a process that restarted.
const PROOF: u32 = 2;

/// What to do with an authentic packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: act on it.
    Accept,
    /// Fresh, from an incarnation that is not passed on (a superseded one not yet proven to
    /// clash, or the leave of one): drop quietly.
    Aside,
    /// Fresh, and two live incarnations use the node's name. `pass`: this packet is the
    /// winner's (act on it); else drop it. `other`: the other incarnation.
    Clash { other: u64, pass: bool },
    /// A sequence number already seen, or an incarnation forgotten for room: drop, count.
    Replayed,
    /// The second leave of an incarnation: drop quietly.
    AlreadyLeft,
    /// The table is full of live nodes: drop, count.
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Life {
    incarnation: u64,
    seq: u64,
    /// The sender's timestamp of its last packet.
    last_ms: u64,
    heard: Instant,
    ttl: Duration,
    left: bool,
    /// Fresh packets heard from it since another incarnation became current.
    aside: u32,
}

impl Life {
    fn live(&self, now: Instant) -> bool {
        !self.left && now.duration_since(self.heard) < self.ttl
    }
}

struct Peer {
    lives: Vec<Life>,
    current: Option<u64>,
    /// A new incarnation must be timestamped after this: the last packet of every
    /// incarnation forgotten for room.
    floor_ms: u64,
    heard: Instant,
}

impl Peer {
    fn life(&mut self, incarnation: u64) -> Option<&mut Life> {
        self.lives.iter_mut().find(|l| l.incarnation == incarnation)
    }

    /// Makes room for one more life: forgets the least recently heard one that is not
    /// current, raising the floor to its last packet.
    fn make_room(&mut self) {
        if self.lives.len() < MAX_LIVES {
            return;
        }
        let current = self.current;
        let oldest = (0..self.lives.len())
            .filter(|&i| Some(self.lives[i].incarnation) != current)
            .min_by_key(|&i| self.lives[i].heard);
        if let Some(i) = oldest {
            let gone = self.lives.swap_remove(i);
            self.floor_ms = self.floor_ms.max(gone.last_ms);
        }
    }

    fn make_current(&mut self, incarnation: u64) {
        self.current = Some(incarnation);
        for l in &mut self.lives {
            l.aside = 0;
        }
    }

    /// Which incarnation a fresh packet of `incarnation` (`new`: its first) leaves current,
    /// and what becomes of the packet.
    fn elect(&mut self, incarnation: u64, new: bool, now: Instant) -> Verdict {
        let current = self
            .current
            .and_then(|c| self.lives.iter().find(|l| l.incarnation == c).copied());
        let Some(cur) = current.filter(|c| c.live(now)) else {
            self.make_current(incarnation);
            return Verdict::Accept;
        };
        if cur.incarnation == incarnation {
            return Verdict::Accept;
        }
        if new {
            // A restart (the old life crashed, or its leave was lost), until proven otherwise.
            self.make_current(incarnation);
            return Verdict::Accept;
        }
        let Some(me) = self.life(incarnation) else {
            return Verdict::Aside;
        };
        me.aside += 1;
        if me.aside < PROOF {
            return Verdict::Aside;
        }
        let other = cur.incarnation;
        if incarnation < other {
            self.current = Some(incarnation);
            Verdict::Clash { other, pass: true }
        } else {
            Verdict::Clash { other, pass: false }
        }
    }
}

#[derive(Default)]
pub(crate) struct Peers {
    map: HashMap<NodeName, Peer>,
}

impl Peers {
    pub fn check(&mut self, p: &Packet, now: Instant) -> Verdict {
        if !self.map.contains_key(&p.node) && self.map.len() >= MAX_PEERS {
            self.prune(now);
            if self.map.len() >= MAX_PEERS {
                return Verdict::Full;
            }
        }
        let peer = self.map.entry(p.node.clone()).or_insert_with(|| Peer {
            lives: Vec::new(),
            current: None,
            floor_ms: 0,
            heard: now,
        });
        let floor_ms = peer.floor_ms;
        let new = match peer.life(p.incarnation) {
            Some(l) if p.seq <= l.seq => return Verdict::Replayed,
            Some(_) => false,
            None if p.timestamp_ms <= floor_ms => return Verdict::Replayed,
            None => {
                peer.make_room();
                peer.lives.push(Life {
                    incarnation: p.incarnation,
                    seq: 0,
                    last_ms: 0,
                    heard: now,
                    ttl: p.member_ttl,
                    left: false,
                    aside: 0,
                });
                true
            }
        };
        peer.heard = now;
        let Some(life) = peer.life(p.incarnation) else {
            return Verdict::Replayed;
        };
        let was_left = life.left;
        *life = Life {
            seq: p.seq,
            last_ms: p.timestamp_ms,
            heard: now,
            ttl: p.member_ttl,
            left: p.kind == Kind::Leave,
            ..*life
        };
        if p.kind != Kind::Leave {
            return peer.elect(p.incarnation, new, now);
        }
        if was_left {
            Verdict::AlreadyLeft
        } else if peer.current == Some(p.incarnation) {
            peer.current = None;
            Verdict::Accept
        } else {
            Verdict::Aside
        }
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

    const TTL: Duration = Duration::from_secs(5);

    fn packet(kind: Kind, incarnation: u64, seq: u64) -> Packet {
        Packet {
            kind,
            cluster: "c".into(),
            node: NodeName::parse("a@h").unwrap(),
            incarnation,
            seq,
            timestamp_ms: 1_000 + seq,
            member_ttl: TTL,
            meta: None,
        }
    }

    fn check(p: &mut Peers, kind: Kind, inc: u64, seq: u64, at: Instant) -> Verdict {
        p.check(&packet(kind, inc, seq), at)
    }

    #[test]
    fn sequence_numbers_only_move_forward_per_incarnation() {
        use Kind::*;
        let mut p = Peers::default();
        let now = Instant::now();
        assert_eq!(check(&mut p, Announce, 10, 1, now), Verdict::Accept);
        assert_eq!(check(&mut p, Heartbeat, 10, 1, now), Verdict::Replayed);
        assert_eq!(check(&mut p, Heartbeat, 10, 3, now), Verdict::Accept);
        assert_eq!(check(&mut p, Heartbeat, 10, 2, now), Verdict::Replayed);
        assert_eq!(check(&mut p, Leave, 10, 4, now), Verdict::Accept);
        assert_eq!(check(&mut p, Leave, 10, 5, now), Verdict::AlreadyLeft);
        // A restart: a new incarnation starts its own sequence.
        assert_eq!(check(&mut p, Announce, 11, 1, now), Verdict::Accept);
        // The old life's packets, replayed, are refused.
        for seq in 1..=5 {
            assert_eq!(check(&mut p, Heartbeat, 10, seq, now), Verdict::Replayed);
        }
    }

    #[test]
    fn a_smaller_incarnation_is_a_restart_too() {
        use Kind::*;
        let mut p = Peers::default();
        let now = Instant::now();
        assert_eq!(check(&mut p, Announce, 10, 1, now), Verdict::Accept);
        // the clock stepped back: the next life has a smaller incarnation
        assert_eq!(check(&mut p, Announce, 7, 1, now), Verdict::Accept);
        assert_eq!(check(&mut p, Heartbeat, 7, 2, now), Verdict::Accept);
        // and after a leave, too
        assert_eq!(check(&mut p, Leave, 7, 3, now), Verdict::Accept);
        assert_eq!(check(&mut p, Announce, 5, 1, now), Verdict::Accept);
    }

    #[test]
    fn two_live_incarnations_clash_and_the_first_started_wins() {
        use Kind::*;
        let mut p = Peers::default();
        let t = Instant::now();
        assert_eq!(check(&mut p, Announce, 10, 1, t), Verdict::Accept);
        // an impostor starts: taken for a restart
        assert_eq!(check(&mut p, Announce, 20, 1, t), Verdict::Accept);
        // the real node speaks on: one late datagram is not enough, two prove the clash
        assert_eq!(check(&mut p, Heartbeat, 10, 2, t), Verdict::Aside);
        let clash = Verdict::Clash {
            other: 20,
            pass: true,
        };
        assert_eq!(check(&mut p, Heartbeat, 10, 3, t), clash);
        let lost = Verdict::Clash {
            other: 10,
            pass: false,
        };
        assert_eq!(check(&mut p, Heartbeat, 20, 2, t), Verdict::Aside);
        assert_eq!(check(&mut p, Heartbeat, 20, 3, t), lost);
        assert_eq!(check(&mut p, Heartbeat, 10, 4, t), Verdict::Accept);
        // the impostor leaves: nothing changes for the real node
        assert_eq!(check(&mut p, Leave, 20, 4, t), Verdict::Aside);
        assert_eq!(check(&mut p, Heartbeat, 10, 5, t), Verdict::Accept);
    }

    /// Incarnation 20, then 10 (taken for a restart), then 20 again, twice: a clash that 10,
    /// started first, wins.
    fn contested(t: Instant) -> Peers {
        use Kind::*;
        let mut p = Peers::default();
        check(&mut p, Announce, 20, 1, t);
        check(&mut p, Announce, 10, 1, t);
        check(&mut p, Heartbeat, 20, 2, t);
        let lost = check(&mut p, Heartbeat, 20, 3, t);
        assert!(
            matches!(lost, Verdict::Clash { pass: false, .. }),
            "{lost:?}"
        );
        p
    }

    #[test]
    fn the_loser_takes_over_once_the_winner_leaves_or_goes_quiet() {
        use Kind::*;
        let t = Instant::now();
        // 10 goes quiet: after its TTL, 20 is passed on
        let mut p = contested(t);
        let later = t + TTL + Duration::from_millis(1);
        assert_eq!(check(&mut p, Heartbeat, 20, 4, later), Verdict::Accept);
        // or leaves
        let mut p = contested(t);
        assert_eq!(check(&mut p, Leave, 10, 2, t), Verdict::Accept);
        assert_eq!(check(&mut p, Heartbeat, 20, 4, t), Verdict::Accept);
    }

    #[test]
    fn forgotten_incarnations_cannot_come_back() {
        use Kind::*;
        let mut p = Peers::default();
        let t = Instant::now();
        for inc in 1..=(MAX_LIVES as u64 + 1) {
            assert_eq!(check(&mut p, Announce, inc, inc, t), Verdict::Accept);
        }
        // incarnation 1 was forgotten for room: its recorded packet is no newer than the floor
        assert_eq!(check(&mut p, Announce, 1, 1, t), Verdict::Replayed);
        // a new life, timestamped later, is welcome
        assert_eq!(check(&mut p, Announce, 99, 100, t), Verdict::Accept);
    }
}
