//! The one member table: applies snapshots and changes, and says what changed as events.
//!
//! Work per change is O(log n): the view is a persistent map, so publishing it after every
//! change does not copy it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autocluster_plugin::{Change, Member, Metadata, NodeName, Revision, Snapshot};
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

    /// Gives the members whose TTL ran out by `now` until `to` to be heard from: this node
    /// itself was not running (paused, or starved of CPU) when their heartbeats came, and
    /// those are still queued. Returns how many were given the time.
    pub fn postpone_expiry(&mut self, now: Instant, to: Instant) -> usize {
        self.expiry.postpone_due(now, to)
    }

    /// The earliest TTL expiry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.next()
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

    /// Records a probe's verdict on a candidate, with the metadata it serves (`None` keeps
    /// what the entry has). A running candidate whose metadata changed is `Updated`; one whose
    /// start time changed restarted between two probes: it left and joined again.
    pub fn set_probed(
        &mut self,
        node: &NodeName,
        status: Status,
        served: Option<Metadata>,
        out: &mut Vec<Event>,
    ) {
        let revision = self.view.revision;
        let Some(entry) = self.view.members.get_mut(node) else {
            return;
        };
        let meta = served.map(|m| probed(entry.member.meta.as_ref(), m));
        let new_meta = meta
            .as_ref()
            .filter(|m| entry.member.meta.as_ref() != Some(*m));
        if entry.status == status && new_meta.is_none() {
            return;
        }
        let entry = Arc::make_mut(entry);
        let previous = entry.member.clone();
        if let Some(meta) = meta {
            entry.member.meta = Some(meta);
        }
        let member = entry.member.clone();
        if entry.status == status {
            // Running before and now, with new metadata.
            let started = |m: &Member| m.meta.as_ref().and_then(|m| m.started_at_ms);
            let restarted = started(&previous).is_some() && started(&previous) != started(&member);
            if restarted {
                entry.since = SystemTime::now();
            }
            change_events(previous, &member, restarted, revision, out);
            return;
        }
        entry.status = status;
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
            self.insert_new(member, revision, out);
            return;
        };
        // A candidate list names nodes and addresses only: what the probe learned stays.
        let mut member = member;
        if self.candidates_only {
            if let Some(learned) = current.member.meta.clone() {
                member.meta = Some(probed(member.meta.as_ref(), learned));
            }
        }
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
            change_events(current.member.clone(), &member, restarted, revision, out);
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

    /// A node seen for the first time: running (and joined) unless this table holds
    /// candidates, which run only once a probe says so.
    fn insert_new(&mut self, member: Member, revision: Revision, out: &mut Vec<Event>) {
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
            member.node.clone(),
            Arc::new(MemberEntry {
                member,
                status,
                since: SystemTime::now(),
                vanishing: false,
            }),
        );
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

/// The metadata a probe served, under the candidate's own name and addresses (those come
/// from the list: the seeds, the DNS answer).
fn probed(candidate: Option<&Metadata>, served: Metadata) -> Metadata {
    let mut meta = served;
    if let Some(c) = candidate {
        if c.node.is_some() {
            meta.node.clone_from(&c.node);
        }
        if !c.addrs.is_empty() {
            meta.addrs.clone_from(&c.addrs);
        }
    }
    meta
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

/// The events a running member's new registration gives: a restart we did not see leave is
/// a `left` of the old life and a `joined` of the new one; anything else is one `updated`.
fn change_events(
    previous: Member,
    member: &Member,
    restarted: bool,
    revision: Revision,
    out: &mut Vec<Event>,
) {
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

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
