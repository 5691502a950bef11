//! The application's own map of running members, kept from events alone.

use std::collections::BTreeMap;

use autocluster::{Event, EventKind, Member, NodeName, Status, View};

/// Running members by node, as an application would keep them (to route requests, to own
/// shards, ...).
#[derive(Debug, Default)]
pub struct Members {
    by_node: BTreeMap<NodeName, Member>,
}

impl Members {
    /// The running members of a view: the starting point, and the recovery after a lag.
    pub fn from_view(view: &View) -> Self {
        Members {
            by_node: running(view),
        }
    }

    /// Applies one event. Idempotent: a `Joined` for a member already present replaces it,
    /// a `Left` for one already gone does nothing.
    pub fn apply(&mut self, event: &Event) {
        match event.kind {
            EventKind::Joined | EventKind::Updated => {
                self.by_node
                    .insert(event.node.clone(), event.member.clone());
            }
            EventKind::Left => {
                // Remove only the life that left: when the first view already showed a
                // restarted node's new life, the queued `Left` of its old life must not
                // remove it (its `Joined` follows and is applied again).
                if self
                    .by_node
                    .get(&event.node)
                    .is_some_and(|m| m.incarnation == event.member.incarnation)
                {
                    self.by_node.remove(&event.node);
                }
            }
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    /// The node names, comma separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.by_node.keys().map(NodeName::as_str).collect();
        format!("[{}]", names.join(", "))
    }

    /// `None` when the map holds exactly the view's running members, with the same
    /// incarnations and metadata; otherwise what differs. (A member's `ttl` and `created` are
    /// refreshed in the view without an event, so they are not compared.)
    pub fn diff(&self, view: &View) -> Option<String> {
        let truth = running(view);
        let mut out = Vec::new();
        for (node, member) in &self.by_node {
            match truth.get(node) {
                None => out.push(format!("{node} only in the map")),
                Some(m) if m.incarnation != member.incarnation || m.meta != member.meta => {
                    out.push(format!("{node}: {}", fields(member, m)))
                }
                Some(_) => {}
            }
        }
        for node in truth.keys().filter(|n| !self.by_node.contains_key(*n)) {
            out.push(format!("{node} only in the view"));
        }
        (!out.is_empty()).then(|| out.join(", "))
    }
}

/// Which fields of `mine` differ from the view's `theirs`.
fn fields(mine: &Member, theirs: &Member) -> String {
    let mut out = Vec::new();
    if mine.incarnation != theirs.incarnation {
        out.push(format!(
            "incarnation {} in the map, {} in the view",
            mine.incarnation, theirs.incarnation
        ));
    }
    if mine.meta != theirs.meta {
        out.push(format!(
            "metadata {:?} in the map, {:?} in the view",
            mine.meta, theirs.meta
        ));
    }
    out.join("; ")
}

fn running(view: &View) -> BTreeMap<NodeName, Member> {
    view.members()
        .filter(|e| e.status == Status::Running)
        .map(|e| (e.member.node.clone(), e.member.clone()))
        .collect()
}
