//! Counters the engine keeps for metrics. Only the engine writes them; everyone else reads
//! them through the getters (or through [`crate::metrics`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use autocluster_plugin::ErrorKind;

use crate::view::EventKind;

/// Counters since start: backend calls by operation and outcome, events by kind, lease
/// renewals. Read-only outside the engine.
#[derive(Debug, Default)]
pub struct Stats {
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    joined: AtomicU64,
    left: AtomicU64,
    updated: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) renewal_failures: AtomicU64,
    pub(crate) registrations: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) watch_silences: AtomicU64,
    pub(crate) expiries_postponed: AtomicU64,
    task_failures: AtomicU64,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Stats {
    pub(crate) fn call(&self, operation: &'static str, error: Option<ErrorKind>) {
        let outcome = error.map_or("ok", ErrorKind::as_str);
        if let Ok(mut m) = self.calls.lock() {
            *m.entry((operation, outcome)).or_default() += 1;
        }
    }

    pub(crate) fn event(&self, kind: EventKind) {
        let c = match kind {
            EventKind::Joined => &self.joined,
            EventKind::Left => &self.left,
            EventKind::Updated => &self.updated,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn task_failure(&self) {
        self.task_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Backend calls so far: `((operation, outcome), count)`, outcome `ok` or an error kind.
    pub fn calls(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.calls
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// `Joined` events so far.
    pub fn joined(&self) -> u64 {
        get(&self.joined)
    }

    /// `Left` events so far.
    pub fn left(&self) -> u64 {
        get(&self.left)
    }

    /// `Updated` events so far.
    pub fn updated(&self) -> u64 {
        get(&self.updated)
    }

    /// Keep-alives of this node's registration that succeeded.
    pub fn renewals(&self) -> u64 {
        get(&self.renewals)
    }

    /// Keep-alives of this node's registration that failed.
    pub fn renewal_failures(&self) -> u64 {
        get(&self.renewal_failures)
    }

    /// Registrations written: the first, and one after each loss.
    pub fn registrations(&self) -> u64 {
        get(&self.registrations)
    }

    /// Full resyncs after a gap or a compaction.
    pub fn resyncs(&self) -> u64 {
        get(&self.resyncs)
    }

    /// Watches reopened because they said nothing for several progress periods.
    pub fn watch_silences(&self) -> u64 {
        get(&self.watch_silences)
    }

    /// Member TTL expiries postponed because this node itself had not run (paused or
    /// starved of CPU) when they fell due.
    pub fn expiries_postponed(&self) -> u64 {
        get(&self.expiries_postponed)
    }

    /// Engine tasks that panicked or ended on their own.
    pub fn task_failures(&self) -> u64 {
        get(&self.task_failures)
    }
}
