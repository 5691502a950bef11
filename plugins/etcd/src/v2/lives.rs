//! Which life of a node a v2 key stands for: its incarnation.
//!
//! An autocluster key keeps its `createdIndex` while it lives (keep-alives refresh its TTL,
//! new metadata is an update in place), so that index is its incarnation. EMQX 4.x (ekka 0.8)
//! keeps its key alive another way: every half TTL it writes the key again exactly as it
//! registered it (`PUT ttl=<node_ttl>`, no value), and etcd gives every such write a new
//! `createdIndex`. Nothing in such a key tells one life from the next, so the rule is:
//!
//! - a bare key (empty value) written over a live bare key of the same node continues that
//!   node's life: a refresh, no event;
//! - a life begins when the key is written where none lived (it expired or was deleted
//!   first), or over a key with a value; autocluster's own keys always have one, so for them
//!   every new `createdIndex` is a new life, as before;
//! - the incarnation of a life is the `createdIndex` of its first write.
//!
//! A restart of an EMQX node is therefore seen when its key expired or was deleted before it
//! came back; a restart quicker than its TTL writes exactly what a refresh writes and is
//! not. A snapshot cannot tell what happened between two views either: a bare key that was
//! bare in the last view continues its life there too.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use autocluster_plugin::NodeName;

use super::wire::Node;

/// One write of a node's key as etcd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Write {
    /// Its `createdIndex`.
    pub(super) created: u64,
    /// Whether its value is empty (a key EMQX 4.x wrote).
    pub(super) bare: bool,
}

impl Write {
    /// The write a node in an answer stands for.
    pub(super) fn of(n: &Node) -> Write {
        Write {
            created: n.created_index,
            bare: n.value.as_deref().unwrap_or("").is_empty(),
        }
    }
}

/// The life each node listed in the view is in.
#[derive(Debug, Default)]
pub(super) struct Lives(Mutex<HashMap<NodeName, Life>>);

#[derive(Debug, Clone, Copy)]
struct Life {
    /// The `createdIndex` of the life's first write.
    incarnation: u64,
    /// The latest write seen.
    latest: Write,
}

impl Lives {
    /// The incarnation of a key listed by a snapshot.
    pub(super) fn listed(&self, node: &NodeName, w: Write) -> u64 {
        self.record(node, w, |life| life.latest.bare && w.bare)
    }

    /// The incarnation of a key the watch saw written over `prev`, the key that lived there
    /// just before (etcd's `prevNode`), if any.
    pub(super) fn written(&self, node: &NodeName, w: Write, prev: Option<Write>) -> u64 {
        self.record(node, w, |life| {
            life.latest.bare && w.bare && prev.is_some_and(|p| p.bare)
        })
    }

    /// Forgets the life of a node whose key is gone (`prev`: the `createdIndex` of the key
    /// removed, when etcd says); returns the incarnation that ended.
    pub(super) fn ended(&self, node: &NodeName, prev: Option<u64>) -> Option<u64> {
        let life = self.map().remove(node);
        match (life, prev) {
            (Some(l), Some(p)) if l.latest.created != p => Some(p),
            (Some(l), _) => Some(l.incarnation),
            (None, p) => p,
        }
    }

    /// Forgets the nodes a snapshot did not list.
    pub(super) fn keep_only(&self, listed: &HashSet<NodeName>) {
        self.map().retain(|n, _| listed.contains(n));
    }

    fn record(&self, node: &NodeName, w: Write, continues: impl FnOnce(&Life) -> bool) -> u64 {
        let mut map = self.map();
        let incarnation = match map.get(node) {
            // The same write (an update in place keeps the createdIndex).
            Some(l) if l.latest.created == w.created => l.incarnation,
            Some(l) if continues(l) => l.incarnation,
            _ => w.created,
        };
        map.insert(
            node.clone(),
            Life {
                incarnation,
                latest: w,
            },
        );
        incarnation
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, Life>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> NodeName {
        NodeName::parse("emqx1@10.0.0.1").unwrap()
    }
    fn bare(created: u64) -> Write {
        Write {
            created,
            bare: true,
        }
    }
    fn valued(created: u64) -> Write {
        Write {
            created,
            bare: false,
        }
    }

    #[test]
    fn emqx_rewrites_of_a_live_key_are_one_life() {
        let lives = Lives::default();
        assert_eq!(lives.written(&n(), bare(4), None), 4);
        for i in 5..25 {
            assert_eq!(lives.written(&n(), bare(i), Some(bare(i - 1))), 4);
        }
        // a resync in between: the key still bare, still the same life
        assert_eq!(lives.listed(&n(), bare(30)), 4);
        assert_eq!(lives.ended(&n(), Some(30)), Some(4));
        // written again where none lived: a new life
        assert_eq!(lives.written(&n(), bare(40), None), 40);
    }

    #[test]
    fn keys_with_values_are_a_new_life_per_created_index() {
        let lives = Lives::default();
        assert_eq!(lives.listed(&n(), valued(4)), 4);
        // an update in place
        assert_eq!(lives.written(&n(), valued(4), Some(valued(4))), 4);
        // overwritten: a new life, whatever wrote it
        assert_eq!(lives.written(&n(), valued(7), Some(valued(4))), 7);
        assert_eq!(lives.written(&n(), bare(8), Some(valued(7))), 8);
        assert_eq!(lives.written(&n(), valued(9), Some(bare(8))), 9);
        assert_eq!(lives.listed(&n(), bare(10)), 10);
    }

    #[test]
    fn a_snapshot_forgets_the_unlisted() {
        let lives = Lives::default();
        lives.listed(&n(), bare(4));
        lives.keep_only(&HashSet::new());
        assert_eq!(lives.listed(&n(), bare(5)), 5);
        assert_eq!(lives.ended(&n(), None), Some(5));
        assert_eq!(lives.ended(&n(), Some(6)), Some(6));
    }
}
