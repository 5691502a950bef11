//! Reads a history ([`super::history`]) and proves the six properties, or names where they
//! fail: the property, the agent, the time window, and the seed that reproduces the run.
//!
//! 1. After each round's heal, every agent's running members equal the truth (names and
//!    incarnations) within `node_ttl + grace + 1 s` of the heal.
//! 2. No agent is seen `left` while it was live, running, connected and untouched by any
//!    fault of its own for the `node_ttl + 2 s` before.
//! 3. No observer sees one incarnation join twice without a leave between (per stream).
//! 4. After each round, the node keys in etcd equal the truth (names and leases).
//! 5. An agent killed (SIGKILL) after 2 s of health is seen `left` by every agent that stayed
//!    healthy and untouched, within `node_ttl + 1 s`, unless the servers were disturbed.
//! 6. An agent cut from its backend does not answer ready longer than the freshness bound
//!    (plus 1 s for the harness's polling) after the cut.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::history::{AgentState, Entry, Members, Record};

/// Slack for the harness's own latency: polling every 200 ms, reading streams, HTTP.
const SLACK_MS: u64 = 1000;

/// A property that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// 1 to 6, as in the [module](self) documentation.
    pub property: u8,
    /// The agent concerned (the observer or the node observed, as `what` says).
    pub agent: String,
    /// The window in which it should have held, in ms since the run started.
    pub from_ms: u64,
    /// Its end.
    pub to_ms: u64,
    /// The seed that reproduces the run.
    pub seed: u64,
    /// What happened instead.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "property {} ({}) violated for {} in {}..{} ms (seed {}): {}",
            self.property,
            property_name(self.property),
            self.agent,
            self.from_ms,
            self.to_ms,
            self.seed,
            self.what
        )
    }
}

