//! Counts of dropped datagrams, by reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::packet::DecodeError;

/// How many datagrams were dropped, by reason; their sum is `invalid_entries()`. Our own
/// packets, looped back, are ignored and not counted; those of another process using our
/// node name are (`name_clash`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Longer than the largest packet.
    pub too_large: u64,
    /// Too short, not our magic, another version, or authentic but not well formed.
    pub malformed: u64,
    /// The HMAC tag did not match: another cookie, or altered on the way.
    pub bad_mac: u64,
    /// Authentic, but for another `cluster.name`.
    pub other_cluster: u64,
    /// Already seen (sequence number not above the last), from an incarnation forgotten for
    /// room, or under our own name from before this process started.
    pub replayed: u64,
    /// Timestamped too far from our clock.
    pub stale: u64,
    /// From a new node while the replay table was full.
    pub table_full: u64,
    /// From a process that uses a node name another live process uses: heard under this
    /// node's own name, or, at a peer, the packets of the one not passed on.
    pub name_clash: u64,
}

impl DropCounts {
    /// Every dropped datagram.
    pub fn total(&self) -> u64 {
        self.too_large
            + self.malformed
            + self.bad_mac
            + self.other_cluster
            + self.replayed
            + self.stale
            + self.table_full
            + self.name_clash
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Decode(DecodeError),
    OtherCluster,
    Replayed,
    Stale,
    TableFull,
    NameClash,
}

#[derive(Default)]
pub(crate) struct Stats {
    too_large: AtomicU64,
    malformed: AtomicU64,
    bad_mac: AtomicU64,
    other_cluster: AtomicU64,
    replayed: AtomicU64,
    stale: AtomicU64,
    table_full: AtomicU64,
    name_clash: AtomicU64,
}

impl Stats {
    pub fn count(&self, why: Reason) {
        let c = match why {
            Reason::Decode(DecodeError::TooLarge(_)) => &self.too_large,
            Reason::Decode(DecodeError::BadMac) => &self.bad_mac,
            Reason::Decode(_) => &self.malformed,
            Reason::OtherCluster => &self.other_cluster,
            Reason::Replayed => &self.replayed,
            Reason::Stale => &self.stale,
            Reason::TableFull => &self.table_full,
            Reason::NameClash => &self.name_clash,
        };
        c.fetch_add(1, Relaxed);
    }

    pub fn counts(&self) -> DropCounts {
        DropCounts {
            too_large: self.too_large.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            bad_mac: self.bad_mac.load(Relaxed),
            other_cluster: self.other_cluster.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            stale: self.stale.load(Relaxed),
            table_full: self.table_full.load(Relaxed),
            name_clash: self.name_clash.load(Relaxed),
        }
    }
}
