//! The six properties, each a function over the history and its timeline.

use std::collections::HashMap;

use super::super::history::{Entry, Members, Record};
use super::timeline::Timeline;
use super::{Bounds, Violation};

/// Slack for the harness's own latency: polling every 200 ms, reading streams, HTTP.
const SLACK_MS: u64 = 1000;

fn show(members: &Members) -> String {
    let parts: Vec<String> = members.iter().map(|(n, i)| format!("{n}={i}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Property 1.
pub(crate) fn converged(entries: &[Entry], b: &Bounds, out: &mut Vec<Violation>) -> u64 {
    let mut checks = 0;
    for (i, e) in entries.iter().enumerate() {
        let Record::Truth { heal_ms, members } = &e.record else {
            continue;
        };
        let deadline = heal_ms + b.ttl + b.grace + 1000;
        for agent in members.keys() {
            checks += 1;
            let mut last: Option<&Members> = None;
            let mut met = None;
            // The view in effect just before the truth, then every change after it.
            for v in entries[..i].iter().rev() {
                if let Record::View {
                    observer,
                    members: seen,
                } = &v.record
                {
                    if observer == agent {
                        last = Some(seen);
                        if seen == members {
                            met = Some(v.t_ms.max(*heal_ms));
                        }
                        break;
                    }
                }
            }
            for v in &entries[i..] {
                if met.is_some() || matches!(v.record, Record::Truth { .. }) && v.t_ms > e.t_ms {
                    break;
                }
                if let Record::View {
                    observer,
                    members: seen,
                } = &v.record
                {
                    if observer == agent {
                        last = Some(seen);
                        if seen == members {
                            met = Some(v.t_ms);
                        }
                    }
                }
            }
            let late = match met {
                Some(t) if t <= deadline => continue,
                Some(t) => format!("its view equalled the live set only at {t} ms"),
                None => format!(
                    "its view never equalled the live set {}; last seen {}",
                    show(members),
                    last.map(show).unwrap_or_else(|| "nothing".into())
                ),
            };
            out.push(Violation {
                property: 1,
                agent: agent.clone(),
                from_ms: *heal_ms,
                to_ms: deadline,
                seed: b.seed,
                what: late,
            });
        }
    }
    checks
}

/// Property 2.
pub(crate) fn no_false_leave(
    entries: &[Entry],
    b: &Bounds,
    tl: &Timeline,
    out: &mut Vec<Violation>,
) -> u64 {
    let mut checks = 0;
    // On etcd a leave is one deletion in etcd's history, which every observer's watch
    // delivers: the first observer to tell it is checked; one that tells the same life's
    // leave later (cut off, or its watch resumed after a lost quorum) tells the same event
    // late, not a new one, however long the node has been untouched since.
    let mut told: std::collections::HashSet<(&str, &str)> = Default::default();
    for e in entries {
        let Record::Event {
            observer,
            event,
            node,
            incarnation,
            reason,
        } = &e.record
        else {
            continue;
        };
        if event != "left" {
            continue;
        }
        if b.etcd && !told.insert((node.as_str(), incarnation.as_str())) {
            continue;
        }
        // A leave of a former life, told late (an observer cut off or stopped while the node
        // lost its lease and registered again): the property is about the current life. The
        // former life's end was checked when it was first seen, while it was current.
        let own = tl.own_incarnation(node, e.t_ms);
        if own.is_some_and(|own| !own.is_empty() && own != incarnation) {
            continue;
        }
        let from = e.t_ms.saturating_sub(b.ttl + 2000);
        // On soft state (multicast) an observer that cannot hear, or was stopped, expires
        // the members it misses by design; on etcd nothing excuses the observer.
        if !b.etcd && !tl.steady(observer, from, e.t_ms) {
            continue;
        }
        checks += 1;
        // Between a crash (or a clean leave) and the next life's registration the node has
        // no life to lose: whatever the observer says is true (a restarted process sees its
        // former life's key run out, late when a lost quorum kept its lease).
        if own == Some("") {
            continue;
        }
        if tl.steady(node, from, e.t_ms) {
            out.push(Violation {
                property: 2,
                agent: node.clone(),
                from_ms: from,
                to_ms: e.t_ms,
                seed: b.seed,
                what: format!(
                    "{observer} saw it left (incarnation {incarnation}, reason {}) although it was \
                     live, running, connected and untouched throughout",
                    reason.as_deref().unwrap_or("none")
                ),
            });
        }
    }
    checks
}

/// Property 3.
pub(crate) fn no_double_join(entries: &[Entry], b: &Bounds, out: &mut Vec<Violation>) -> u64 {
    let mut checks = 0;
    // Per observer's stream: node -> the incarnation it last joined (or was updated to).
    let mut joined: HashMap<String, HashMap<String, (String, u64)>> = HashMap::new();
    for e in entries {
        match &e.record {
            Record::Subscribed { observer } => {
                joined.insert(observer.clone(), HashMap::new());
            }
            Record::Event {
                observer,
                event,
                node,
                incarnation,
                ..
            } => {
                let seen = joined.entry(observer.clone()).or_default();
                match event.as_str() {
                    "joined" => {
                        checks += 1;
                        if let Some((inc, at)) = seen.get(node) {
                            if inc == incarnation {
                                out.push(Violation {
                                    property: 3,
                                    agent: observer.clone(),
                                    from_ms: *at,
                                    to_ms: e.t_ms,
                                    seed: b.seed,
                                    what: format!(
                                        "it saw {node} (incarnation {incarnation}) join at {at} ms \
                                         and again at {} ms without a leave between",
                                        e.t_ms
                                    ),
                                });
                            }
                        }
                        seen.insert(node.clone(), (incarnation.clone(), e.t_ms));
                    }
                    "updated" => {
                        seen.insert(node.clone(), (incarnation.clone(), e.t_ms));
                    }
                    "left" => {
                        seen.remove(node);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    checks
}

/// Property 4.
pub(crate) fn keys_match(entries: &[Entry], b: &Bounds, out: &mut Vec<Violation>) -> u64 {
    let mut checks = 0;
    let mut truth: Option<(u64, &Members)> = None;
    for e in entries {
        match &e.record {
            Record::Truth { members, .. } => truth = Some((e.t_ms, members)),
            Record::EtcdKeys { keys } => {
                let Some((at, members)) = truth.take() else {
                    continue;
                };
                checks += 1;
                if keys != members {
                    let diff: Vec<String> = members
                        .keys()
                        .chain(keys.keys())
                        .filter(|n| members.get(*n) != keys.get(*n))
                        .map(|n| {
                            format!(
                                "{n}: live {}, key {}",
                                members.get(n).map_or("none", |s| s),
                                keys.get(n).map_or("none", |s| s)
                            )
                        })
                        .collect();
                    out.push(Violation {
                        property: 4,
                        agent: diff.first().cloned().unwrap_or_default(),
                        from_ms: at,
                        to_ms: e.t_ms,
                        seed: b.seed,
                        what: format!("etcd's node keys differ: {}", diff.join("; ")),
                    });
                }
            }
            _ => {}
        }
    }
    checks
}

/// Property 5.
pub(crate) fn crashes_seen(
    entries: &[Entry],
    b: &Bounds,
    tl: &Timeline,
    out: &mut Vec<Violation>,
) -> u64 {
    let mut checks = 0;
    let bound = b.ttl + 1000;
    for e in entries {
        let Record::Fault {
            fault,
            target: Some(killed),
            ..
        } = &e.record
        else {
            continue;
        };
        let t = e.t_ms;
        // Only a crash of an agent that was steady, with the servers steady around it.
        if fault != "kill_agent"
            || !tl.steady(killed, t.saturating_sub(2000), t.saturating_sub(1))
            || tl.servers_disturbed(t.saturating_sub(b.ttl + 1000), t + bound)
        {
            continue;
        }
        for (observer, _) in tl.states.iter().filter(|(n, _)| *n != killed) {
            if !tl.steady(observer, t.saturating_sub(2000), t + bound)
                || !tl.subscribed_through(observer, t, t + bound)
            {
                continue;
            }
            checks += 1;
            let seen = entries.iter().any(|x| {
                matches!(&x.record, Record::Event { observer: o, event, node, .. }
                    if o == observer && event == "left" && node == killed)
                    && x.t_ms >= t
                    && x.t_ms <= t + bound + SLACK_MS / 5
            });
            if !seen {
                out.push(Violation {
                    property: 5,
                    agent: observer.clone(),
                    from_ms: t,
                    to_ms: t + bound,
                    seed: b.seed,
                    what: format!("it did not see {killed} (killed at {t} ms) leave in time"),
                });
            }
        }
    }
    checks
}

/// Property 6.
pub(crate) fn fresh_when_ready(b: &Bounds, tl: &Timeline, out: &mut Vec<Violation>) -> u64 {
    let mut checks = 0;
    for (agent, states) in &tl.states {
        // Intervals cut off: live, running, not connected.
        let mut cut_from: Option<u64> = None;
        let mut intervals = Vec::new();
        for (t, s) in states {
            let cut = s.live && !s.paused && !s.connected;
            match (cut_from, cut) {
                (None, true) => cut_from = Some(*t),
                (Some(from), false) => {
                    intervals.push((from, *t));
                    cut_from = None;
                }
                _ => {}
            }
        }
        let ready = tl.ready.get(agent).cloned().unwrap_or_default();
        for (from, to) in intervals {
            let limit = from + b.fresh + SLACK_MS;
            if to <= limit {
                continue;
            }
            checks += 1;
            let at_limit = ready
                .iter()
                .rev()
                .find(|(t, _)| *t <= limit)
                .is_some_and(|r| r.1);
            let later = ready.iter().find(|(t, r)| *t > limit && *t < to && *r);
            let when = if at_limit {
                Some(limit)
            } else {
                later.map(|r| r.0)
            };
            if let Some(when) = when {
                out.push(Violation {
                    property: 6,
                    agent: agent.clone(),
                    from_ms: from,
                    to_ms: to,
                    seed: b.seed,
                    what: format!(
                        "cut off from its backend at {from} ms, it still answered ready at {when} ms \
                         (bound {} ms)",
                        b.fresh
                    ),
                });
            }
        }
    }
    checks
}
