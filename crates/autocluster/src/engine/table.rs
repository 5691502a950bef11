//! The one member table: applies snapshots and changes, and says what changed as events.
//!
//! Work per change is O(log n): the view is a persistent map, so publishing it after every
//! change does not copy it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autocluster_plugin::{Change, Member, NodeName, Revision, Snapshot};
use tokio::time::Instant;

use super::deadlines::Deadlines;
use crate::view::{Event, EventKind, LeftReason, MemberEntry, Status, View};

pub(crate) struct Table {
    view: View,
    /// Soft-state members (those with a TTL): when each expires.
    expiry: Deadlines,
    /// Members that vanished from a full snapshot: when their grace period ends.
    vanishing: Deadlines,
    /// Whether new members start `Stopped` until a probe proves them.
    candidates_only: bool,
}

impl Table {
    pub fn new(candidates_only: bool) -> Self {
        Table {
            view: View {
                stale: true,
                ..View::default()
            },
            expiry: Deadlines::default(),
            vanishing: Deadlines::default(),
            candidates_only,
        }
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn set_stale(&mut self, stale: bool) {
        self.view.stale = stale;
    }

    /// The view is synced without a snapshot: an observing backend is listening.
    pub fn mark_synced(&mut self) {
        self.view.synced = true;
    }

    pub fn revision(&self) -> Revision {
        self.view.revision
    }

    /// The earliest expiry or end of a grace period.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.expiry.next(), self.vanishing.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies one pushed change.
    pub fn apply(
        &mut self,
        change: Change,
        revision: Revision,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        if revision > self.view.revision {
            self.view.revision = revision;
        }
        match change {
            Change::Put(member) => self.put(member, revision, now, out),
            Change::Delete { node, incarnation } => {
                let matches = self
                    .view
                    .members
                    .get(&node)
                    .is_some_and(|e| incarnation.is_none_or(|i| i == e.member.incarnation));
                if matches {
                    self.remove(&node, LeftReason::Deregistered, revision, out);
                }
            }
        }
    }

    /// Replaces the table's content by a full snapshot. Members missing from it are kept for
    /// `grace` (marked vanishing) when one is given, else they leave at once.
    pub fn apply_snapshot(
        &mut self,
        snapshot: Snapshot,
        grace: Option<Duration>,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let revision = snapshot.revision;
        let mut listed = imbl::OrdSet::new();
        // With a grace period, the snapshot follows a gap whose history is unknown: a member
        // that is listed with a new incarnation registered again during it (after an etcd
        // wipe, every node does), which is an update, not a leave.
        let gap = grace.is_some_and(|g| !g.is_zero());
        for member in snapshot.members {
            listed.insert(member.node.clone());
            self.put_inner(member, revision, now, gap, out);
        }
        let missing: Vec<NodeName> = self
            .view
            .members
            .keys()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        for node in missing {
            match grace.filter(|g| !g.is_zero()) {
                Some(g) => {
                    if !self.vanishing.contains(&node) {
                        self.vanishing.set(&node, now + g);
                        if let Some(e) = self.view.members.get_mut(&node) {
                            Arc::make_mut(e).vanishing = true;
                        }
                    }
                }
                None => self.remove(&node, LeftReason::Vanished, revision, out),
            }
        }
        self.view.revision = revision;
        self.view.synced = true;
    }

    /// Removes the members whose TTL or grace period is over.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Event>) {
        let revision = self.view.revision;
        for node in self.expiry.pop_due(now) {
            self.remove(&node, LeftReason::Expired, revision, out);
        }
        for node in self.vanishing.pop_due(now) {
            self.remove(&node, LeftReason::Vanished, revision, out);
        }
    }

    /// Records a probe's verdict on a candidate.
    pub fn set_status(&mut self, node: &NodeName, status: Status, out: &mut Vec<Event>) {
        let revision = self.view.revision;
        let Some(entry) = self.view.members.get_mut(node) else {
            return;
        };
        if entry.status == status {
            return;
        }
        let entry = Arc::make_mut(entry);
        entry.status = status;
        let member = entry.member.clone();
        match status {
            Status::Running => out.push(event(EventKind::Joined, member, None, None, revision)),
            Status::Stopped => out.push(event(
                EventKind::Left,
                member,
                None,
                Some(LeftReason::Stopped),
                revision,
            )),
        }
    }

    fn put(&mut self, member: Member, revision: Revision, now: Instant, out: &mut Vec<Event>) {
        self.put_inner(member, revision, now, false, out)
    }

