//! Counters the engine keeps for metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use autocluster_plugin::ErrorKind;

use crate::view::EventKind;

/// Counters since start: backend calls by operation and outcome, events by kind, lease
/// renewals.
#[derive(Debug, Default)]
pub struct Stats {
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Joined events.
    pub joined: AtomicU64,
    /// Left events.
    pub left: AtomicU64,
    /// Updated events.
    pub updated: AtomicU64,
    /// Keep-alives that succeeded.
    pub renewals: AtomicU64,
    /// Keep-alives that failed.
    pub renewal_failures: AtomicU64,
    /// Registrations written (the first, and each after a loss).
    pub registrations: AtomicU64,
    /// Full resyncs after a gap or compaction.
    pub resyncs: AtomicU64,
    /// Watches reopened because they said nothing for several progress periods.
    pub watch_silences: AtomicU64,
    /// Engine tasks that panicked or ended unexpectedly.
    pub task_failures: AtomicU64,
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
}
