//! What the receive path has heard: the members within their TTL (for `snapshot`), and the
//! recent changes under a local revision counter (for `watch`, so a watch that restarts
//! after a snapshot loses nothing).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use autocluster_plugin::{Change, Incarnation, Member, NodeName, Revision, Snapshot};
use tokio::sync::watch;

/// How many changes a watch can fall behind before it must resync from a snapshot.
const HISTORY: usize = 4096;

/// Why the changes after a revision cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// Older than the history kept.
    Compacted,
    /// Newer than this backend's revision (a revision from another instance).
    Ahead,
}

pub(crate) struct View {
    inner: Mutex<Inner>,
    notify: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    revision: u64,
    /// The changes at revisions `revision - history.len() + 1 ..= revision`.
    history: VecDeque<Change>,
    /// Each member and when it expires.
    members: HashMap<NodeName, (Member, Instant)>,
}

impl View {
    pub fn new() -> Self {
        View {
            inner: Mutex::new(Inner::default()),
            notify: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A member heard from (or this node registered): kept until `now + ttl`.
    pub fn put(&self, member: Member, now: Instant) {
        let expires = now + member.ttl.unwrap_or_default();
        let mut inner = self.lock();
        if !inner.members.contains_key(&member.node) {
            inner.members.retain(|_, (_, e)| *e > now);
        }
        inner
            .members
            .insert(member.node.clone(), (member.clone(), expires));
        self.push(&mut inner, Change::Put(member));
    }

    /// A member left: removed if it is still that incarnation; the delete is passed on anyway
    /// (the engine ignores one for another incarnation).
    pub fn delete(&self, node: &NodeName, incarnation: Incarnation) {
        let mut inner = self.lock();
        if inner
            .members
            .get(node)
            .is_some_and(|(m, _)| m.incarnation == incarnation)
        {
            inner.members.remove(node);
        }
        let change = Change::Delete {
            node: node.clone(),
            incarnation: Some(incarnation),
        };
        self.push(&mut inner, change);
    }

    fn push(&self, inner: &mut Inner, change: Change) {
        inner.revision += 1;
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(change);
        self.notify.send_replace(inner.revision);
    }

    /// The members within their TTL, at the current revision.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut inner = self.lock();
        inner.members.retain(|_, (_, e)| *e > now);
        let mut members: Vec<Member> = inner.members.values().map(|(m, _)| m.clone()).collect();
        members.sort_by(|a, b| a.node.cmp(&b.node));
        Snapshot {
            members,
            revision: Revision(inner.revision),
        }
    }

    /// The changes after `after`, and the revision of the newest.
    pub fn since(&self, after: u64) -> Result<(u64, Vec<Change>), Gap> {
        let inner = self.lock();
        if after > inner.revision {
            return Err(Gap::Ahead);
        }
        let behind = usize::try_from(inner.revision - after).map_err(|_| Gap::Compacted)?;
        if behind > inner.history.len() {
            return Err(Gap::Compacted);
        }
        let skip = inner.history.len() - behind;
        Ok((
            inner.revision,
            inner.history.iter().skip(skip).cloned().collect(),
        ))
    }

    /// Wakes when the revision moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn member(name: &str, ttl_ms: u64) -> Member {
        let mut m = Member::bare(NodeName::parse(name).unwrap());
        m.incarnation = Incarnation(7);
        m.ttl = Some(Duration::from_millis(ttl_ms));
        m
    }

    #[test]
    fn snapshot_keeps_members_within_their_ttl() {
        let v = View::new();
        let t0 = Instant::now();
        v.put(member("a@h", 1000), t0);
        v.put(member("b@h", 5000), t0);
        let s = v.snapshot(t0 + Duration::from_secs(2));
        assert_eq!(s.members.len(), 1);
        assert_eq!(s.members[0].node.as_str(), "b@h");
        assert_eq!(s.revision, Revision(2));
    }

    #[test]
    fn since_gives_what_followed_and_detects_gaps() {
        let v = View::new();
        let now = Instant::now();
        assert_eq!(v.since(0), Ok((0, vec![])));
        v.put(member("a@h", 1000), now);
        v.delete(&NodeName::parse("a@h").unwrap(), Incarnation(7));
        let (rev, changes) = v.since(1).unwrap();
        assert_eq!(rev, 2);
        assert!(matches!(changes.as_slice(), [Change::Delete { .. }]));
        assert_eq!(v.since(3), Err(Gap::Ahead));
        for _ in 0..HISTORY {
            v.put(member("a@h", 1000), now);
        }
        assert_eq!(v.since(1), Err(Gap::Compacted));
        assert_eq!(v.since(2).unwrap().1.len(), HISTORY);
        assert!(v.snapshot(now).members.len() == 1);
    }
}
