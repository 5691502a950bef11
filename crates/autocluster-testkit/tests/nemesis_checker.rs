//! The nemesis checker, tested on planted histories: a clean one passes with every property
//! checked; each planted fault (a false leave, a lagging view, a duplicated join, a stray
//! key, a crash nobody saw, a ready answer while cut off) fails it, naming the property, the
//! agent, the window and the seed.

use autocluster_testkit::nemesis::checker::{check, Report};
use autocluster_testkit::nemesis::history::{
    self, AgentState, Entry, HistoryWriter, Members, Record,
};

const SEED: u64 = 42;
const A: &str = "a@127.0.0.1";
const B: &str = "b@127.0.0.1";
const C: &str = "c@127.0.0.1";

fn at(t_ms: u64, record: Record) -> Entry {
    Entry { t_ms, record }
}

fn state(t: u64, down: &[&str], cut: &[&str]) -> Entry {
    let agents = [A, B, C]
        .iter()
        .map(|n| AgentState {
            name: n.to_string(),
            live: !down.contains(n),
            paused: false,
            connected: !cut.contains(n),
        })
        .collect();
    at(
        t,
        Record::State {
            agents,
            etcd_calm: true,
        },
    )
}

fn event(t: u64, observer: &str, event: &str, node: &str, inc: &str) -> Entry {
    at(
        t,
        Record::Event {
            observer: observer.into(),
            event: event.into(),
            node: node.into(),
            incarnation: inc.into(),
            reason: None,
        },
    )
}

fn members(list: &[(&str, &str)]) -> Members {
    list.iter()
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect()
}

fn view(t: u64, observer: &str, list: &[(&str, &str)]) -> Entry {
    at(
        t,
        Record::View {
            observer: observer.into(),
            members: members(list),
        },
    )
}

fn fault(t: u64, fault: &str, target: &str) -> Entry {
    at(
        t,
        Record::Fault {
            fault: fault.into(),
            scope: "agent".into(),
            target: Some(target.into()),
        },
    )
}

fn heal(t: u64, what: &str, target: Option<&str>) -> Entry {
    let scope = if target.is_some() { "agent" } else { "all" };
    at(
        t,
        Record::Heal {
            what: what.into(),
            scope: scope.into(),
            target: target.map(String::from),
        },
    )
}

/// The round healed at `heal_ms`: its truth 1.5 s later, and etcd's keys read just after.
fn truth(heal_ms: u64, list: &[(&str, &str)]) -> [Entry; 2] {
    [
        at(
            heal_ms + 1_500,
            Record::Truth {
                heal_ms,
                members: members(list),
            },
        ),
        at(
            heal_ms + 1_600,
            Record::EtcdKeys {
                keys: members(list),
            },
        ),
    ]
}

/// Each violation's property and agent.
fn flagged(report: &Report) -> Vec<(u8, &str)> {
    report
        .violations
        .iter()
        .map(|v| (v.property, v.agent.as_str()))
        .collect()
}

fn ready(t: u64, agent: &str, ready: bool) -> Entry {
    at(
        t,
        Record::Ready {
            agent: agent.into(),
            ready,
        },
    )
}

const ALL_OLD: [(&str, &str); 3] = [(A, "1"), (B, "2"), (C, "3")];
const ALL_NEW: [(&str, &str); 3] = [(A, "1"), (B, "2"), (C, "4")];

/// Three agents; c is killed at 10 s (a and b see it leave), restarted at 14.5 s with a new
/// incarnation; the round heals at 20 s and everyone converges; b is cut from 25 s to 32 s
/// and turns unready; a second round heals at 40 s.
fn clean() -> Vec<Entry> {
    let mut h = vec![
        at(
            0,
            Record::Start {
                seed: SEED,
                backend: "etcd".into(),
                agents: vec![A.into(), B.into(), C.into()],
                node_ttl_ms: 3000,
                grace_ms: 3000,
                fresh_bound_ms: 3000,
            },
        ),
        state(0, &[], &[]),
    ];
    for o in [A, B, C] {
        h.push(at(100, Record::Subscribed { observer: o.into() }));
        h.push(ready(150, o, true));
    }
    for o in [A, B, C] {
        for (n, i) in ALL_OLD {
            h.push(event(200, o, "joined", n, i));
        }
        h.push(view(300, o, &ALL_OLD));
    }
    h.push(fault(10_000, "kill_agent", C));
    h.push(state(10_001, &[C], &[]));
    h.push(ready(10_100, C, false));
    h.push(event(12_500, A, "left", C, "3"));
    h.push(event(12_600, B, "left", C, "3"));
    h.push(view(12_700, A, &ALL_OLD[..2]));
    h.push(view(12_700, B, &ALL_OLD[..2]));
    h.push(heal(14_500, "restart_agent", Some(C)));
    h.push(state(14_501, &[], &[]));
    h.push(at(14_600, Record::Subscribed { observer: C.into() }));
    h.push(ready(14_700, C, true));
    h.push(event(14_650, A, "joined", C, "4"));
    h.push(event(14_660, B, "joined", C, "4"));
    for o in [A, B, C] {
        h.push(view(14_800, o, &ALL_NEW));
    }
    h.push(heal(20_000, "all", None));
    h.push(state(20_001, &[], &[]));
    h.extend(truth(20_000, &ALL_NEW));
    h.push(fault(25_000, "cut_agent", B));
    h.push(state(25_001, &[], &[B]));
    h.push(ready(26_500, B, false));
    h.push(heal(32_000, "reconnect_agent", Some(B)));
    h.push(state(32_001, &[], &[]));
    h.push(ready(32_300, B, true));
    h.push(heal(40_000, "all", None));
    h.push(state(40_001, &[], &[]));
    h.extend(truth(40_000, &ALL_NEW));
    h.push(at(42_000, Record::End));
    h.sort_by_key(|e| e.t_ms);
    h
}