/// A short name of property `p`.
pub fn property_name(p: u8) -> &'static str {
    match p {
        1 => "views equal the live set after a heal",
        2 => "no false leave",
        3 => "no duplicated join",
        4 => "etcd keys equal the live set",
        5 => "a crash is seen in time",
        6 => "no ready answer with a view older than the bound",
        _ => "unknown",
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The run's seed.
    pub seed: u64,
    /// Checks made, per property (index 0 is property 1).
    pub checks: [u64; 6],
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Rounds healed.
    pub rounds: u64,
    /// What failed.
    pub violations: Vec<Violation>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: u64 = self.faults.values().sum();
        writeln!(
            f,
            "seed {}: {} rounds, {faults} faults, {} violations",
            self.seed,
            self.rounds,
            self.violations.len()
        )?;
        for (kind, n) in &self.faults {
            writeln!(f, "  fault {kind}: {n}")?;
        }
        for (i, n) in self.checks.iter().enumerate() {
            writeln!(
                f,
                "  property {} ({}): {n} checks",
                i + 1,
                property_name(i as u8 + 1)
            )?;
        }
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// The run's bounds, from its `start` line.
#[derive(Debug, Clone, Copy, Default)]
struct Bounds {
    seed: u64,
    ttl: u64,
    grace: u64,
    fresh: u64,
}

/// Every agent's states over time, and the faults aimed at each.
#[derive(Default)]
struct Timeline {
    states: HashMap<String, Vec<(u64, AgentState)>>,
    /// Times of faults and heals aimed at an agent.
    touched: HashMap<String, Vec<u64>>,
    /// Times of faults and heals of the servers (scope `etcd`, and rounds' heals).
    servers: Vec<u64>,
    /// Times the etcd state was not calm, as (from, to).
    unsettled: Vec<(u64, u64)>,
    subscribed: HashMap<String, Vec<u64>>,
    ready: HashMap<String, Vec<(u64, bool)>>,
}

impl Timeline {
    fn build(entries: &[Entry]) -> Timeline {
        let mut tl = Timeline::default();
        let mut calm_since: Option<u64> = Some(0);
        for e in entries {
            match &e.record {
                Record::State { agents, etcd_calm } => {
                    for a in agents {
                        tl.states
                            .entry(a.name.clone())
                            .or_default()
                            .push((e.t_ms, a.clone()));
                    }
                    match (calm_since, etcd_calm) {
                        (Some(_), false) => {
                            tl.unsettled.push((e.t_ms, u64::MAX));
                            calm_since = None;
                        }
                        (None, true) => {
                            if let Some(last) = tl.unsettled.last_mut() {
                                last.1 = e.t_ms;
                            }
                            calm_since = Some(e.t_ms);
                        }
                        _ => {}
                    }
                }
                Record::Fault { scope, target, .. } | Record::Heal { scope, target, .. } => {
                    if scope == "etcd" || scope == "all" {
                        tl.servers.push(e.t_ms);
                    }
                    if let (Some(t), "agent") = (target, scope.as_str()) {
                        tl.touched.entry(t.clone()).or_default().push(e.t_ms);
                    }
                }
                Record::Subscribed { observer } => {
                    tl.subscribed
                        .entry(observer.clone())
                        .or_default()
                        .push(e.t_ms);
                }
                Record::Ready { agent, ready } => {
                    tl.ready
                        .entry(agent.clone())
                        .or_default()
                        .push((e.t_ms, *ready));
                }
                _ => {}
            }
        }
        tl
    }

    /// Whether `agent` was healthy for all of `from..=to`, and no fault of its own touched
    /// it then.
    fn steady(&self, agent: &str, from: u64, to: u64) -> bool {
        let Some(states) = self.states.get(agent) else {
            return false;
        };
        let at_from = states.iter().rev().find(|(t, _)| *t <= from);
        if !at_from.is_some_and(|(_, s)| s.healthy()) {
            return false;
        }
        let later_ok = states
            .iter()
            .filter(|(t, _)| *t > from && *t <= to)
            .all(|(_, s)| s.healthy());
        let touched = self
            .touched
            .get(agent)
            .is_some_and(|ts| ts.iter().any(|t| (from..=to).contains(t)));
        later_ok && !touched
    }

    /// Whether the servers were disturbed at any time in `from..=to`.
    fn servers_disturbed(&self, from: u64, to: u64) -> bool {
        self.servers.iter().any(|t| (from..=to).contains(t))
            || self.unsettled.iter().any(|(a, b)| *a <= to && *b >= from)
    }

    /// Whether `observer`'s current stream began before `t`, and lasted until `until`.
    fn subscribed_through(&self, observer: &str, t: u64, until: u64) -> bool {
        self.subscribed.get(observer).is_some_and(|ts| {
            ts.iter().any(|s| *s <= t) && !ts.iter().any(|s| *s > t && *s <= until)
        })
    }
}

/// Checks a whole history.
pub fn check(entries: &[Entry]) -> Report {
    let mut b = Bounds::default();
    let mut report = Report::default();
    for e in entries {
        match &e.record {
            Record::Start {
                seed,
                node_ttl_ms,
                grace_ms,
                fresh_bound_ms,
                ..
            } => {
                b = Bounds {
                    seed: *seed,
                    ttl: *node_ttl_ms,
                    grace: *grace_ms,
                    fresh: *fresh_bound_ms,
                };
            }
            Record::Fault { fault, .. } => *report.faults.entry(fault.clone()).or_default() += 1,
            Record::Heal { what, .. } if what == "all" => report.rounds += 1,
            _ => {}
        }
    }
    report.seed = b.seed;
    let tl = Timeline::build(entries);
    let mut found = Vec::new();
    report.checks[0] = converged(entries, &b, &mut found);
    report.checks[1] = no_false_leave(entries, &b, &tl, &mut found);
    report.checks[2] = no_double_join(entries, &b, &mut found);
    report.checks[3] = keys_match(entries, &b, &mut found);
    report.checks[4] = crashes_seen(entries, &b, &tl, &mut found);
    report.checks[5] = fresh_when_ready(entries, &b, &tl, &mut found);
    found.sort_by_key(|v| (v.from_ms, v.property));
    report.violations = found;
    report
}

fn show(members: &Members) -> String {
    let parts: Vec<String> = members.iter().map(|(n, i)| format!("{n}={i}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Property 1.
fn converged(entries: &[Entry], b: &Bounds, out: &mut Vec<Violation>) -> u64 {
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
fn no_false_leave(entries: &[Entry], b: &Bounds, tl: &Timeline, out: &mut Vec<Violation>) -> u64 {
    let mut checks = 0;
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
        checks += 1;
        let from = e.t_ms.saturating_sub(b.ttl + 2000);
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
fn no_double_join(entries: &[Entry], b: &Bounds, out: &mut Vec<Violation>) -> u64 {
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
fn keys_match(entries: &[Entry], b: &Bounds, out: &mut Vec<Violation>) -> u64 {
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
fn crashes_seen(entries: &[Entry], b: &Bounds, tl: &Timeline, out: &mut Vec<Violation>) -> u64 {
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
fn fresh_when_ready(entries: &[Entry], b: &Bounds, tl: &Timeline, out: &mut Vec<Violation>) -> u64 {
    let mut checks = 0;
    let _ = entries;
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
