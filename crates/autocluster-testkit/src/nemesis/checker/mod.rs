//! Reads a history ([`super::history`]) and proves the six properties, or names where they
//! fail: the property, the agent, the time window, and the seed that reproduces the run.
//!
//! 1. After each round's heal, every agent's running members equal the truth (names and
//!    incarnations) within `node_ttl + grace + 1 s` of the heal.
//! 2. No agent is seen `left` while it was live, running, connected and untouched by any
//!    fault of its own for the `node_ttl + 2 s` before (on multicast, by an observer that
//!    was itself so: one that cannot hear expires what it misses).
//! 3. No observer sees one incarnation join twice without a leave between (per stream).
//! 4. After each round, the node keys in etcd equal the truth (names and leases).
//! 5. An agent killed (SIGKILL) after 2 s of health is seen `left` by every agent that stayed
//!    healthy and untouched, within `node_ttl + 1 s`, unless the servers were disturbed.
//! 6. An agent cut from etcd does not answer ready longer than the freshness bound (plus 1 s
//!    for the harness's polling) after the cut. (Not on multicast: a node that listens is
//!    fresh there, as `docs/operations.md` says.)

use std::collections::BTreeMap;
use std::fmt;

use super::history::{Entry, Record};

mod properties;
mod timeline;

use timeline::Timeline;

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
pub(crate) struct Bounds {
    pub(crate) seed: u64,
    pub(crate) ttl: u64,
    pub(crate) grace: u64,
    pub(crate) fresh: u64,
    /// Property 6 holds on etcd only: a multicast node is fresh while it listens.
    pub(crate) etcd: bool,
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
                backend,
                ..
            } => {
                b = Bounds {
                    seed: *seed,
                    ttl: *node_ttl_ms,
                    grace: *grace_ms,
                    fresh: *fresh_bound_ms,
                    etcd: backend == "etcd",
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
    report.checks[0] = properties::converged(entries, &b, &mut found);
    report.checks[1] = properties::no_false_leave(entries, &b, &tl, &mut found);
    report.checks[2] = properties::no_double_join(entries, &b, &mut found);
    report.checks[3] = properties::keys_match(entries, &b, &mut found);
    report.checks[4] = properties::crashes_seen(entries, &b, &tl, &mut found);
    if b.etcd {
        report.checks[5] = properties::fresh_when_ready(&b, &tl, &mut found);
    }
    found.sort_by_key(|v| (v.from_ms, v.property));
    report.violations = found;
    report
}
