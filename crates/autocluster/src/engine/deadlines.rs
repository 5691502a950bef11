//! A set of per-node deadlines: set, move, cancel and pop in O(log n).

use std::collections::{BTreeSet, HashMap};

use autocluster_plugin::NodeName;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    by_node: HashMap<NodeName, Instant>,
    queue: BTreeSet<(Instant, NodeName)>,
}

impl Deadlines {
    /// Sets (or moves) `node`'s deadline to `at`.
    pub fn set(&mut self, node: &NodeName, at: Instant) {
        if let Some(old) = self.by_node.insert(node.clone(), at) {
            self.queue.remove(&(old, node.clone()));
        }
        self.queue.insert((at, node.clone()));
    }

    /// Cancels `node`'s deadline; true if it had one.
    pub fn remove(&mut self, node: &NodeName) -> bool {
        match self.by_node.remove(node) {
            Some(at) => {
                self.queue.remove(&(at, node.clone()));
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, node: &NodeName) -> bool {
        self.by_node.contains_key(node)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns the nodes whose deadline is at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<NodeName> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            if let Some((_, node)) = self.queue.pop_first() {
                self.by_node.remove(&node);
                due.push(node);
            }
        }
        due
    }

    /// Moves every deadline at or before `now` to `to`; returns how many moved.
    pub fn postpone_due(&mut self, now: Instant, to: Instant) -> usize {
        let due = self.pop_due(now);
        for node in &due {
            self.set(node, to);
        }
        due.len()
    }
}