/// `history` with `extra` lines placed in time order.
fn planted(extra: Vec<Entry>) -> Vec<Entry> {
    let mut h = clean();
    h.extend(extra);
    h.sort_by_key(|e| e.t_ms);
    h
}

#[test]
fn a_clean_history_passes_with_every_property_checked() {
    let report = check(&clean());
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.seed, SEED);
    assert_eq!(report.rounds, 2);
    // 1: three agents at two truths; 2: one leave (told by two observers: on etcd one
    // deletion, checked once); 3: eleven joins; 4: two key reads; 5: two observers of one
    // crash; 6: one long cut.
    assert_eq!(report.checks, [6, 1, 11, 2, 2, 1], "{report}");
}

#[test]
fn a_history_survives_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.jsonl");
    let w = HistoryWriter::create(&path).unwrap();
    let entries = clean();
    for e in &entries {
        w.write(e.record.clone());
    }
    w.flush().unwrap();
    let back = history::read(&path).unwrap();
    let records: Vec<&Record> = back.iter().map(|e| &e.record).collect();
    assert_eq!(
        records,
        entries.iter().map(|e| &e.record).collect::<Vec<_>>()
    );
    std::fs::write(&path, "{\"t_ms\":1,\"kind\":\"start\"}\n").unwrap();
    let err = history::read(&path).unwrap_err().to_string();
    assert!(err.contains("h.jsonl:1: not a history line"), "{err}");
}

/// The one violation of a planted history: (property, agent, from, to), and its text.
fn only(extra: Vec<Entry>) -> (u8, String, u64, u64, String) {
    let report = check(&planted(extra));
    assert_eq!(report.violations.len(), 1, "{report}");
    let v = &report.violations[0];
    assert_eq!(v.seed, SEED);
    let text = v.to_string();
    assert!(text.contains("seed 42"), "{text}");
    (v.property, v.agent.clone(), v.from_ms, v.to_ms, text)
}

#[test]
fn a_false_leave_is_named() {
    // b was healthy and untouched from the start to its cut at 25 s.
    let (p, agent, from, to, text) = only(vec![event(18_000, A, "left", B, "2")]);
    assert_eq!(
        (p, agent.as_str(), from, to),
        (2, B, 13_000, 18_000),
        "{text}"
    );
    assert!(
        text.contains("property 2 (no false leave)") && text.contains(A),
        "{text}"
    );
}

#[test]
fn a_former_life_told_late_is_not_a_false_leave_but_the_current_one_is() {
    // c's first life (3) ended at its kill (10 s); an observer that was cut off or stopped
    // may tell it only at 25 s, when c, steady since its restart, runs its second life (4).
    let report = check(&planted(vec![event(25_000, A, "left", C, "3")]));
    assert!(report.violations.is_empty(), "{report}");
    // The same late line about the life c runs now is a false leave.
    let (p, agent, from, to, text) = only(vec![event(25_000, A, "left", C, "4")]);
    assert_eq!(
        (p, agent.as_str(), from, to),
        (2, C, 20_000, 25_000),
        "{text}"
    );
}

#[test]
fn a_lagging_view_is_named() {
    // a's view keeps c's old incarnation until 30 s; the bound is 20 s + 3 + 3 + 1 s.
    let (p, agent, from, to, text) =
        only(vec![view(14_900, A, &ALL_OLD), view(30_000, A, &ALL_NEW)]);
    assert_eq!(
        (p, agent.as_str(), from, to),
        (1, A, 20_000, 27_000),
        "{text}"
    );
    assert!(text.contains("only at 30000 ms"), "{text}");
}

