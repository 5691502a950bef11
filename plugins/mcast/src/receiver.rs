//! The receive loop: authenticate, drop what is not fresh, update the view, answer announces.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autocluster_plugin::log::{Escaped, RateLimit};
use autocluster_plugin::{Change, Incarnation, Member, Revision};
use tokio::net::UdpSocket;

use crate::core::{unix_ms, Core};
use crate::packet::{decode, Kind, Packet, MAX_DATAGRAM};
use crate::peers::{Peers, Verdict, MAX_CLOCK_SKEW};
use crate::stats::Reason;

/// Replies to announces leave at most this often; one reply answers every announce that
/// arrived since the last.
const REPLY_GAP: Duration = Duration::from_millis(100);
/// Warnings about one recurring problem are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

struct Receiver {
    core: Arc<Core>,
    peers: Peers,
    last_reply: Option<Instant>,
    reply_at: Option<Instant>,
    last_prune: Instant,
    warn_clash: RateLimit,
    warn_peer_clash: RateLimit,
    warn_stale: RateLimit,
}

pub(crate) async fn run(core: Arc<Core>, sock: UdpSocket) {
    let mut r = Receiver {
        core,
        peers: Peers::default(),
        last_reply: None,
        reply_at: None,
        last_prune: Instant::now(),
        warn_clash: RateLimit::new(WARN_EVERY),
        warn_peer_clash: RateLimit::new(WARN_EVERY),
        warn_stale: RateLimit::new(WARN_EVERY),
    };
    // One byte more than the largest packet, to tell a datagram that was cut short.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let reply_at = r.reply_at;
        tokio::select! {
            got = sock.recv_from(&mut buf) => match got {
                Ok((n, from)) => {
                    let now = Instant::now();
                    if r.handle(&buf[..n], from, now) {
                        r.want_reply(now).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mcast: receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = sleep_until(reply_at), if reply_at.is_some() => {
                r.reply_at = None;
                r.reply(Instant::now()).await;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Receiver {
    /// Acts on one datagram; true when it was an announce to answer.
    fn handle(&mut self, data: &[u8], from: SocketAddr, now: Instant) -> bool {
        let core = &self.core;
        if now.duration_since(self.last_prune) >= PRUNE_EVERY {
            self.peers.prune(now);
            self.last_prune = now;
        }
        let p = match decode(data, &core.key) {
            Ok(p) => p,
            Err(e) => {
                core.stats.count(Reason::Decode(e));
                tracing::debug!(%from, error = %e, "mcast: dropped a datagram");
                return false;
            }
        };
        if p.cluster != core.cluster {
            core.stats.count(Reason::OtherCluster);
            let cluster = Escaped::new(&p.cluster);
            tracing::debug!(%from, %cluster, "mcast: dropped a packet of another cluster");
            return false;
        }
        if p.node == core.node && p.incarnation == core.incarnation {
            return false; // our own, looped back
        }
        let skew = unix_ms().abs_diff(p.timestamp_ms);
        if u128::from(skew) > MAX_CLOCK_SKEW.as_millis() {
            core.stats.count(Reason::Stale);
            if let Some(held_back) = self.warn_stale.allow_at(now) {
                tracing::warn!(
                    %from, node = %p.node, skew_ms = skew, held_back,
                    "mcast: dropped a packet timestamped too far from our clock (a replay, or clocks out of sync)"
                );
            }
            return false;
        }
        if p.node == core.node {
            self.own_name(&p, from, now);
            return false;
        }
        match self.peers.check(&p, now) {
            Verdict::Accept => {}
            Verdict::Aside | Verdict::AlreadyLeft => return false,
            Verdict::Clash { other, pass } => {
                if pass || self.warn_peer_clash.allow_at(now).is_some() {
                    tracing::error!(
                        %from, node = %p.node,
                        incarnations = format_args!("{:x} and {other:x}", p.incarnation),
                        "mcast: two live processes use the node name {}: passing on the one started first ({:x}); give each node its own node.name",
                        p.node, p.incarnation.min(other)
                    );
                }
                if !pass {
                    core.stats.count(Reason::NameClash);
                    return false;
                }
            }
            Verdict::Replayed => {
                core.stats.count(Reason::Replayed);
                tracing::debug!(%from, node = %p.node, seq = p.seq, "mcast: dropped a replayed packet");
                return false;
            }
            Verdict::Full => {
                core.stats.count(Reason::TableFull);
                return false;
            }
        }
        let incarnation = Incarnation(p.incarnation);
        let announce = p.kind == Kind::Announce;
        core.observe(match p.kind {
            Kind::Leave => Change::Delete {
                node: p.node,
                incarnation: Some(incarnation),
            },
            // The incarnation (a start time) is the creation revision: every node agrees on
            // the oldest.
            Kind::Announce | Kind::Heartbeat | Kind::Reply => Change::Put(
                Member::new(p.node, incarnation)
                    .with_meta(p.meta)
                    .with_ttl(p.member_ttl)
                    .with_created(Revision(p.incarnation)),
            ),
        });
        announce
    }

    /// A fresh packet of another process under this node's own name: a clash while it is
    /// live (`keep_alive` reports it), counted, logged as an error (at most once a minute per
    /// clash); over when it leaves or goes quiet.
    fn own_name(&mut self, p: &Packet, from: SocketAddr, now: Instant) {
        let core = &self.core;
        // A packet of an earlier life of this node (late, or replayed) is no clash.
        let verdict = if p.timestamp_ms < core.started_ms() {
            Verdict::Replayed
        } else {
            self.peers.check(p, now)
        };
        match verdict {
            Verdict::Replayed => return core.stats.count(Reason::Replayed),
            Verdict::Full => return core.stats.count(Reason::TableFull),
            _ => core.stats.count(Reason::NameClash),
        }
        let other = format_args!("{:x}", p.incarnation);
        if p.kind == Kind::Leave {
            if core.clash(now) == Some(p.incarnation) {
                tracing::warn!(%from, node = %p.node, other = %other, "mcast: the other process using this node's name left");
            }
            core.end_clash(p.incarnation);
            return;
        }
        let new = core.set_clash(p.incarnation, now + p.member_ttl);
        if self.warn_clash.allow_at(now).is_some() || new {
            tracing::error!(
                %from, node = %p.node, other = %other, ours = format_args!("{:x}", core.incarnation),
                "mcast: another live process uses this node's name; this node is not ready until it leaves or stops: give each node its own node.name"
            );
        }
    }

    /// Answers an announce now, or schedules one answer at the end of the rate limit.
    async fn want_reply(&mut self, now: Instant) {
        match self.last_reply.map(|t| t + REPLY_GAP) {
            Some(next) if next > now => {
                self.reply_at.get_or_insert(next);
            }
            _ => self.reply(now).await,
        }
    }

    async fn reply(&mut self, now: Instant) {
        let Some(meta) = self.core.registered() else {
            return;
        };
        self.last_reply = Some(now);
        if let Err(e) = self.core.send(Kind::Reply, Some(meta), "reply").await {
            tracing::warn!(error = %e, "mcast: cannot answer an announce");
        }
    }
}
