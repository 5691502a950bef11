//! Every agent's states over time, the faults aimed at each, readiness, streams.

use std::collections::HashMap;

use super::super::history::{AgentState, Entry, Record};

/// Every agent's states over time, and the faults aimed at each.
#[derive(Default)]
pub(crate) struct Timeline {
    pub(crate) states: HashMap<String, Vec<(u64, AgentState)>>,
    /// Times of faults and heals aimed at an agent.
    pub(crate) touched: HashMap<String, Vec<u64>>,
    /// Times of faults and heals of the servers (scope `etcd`, and rounds' heals).
    pub(crate) servers: Vec<u64>,
    /// Times the etcd state was not calm, as (from, to).
    pub(crate) unsettled: Vec<(u64, u64)>,
    pub(crate) subscribed: HashMap<String, Vec<u64>>,
    pub(crate) ready: HashMap<String, Vec<(u64, bool)>>,
    /// Each agent's own incarnation over time, as it showed it itself (its own entry in its
    /// view or its own events, while it answered ready) or the harness's truth took it, each
    /// change once; an empty incarnation from a crash or a clean leave until it shows its
    /// new life (a life not yet registered has nothing to lose).
    pub(crate) own: HashMap<String, Vec<(u64, String)>>,
}

/// A process life ended (`kill_agent`, `leave_agent`): what it shows of itself afterwards is
/// only to be believed once it answers ready again, as a new process may see its former
/// life's key in its own view while that key's lease runs out.
fn ends_a_life(what: &str) -> bool {
    matches!(what, "kill_agent" | "leave_agent")
}

impl Timeline {
    pub(crate) fn build(entries: &[Entry]) -> Timeline {
        let mut tl = Timeline::default();
        let mut calm_since: Option<u64> = Some(0);
        // Whether an agent answered ready since its last life ended (or ever): only then is
        // its own entry in its view, or its own join, its current life.
        let mut believed: HashMap<&str, bool> = HashMap::new();
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
                Record::Fault {
                    scope,
                    target,
                    fault: what,
                }
                | Record::Heal {
                    scope,
                    target,
                    what,
                } => {
                    if scope == "etcd" || scope == "all" {
                        tl.servers.push(e.t_ms);
                    }
                    if let (Some(t), "agent") = (target, scope.as_str()) {
                        tl.touched.entry(t.clone()).or_default().push(e.t_ms);
                        if ends_a_life(what) {
                            believed.insert(t, false);
                            tl.saw_own(t, e.t_ms, "");
                        }
                    }
                }
                Record::Subscribed { observer } => {
                    tl.subscribed
                        .entry(observer.clone())
                        .or_default()
                        .push(e.t_ms);
                }
                Record::Ready { agent, ready } => {
                    if *ready {
                        believed.insert(agent, true);
                    }
                    tl.ready
                        .entry(agent.clone())
                        .or_default()
                        .push((e.t_ms, *ready));
                }
                Record::View { observer, members } => {
                    let inc = members.get(observer);
                    if let Some(inc) =
                        inc.filter(|_| believed.get(observer.as_str()) != Some(&false))
                    {
                        tl.saw_own(observer, e.t_ms, inc);
                    }
                }
                Record::Event {
                    observer,
                    event,
                    node,
                    incarnation,
                    ..
                } if observer == node
                    && event != "left"
                    && believed.get(node.as_str()) != Some(&false) =>
                {
                    tl.saw_own(node, e.t_ms, incarnation);
                }
                Record::Truth { members, .. } => {
                    for (node, inc) in members {
                        believed.insert(node, true);
                        tl.saw_own(node, e.t_ms, inc);
                    }
                }
                _ => {}
            }
        }
        tl
    }

    fn saw_own(&mut self, agent: &str, t: u64, incarnation: &str) {
        let lives = self.own.entry(agent.to_string()).or_default();
        if lives.last().is_none_or(|(_, inc)| inc != incarnation) {
            lives.push((t, incarnation.to_string()));
        }
    }

    /// The incarnation `agent` itself had at `t`, as far as the history shows it (empty: its
    /// life ended and the next one has not shown itself yet).
    pub(crate) fn own_incarnation(&self, agent: &str, t: u64) -> Option<&str> {
        let lives = self.own.get(agent)?;
        let (_, inc) = lives.iter().rev().find(|(at, _)| *at <= t)?;
        Some(inc)
    }

    /// Whether `agent` was healthy for all of `from..=to`, and no fault of its own touched
    /// it then.
    pub(crate) fn steady(&self, agent: &str, from: u64, to: u64) -> bool {
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
    pub(crate) fn servers_disturbed(&self, from: u64, to: u64) -> bool {
        self.servers.iter().any(|t| (from..=to).contains(t))
            || self.unsettled.iter().any(|(a, b)| *a <= to && *b >= from)
    }

    /// Whether `observer`'s current stream began before `t`, and lasted until `until`.
    pub(crate) fn subscribed_through(&self, observer: &str, t: u64, until: u64) -> bool {
        self.subscribed.get(observer).is_some_and(|ts| {
            ts.iter().any(|s| *s <= t) && !ts.iter().any(|s| *s > t && *s <= until)
        })
    }
}