#[test]
fn a_view_that_never_converges_is_named() {
    // c's view stays on its old incarnation: both rounds' checks fail.
    let report = check(&planted(vec![view(14_900, C, &ALL_OLD)]));
    let got: Vec<(u8, &str, u64)> = report
        .violations
        .iter()
        .map(|v| (v.property, v.agent.as_str(), v.from_ms))
        .collect();
    assert_eq!(got, vec![(1, C, 20_000), (1, C, 40_000)], "{report}");
    assert!(
        report.violations[0].to_string().contains("never equalled"),
        "{report}"
    );
}

#[test]
fn a_duplicated_join_is_named() {
    let (p, agent, from, to, text) = only(vec![event(16_000, A, "joined", C, "4")]);
    assert_eq!(
        (p, agent.as_str(), from, to),
        (3, A, 14_650, 16_000),
        "{text}"
    );
    assert!(
        text.contains("join at 14650 ms and again at 16000 ms"),
        "{text}"
    );
}

#[test]
fn a_key_that_outlives_its_node_is_named() {
    let mut h = clean();
    for e in &mut h {
        if let Record::EtcdKeys { keys } = &mut e.record {
            if e.t_ms == 41_600 {
                keys.insert("ghost@127.0.0.1".into(), "9".into());
            }
        }
    }
    let report = check(&h);
    assert_eq!(report.violations.len(), 1, "{report}");
    let v = &report.violations[0];
    assert_eq!((v.property, v.from_ms), (4, 41_500), "{v}");
    assert!(
        v.to_string().contains("ghost@127.0.0.1: live none, key 9"),
        "{v}"
    );
}

#[test]
fn a_crash_nobody_saw_in_time_is_named() {
    let h: Vec<Entry> = clean()
        .into_iter()
        .filter(|e| !matches!(&e.record, Record::Event { observer, event, .. } if observer == B && event == "left"))
        .collect();
    let report = check(&h);
    assert_eq!(report.violations.len(), 1, "{report}");
    let v = &report.violations[0];
    assert_eq!(
        (v.property, v.agent.as_str(), v.from_ms, v.to_ms),
        (5, B, 10_000, 14_000),
        "{v}"
    );
}

#[test]
fn a_ready_answer_while_cut_off_is_named() {
    let (p, agent, from, to, text) = only(vec![ready(28_000, B, true)]);
    assert_eq!(
        (p, agent.as_str(), from, to),
        (6, B, 25_001, 32_001),
        "{text}"
    );
    assert!(text.contains("still answered ready at 29001 ms"), "{text}");
}

#[test]
fn on_multicast_an_observer_cut_off_may_expire_others_but_not_on_etcd() {
    // b is cut from 25 s to 32 s; it sees a leave at 29 s.
    let plant = || vec![event(29_000, B, "left", A, "1")];
    let (p, agent, _, _, text) = only(plant());
    assert_eq!((p, agent.as_str()), (2, A), "on etcd: {text}");
    let mut h = planted(plant());
    if let Record::Start { backend, .. } = &mut h[0].record {
        *backend = "mcast".into();
    }
    let report = check(&h);
    assert!(report.violations.is_empty(), "on multicast: {report}");
    // One leave fewer is checked (b's), and property 6 is not checked there.
    assert_eq!(report.checks[1], 2, "{report}");
    assert_eq!(report.checks[5], 0, "{report}");
}

/// etcd seed 7, hour run of 2026-12-03 (326-331 s): c is killed at 33 s while etcd loses its
/// quorum, which keeps c's lease (4) alive; the new process started at 34 s is refused while
/// that lease holds the name, and its own view shows its former life. The lease runs out at
/// 39.5 s, over `node_ttl` + 2 s after the restart (every observer, c too, sees 4 leave), and
/// c registers its new life (5).
fn former_life_outlives_the_restart(late_leave_of_the_new_life: bool) -> Vec<Entry> {
    let mut h: Vec<Entry> = clean().into_iter().filter(|e| e.t_ms < 33_000).collect();
    let with5 = [(A, "1"), (B, "2"), (C, "5")];
    h.push(fault(33_000, "kill_agent", C));
    h.push(state(33_001, &[C], &[]));
    h.push(ready(33_100, C, false));
    h.push(at(
        33_500,
        Record::Fault {
            fault: "lose_quorum".into(),
            scope: "etcd".into(),
            target: Some("a,c".into()),
        },
    ));
    h.push(heal(34_000, "restart_agent", Some(C)));
    h.push(state(34_001, &[], &[]));
    h.push(at(34_100, Record::Subscribed { observer: C.into() }));
    for (n, i) in ALL_NEW {
        h.push(event(34_150, C, "joined", n, i));
    }
    h.push(view(34_200, C, &ALL_NEW));
    h.push(at(
        38_000,
        Record::Heal {
            what: "restart_members".into(),
            scope: "etcd".into(),
            target: Some("a,c".into()),
        },
    ));
    for o in [A, B, C] {
        h.push(event(39_500, o, "left", C, "4"));
        h.push(event(39_800, o, "joined", C, "5"));
        h.push(view(39_900, o, &with5));
    }
    h.push(ready(39_950, C, true));
    h.push(heal(40_000, "all", None));
    h.push(state(40_001, &[], &[]));
    if late_leave_of_the_new_life {
        h.push(event(45_000, A, "left", C, "5"));
    }
    h.extend(truth(40_000, &with5));
    h.push(at(46_000, Record::End));
    h.sort_by_key(|e| e.t_ms);
    h
}