    fn put_inner(
        &mut self,
        member: Member,
        revision: Revision,
        now: Instant,
        after_gap: bool,
        out: &mut Vec<Event>,
    ) {
        let node = member.node.clone();
        match member.ttl {
            Some(ttl) => self.expiry.set(&node, now + ttl),
            None => {
                self.expiry.remove(&node);
            }
        }
        let was_vanishing = self.vanishing.remove(&node) || after_gap;
        let Some(current) = self.view.members.get(&node) else {
            let status = if self.candidates_only {
                Status::Stopped
            } else {
                Status::Running
            };
            if status == Status::Running {
                out.push(event(
                    EventKind::Joined,
                    member.clone(),
                    None,
                    None,
                    revision,
                ));
            }
            self.view.members.insert(
                node,
                Arc::new(MemberEntry {
                    member,
                    status,
                    since: SystemTime::now(),
                    vanishing: false,
                }),
            );
            return;
        };
        // The entry is shared with the views already published: replace it rather than
        // change it in place (which would copy it first).
        let status = current.status;
        let running = status == Status::Running;
        let new_life = current.member.incarnation != member.incarnation;
        // A new life of the node that we did not see leave: the old one left.
        let restarted = new_life && !was_vanishing;
        // Or re-registered within the grace period (an etcd wipe), or new metadata; else a
        // refresh: keep the newest TTL and creation revision, no event.
        let changed = new_life || current.member.meta != member.meta;
        let since = if restarted {
            SystemTime::now()
        } else {
            current.since
        };
        if running && changed {
            let previous = current.member.clone();
            if restarted {
                out.push(event(
                    EventKind::Left,
                    previous,
                    None,
                    Some(LeftReason::Restarted),
                    revision,
                ));
                out.push(event(
                    EventKind::Joined,
                    member.clone(),
                    None,
                    None,
                    revision,
                ));
            } else {
                out.push(event(
                    EventKind::Updated,
                    member.clone(),
                    Some(previous),
                    None,
                    revision,
                ));
            }
        }
        let entry = MemberEntry {
            member,
            status,
            since,
            vanishing: false,
        };
        // A refresh that changes nothing leaves the map alone: publishing then wakes nobody.
        if **current != entry {
            self.view.members.insert(node, Arc::new(entry));
        }
    }

    fn remove(
        &mut self,
        node: &NodeName,
        reason: LeftReason,
        revision: Revision,
        out: &mut Vec<Event>,
    ) {
        self.expiry.remove(node);
        self.vanishing.remove(node);
        if let Some(entry) = self.view.members.remove(node) {
            if entry.status == Status::Running {
                out.push(event(
                    EventKind::Left,
                    Arc::unwrap_or_clone(entry).member,
                    None,
                    Some(reason),
                    revision,
                ));
            }
        }
    }
}

