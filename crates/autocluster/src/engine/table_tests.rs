//! The member table's tests: events, grace periods, expiry, probes, and a property test that
//! events and snapshots agree.
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
    t.set_probed(&node(1), Status::Running, None, &mut ev);
    t.set_probed(&node(1), Status::Running, None, &mut ev);
    t.set_probed(&node(1), Status::Stopped, None, &mut ev);
    assert_eq!(
        kinds(&ev),
        vec![
            (EventKind::Joined, "n1@127.0.0.1".into()),
            (EventKind::Left, "n1@127.0.0.1".into())
        ]
    );
}

/// What a probe serves: a start time and a zone label, under the listener's own address.
fn served(started: u64, zone: &str) -> Metadata {
    let mut m = Metadata::of(node(1))
        .with_addrs(vec!["127.0.0.1:4370".into()])
        .with_started_at_ms(started);
    m.labels.insert("zone".into(), zone.into());
    m
}

#[test]
fn a_probed_candidate_carries_what_it_serves_and_a_candidate_list_keeps_it() {
    let now = Instant::now();
    let mut t = Table::new(true);
    let mut ev = Vec::new();
    let listed = || {
        Member::bare(node(1)).with_meta(Some(
            Metadata::of(node(1)).with_addrs(vec!["127.0.0.1".into()]),
        ))
    };
    let snapshot = |ev: &mut Vec<Event>, t: &mut Table| {
        let snap = Snapshot {
            members: vec![listed()],
            revision: Revision(1),
        };
        t.apply_snapshot(snap, None, now, ev);
    };
    snapshot(&mut ev, &mut t);
    t.set_probed(&node(1), Status::Running, Some(served(10, "eu-1")), &mut ev);
    assert_eq!(kinds(&ev), vec![(EventKind::Joined, "n1@127.0.0.1".into())]);
    let meta = ev[0].member.meta.clone().unwrap();
    assert_eq!(meta.labels["zone"], "eu-1", "the join carries the labels");
    assert_eq!(meta.addrs, vec!["127.0.0.1"], "the list's address stays");

    // The next poll of the list and the next probe serving the same: nothing.
    ev.clear();
    snapshot(&mut ev, &mut t);
    t.set_probed(&node(1), Status::Running, Some(served(10, "eu-1")), &mut ev);
    t.set_probed(&node(1), Status::Running, None, &mut ev);
    assert!(ev.is_empty(), "{:?}", kinds(&ev));
    let entry = t.view().members.get(&node(1)).unwrap().clone();
    assert_eq!(entry.member.meta.as_ref().unwrap().labels["zone"], "eu-1");

    // New labels: one update, with the previous member.
    t.set_probed(&node(1), Status::Running, Some(served(10, "eu-2")), &mut ev);
    assert_eq!(
        kinds(&ev),
        vec![(EventKind::Updated, "n1@127.0.0.1".into())]
    );
    let previous = ev[0].previous.as_ref().unwrap();
    assert_eq!(previous.meta.as_ref().unwrap().labels["zone"], "eu-1");

    // A new start time between two probes: it restarted.
    ev.clear();
    t.set_probed(&node(1), Status::Running, Some(served(20, "eu-2")), &mut ev);
    assert_eq!(
        kinds(&ev),
        vec![
            (EventKind::Left, "n1@127.0.0.1".into()),
            (EventKind::Joined, "n1@127.0.0.1".into())
        ]
    );
    assert_eq!(ev[0].reason, Some(LeftReason::Restarted));
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