#[test]
fn a_restarted_node_seeing_its_former_life_run_out_is_not_a_false_leave() {
    let report = check(&former_life_outlives_the_restart(false));
    assert!(report.violations.is_empty(), "{report}");
    // Once registered, its life is 5: a leave of 5 while it is steady is false.
    let report = check(&former_life_outlives_the_restart(true));
    assert!(flagged(&report).contains(&(2, C)), "{report}");
}

/// etcd seed 2, CI of 2026-12-03 (29-34 s): c is paused (SIGSTOP) at 43 s and its lease (4)
/// runs out at 46 s, seen by a, while b is cut off (from 44 s); c resumes at 46.5 s, when etcd
/// also loses its quorum, and sees its own key gone; b, reconnected at 48 s, has its watch
/// resume only when the quorum is back (52 s), and tells the same deletion then, when c has
/// been running, connected and untouched for over `node_ttl` + 2 s. c registers its next life
/// (5) at 52.5 s. With `told_before` false, nobody told that leave before b.
fn a_leave_told_late_by_an_observer_cut_off(told_before: bool) -> Vec<Entry> {
    let mut h: Vec<Entry> = clean().into_iter().filter(|e| e.t_ms < 42_000).collect();
    let with5 = [(A, "1"), (B, "2"), (C, "5")];
    let paused = |t: u64, c_paused: bool, b_cut: bool| {
        let agents = [A, B, C]
            .iter()
            .map(|n| AgentState {
                name: n.to_string(),
                live: true,
                paused: *n == C && c_paused,
                connected: !(*n == B && b_cut),
            })
            .collect();
        at(
            t,
            Record::State {
                agents,
                etcd_calm: true,
            },
        )
    };
    h.push(fault(43_000, "pause_agent", C));
    h.push(paused(43_001, true, false));
    h.push(ready(43_200, C, false));
    h.push(fault(44_000, "cut_agent", B));
    h.push(paused(44_001, true, true));
    h.push(ready(44_500, B, false));
    if told_before {
        h.push(event(46_000, A, "left", C, "4"));
        h.push(view(46_050, A, &ALL_NEW[..2]));
    }
    h.push(heal(46_500, "resume_agent", Some(C)));
    h.push(paused(46_501, false, true));
    h.push(at(
        46_502,
        Record::Fault {
            fault: "lose_quorum".into(),
            scope: "etcd".into(),
            target: Some("a,c".into()),
        },
    ));
    if told_before {
        h.push(event(46_600, C, "left", C, "4"));
        h.push(view(46_650, C, &ALL_NEW[..2]));
    }
    h.push(heal(48_000, "reconnect_agent", Some(B)));
    h.push(paused(48_001, false, false));
    h.push(at(
        52_000,
        Record::Heal {
            what: "restart_members".into(),
            scope: "etcd".into(),
            target: Some("a,c".into()),
        },
    ));
    h.push(event(52_010, B, "left", C, "4"));
    h.push(view(52_020, B, &ALL_NEW[..2]));
    for o in [A, B, C] {
        if !told_before && o != B {
            h.push(event(52_300, o, "left", C, "4"));
        }
        h.push(event(52_500, o, "joined", C, "5"));
        h.push(view(52_600, o, &with5));
        h.push(ready(52_700, o, true));
    }
    h.push(heal(53_000, "all", None));
    h.push(state(53_001, &[], &[]));
    h.extend(truth(53_000, &with5));
    h.push(at(60_000, Record::End));
    h.sort_by_key(|e| e.t_ms);
    h
}

#[test]
fn a_leave_told_late_by_an_observer_that_was_cut_off_is_not_a_false_leave() {
    let report = check(&a_leave_told_late_by_an_observer_cut_off(true));
    assert!(report.violations.is_empty(), "{report}");
    // Told first by b, late, with nothing earlier to show the lease ran out: the checker
    // cannot tell it from a false leave, and says so (a limit of the property, kept visible).
    let report = check(&a_leave_told_late_by_an_observer_cut_off(false));
    assert!(flagged(&report).contains(&(2, C)), "{report}");
}