fn event(
    kind: EventKind,
    member: Member,
    previous: Option<Member>,
    reason: Option<LeftReason>,
    revision: Revision,
) -> Event {
    Event {
        kind,
        node: member.node.clone(),
        member,
        previous,
        reason,
        revision,
        at: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocluster_plugin::{Incarnation, Metadata};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn node(i: u8) -> NodeName {
        NodeName::parse(&format!("n{i}@127.0.0.1")).unwrap()
    }

    fn member(i: u8, inc: u64, version: u8) -> Member {
        Member::new(node(i), Incarnation(inc))
            .with_meta(Some(
                Metadata::default().with_version(format!("v{version}")),
            ))
            .with_created(Revision(inc))
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, String)> {
        events
            .iter()
            .map(|e| (e.kind, e.node.to_string()))
            .collect()
    }

    #[test]
    fn put_delete_and_restart() {
        let now = Instant::now();
        let mut t = Table::new(false);
        let mut ev = Vec::new();
        t.apply(Change::Put(member(1, 1, 0)), Revision(1), now, &mut ev);
        t.apply(Change::Put(member(1, 1, 0)), Revision(2), now, &mut ev);
        t.apply(Change::Put(member(1, 1, 1)), Revision(3), now, &mut ev);
        t.apply(Change::Put(member(1, 2, 1)), Revision(4), now, &mut ev);
        t.apply(
            Change::Delete {
                node: node(1),
                incarnation: Some(Incarnation(1)),
            },
            Revision(5),
            now,
            &mut ev,
        );
        assert_eq!(t.view().len(), 1, "a delete of an earlier life is ignored");
        t.apply(
            Change::Delete {
                node: node(1),
                incarnation: None,
            },
            Revision(6),
            now,
            &mut ev,
        );
        use EventKind::*;
        let n = "n1@127.0.0.1".to_string();
        assert_eq!(
            kinds(&ev),
            vec![
                (Joined, n.clone()),
                (Updated, n.clone()),
                (Left, n.clone()),
                (Joined, n.clone()),
                (Left, n)
            ]
        );
        assert_eq!(ev[2].reason, Some(LeftReason::Restarted));
        assert_eq!(t.revision(), Revision(6));
    }

    #[test]
    fn grace_keeps_vanished_members_and_a_comeback_is_an_update() {
        let now = Instant::now();
        let grace = Duration::from_secs(10);
        let mut t = Table::new(false);
        let mut ev = Vec::new();
        let snap = |ms: Vec<Member>, r| Snapshot {
            members: ms,
            revision: Revision(r),
        };
        t.apply_snapshot(
            snap(vec![member(1, 1, 0), member(2, 2, 0)], 10),
            Some(grace),
            now,
            &mut ev,
        );
        assert_eq!(ev.len(), 2);
        ev.clear();
        // The backend was wiped: an empty snapshot.
        t.apply_snapshot(snap(vec![], 1), Some(grace), now, &mut ev);
        assert!(ev.is_empty());
        assert!(t.view().get(&node(1)).unwrap().vanishing);
        // Node 1 registers again with a new lease within the grace period.
        t.apply(
            Change::Put(member(1, 7, 0)),
            Revision(2),
            now + Duration::from_secs(3),
            &mut ev,
        );
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Updated, "n1@127.0.0.1".into())]
        );
        ev.clear();
        t.expire(now + Duration::from_secs(9), &mut ev);
        assert!(ev.is_empty());
        t.expire(now + Duration::from_secs(10), &mut ev);
        assert_eq!(kinds(&ev), vec![(EventKind::Left, "n2@127.0.0.1".into())]);
        assert_eq!(ev[0].reason, Some(LeftReason::Vanished));
        assert_eq!(t.view().len(), 1);
    }

    #[test]
    fn a_new_incarnation_seen_in_a_resync_is_an_update() {
        let now = Instant::now();
        let grace = Some(Duration::from_secs(10));
        let mut t = Table::new(false);
        let mut ev = Vec::new();
        let snap = |ms: Vec<Member>, r| Snapshot {
            members: ms,
            revision: Revision(r),
        };
        t.apply_snapshot(snap(vec![member(1, 1, 0)], 10), grace, now, &mut ev);
        ev.clear();
        // etcd was wiped and node 1 registered again before this node resynced.
        t.apply_snapshot(snap(vec![member(1, 9, 0)], 2), grace, now, &mut ev);
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Updated, "n1@127.0.0.1".into())]
        );
        // Without a gap (no grace), the same is a restart: left, then joined.
        ev.clear();
        t.apply_snapshot(snap(vec![member(1, 10, 0)], 3), None, now, &mut ev);
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn a_refresh_that_changes_nothing_leaves_the_map_alone() {
        let now = Instant::now();
        let mut t = Table::new(false);
        let mut ev = Vec::new();
        let mut m = member(1, 1, 0);
        m.ttl = Some(Duration::from_secs(3));
        t.apply(Change::Put(m.clone()), Revision(1), now, &mut ev);
        let before = t.view().members.clone();
        // A heartbeat: the same member again, later.
        t.apply(
            Change::Put(m.clone()),
            Revision(2),
            now + Duration::from_secs(1),
            &mut ev,
        );
        assert!(t.view().members.ptr_eq(&before), "nothing to publish");
        assert_eq!(
            t.next_deadline(),
            Some(now + Duration::from_secs(4)),
            "TTL renewed"
        );
        // New metadata is a change.
        t.apply(Change::Put(member(1, 1, 1)), Revision(3), now, &mut ev);
        assert!(!t.view().members.ptr_eq(&before));
    }

    #[test]
    fn soft_state_expires_unless_refreshed() {
        let now = Instant::now();
        let mut t = Table::new(false);
        let mut ev = Vec::new();
        let mut m = member(1, 1, 0);
        m.ttl = Some(Duration::from_secs(3));
        t.apply(Change::Put(m.clone()), Revision(1), now, &mut ev);
        t.apply(
            Change::Put(m),
            Revision(2),
            now + Duration::from_secs(2),
            &mut ev,
        );
        t.expire(now + Duration::from_secs(4), &mut ev);
        assert_eq!(t.view().len(), 1);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(5)));
        t.expire(now + Duration::from_secs(5), &mut ev);
        assert_eq!(t.view().len(), 0);
        assert_eq!(ev.last().unwrap().reason, Some(LeftReason::Expired));
    }

    #[test]
    fn candidates_join_when_probed() {
        let now = Instant::now();
        let mut t = Table::new(true);
        let mut ev = Vec::new();
        t.apply(
            Change::Put(Member::bare(node(1))),
            Revision(1),
            now,
            &mut ev,
        );
        assert!(ev.is_empty());
        assert_eq!(t.view().stopped_nodes(), vec![node(1)]);
        t.set_status(&node(1), Status::Running, &mut ev);
        t.set_status(&node(1), Status::Running, &mut ev);
        t.set_status(&node(1), Status::Stopped, &mut ev);
        assert_eq!(
            kinds(&ev),
            vec![
                (EventKind::Joined, "n1@127.0.0.1".into()),
                (EventKind::Left, "n1@127.0.0.1".into())
            ]
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u64, u8),
        Delete(u8, Option<u64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 1u64..4, 0u8..3).prop_map(|(n, i, v)| Op::Put(n, i, v)),
            (0u8..6, proptest::option::of(1u64..4)).prop_map(|(n, i)| Op::Delete(n, i)),
        ]
    }

    /// Replays events onto a map: what a subscriber that only reads events believes.
    fn replay(model: &mut BTreeMap<NodeName, Member>, events: &[Event]) {
        for e in events {
            match e.kind {
                EventKind::Joined | EventKind::Updated => {
                    model.insert(e.node.clone(), e.member.clone());
                }
                EventKind::Left => {
                    model.remove(&e.node);
                }
            }
        }
    }

    fn table_map(t: &Table) -> BTreeMap<NodeName, Member> {
        t.view()
            .members()
            .map(|e| (e.member.node.clone(), e.member.clone()))
            .collect()
    }

    proptest! {
        /// Any sequence of changes: a subscriber replaying the events holds exactly the
        /// table; and diffing the start and end snapshots gives events that lead a subscriber
        /// to the same place.
        #[test]
        fn events_agree_with_snapshots(start in proptest::collection::vec(op(), 0..20),
                                       ops in proptest::collection::vec(op(), 0..60)) {
            let now = Instant::now();
            let mut t = Table::new(false);
            let mut ev = Vec::new();
            for (i, o) in start.iter().chain(ops.iter()).enumerate() {
                let c = match o {
                    Op::Put(n, inc, v) => Change::Put(member(*n, *inc, *v)),
                    Op::Delete(n, inc) => Change::Delete { node: node(*n), incarnation: inc.map(Incarnation) },
                };
                if i == start.len() {
                    // Diff from here: a second table that starts from this snapshot.
                    ev.clear();
                }
                t.apply(c, Revision(i as u64 + 1), now, &mut ev);
            }
            // Replay of the incremental events from the start snapshot.
            let mut s0 = Table::new(false);
            let mut sink = Vec::new();
            for (i, o) in start.iter().enumerate() {
                let c = match o {
                    Op::Put(n, inc, v) => Change::Put(member(*n, *inc, *v)),
                    Op::Delete(n, inc) => Change::Delete { node: node(*n), incarnation: inc.map(Incarnation) },
                };
                s0.apply(c, Revision(i as u64 + 1), now, &mut sink);
            }
            let start_map = table_map(&s0);
            let mut model = start_map.clone();
            replay(&mut model, &ev);
            prop_assert_eq!(&model, &table_map(&t));

            // Diff: apply the end state as a snapshot onto the start table.
            let end = Snapshot { members: table_map(&t).into_values().collect(), revision: Revision(1000) };
            let mut diff = Vec::new();
            s0.apply_snapshot(end, None, now, &mut diff);
            let mut model2 = start_map;
            replay(&mut model2, &diff);
            prop_assert_eq!(&model2, &table_map(&t));
            // And the diff is minimal: at most one event per node, except a restart (two).
            let mut per_node: BTreeMap<NodeName, usize> = BTreeMap::new();
            for e in &diff { *per_node.entry(e.node.clone()).or_default() += 1; }
            prop_assert!(per_node.values().all(|&c| c <= 2));
        }
    }
}
