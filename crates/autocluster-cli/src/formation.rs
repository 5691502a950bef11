//! The agent's formation: run when the configuration sets any `cluster.formation.*` key
//! (formation writes a record into etcd and makes a decision hooks act on, so an agent
//! does it only when asked), logged, and shown in `status`, `/status`, `/formation` and to
//! hooks.

use std::collections::VecDeque;

use autocluster::plugin::Origin;
use autocluster::{Cluster, ForeignMember, Settings};
use tokio::sync::watch;

/// The keys that switch formation on.
const KEYS: &[&str] = &[
    "cluster.formation.min_members",
    "cluster.formation.stable_for",
    "cluster.formation.timeout",
    "cluster.formation.new_cluster",
];

/// Whether the configuration asks for formation: a `cluster.formation.*` key is set.
pub fn configured(settings: &Settings) -> bool {
    KEYS.iter()
        .any(|k| settings.get(k).is_some_and(|s| s.origin != Origin::Default))
}

/// Starts formation in the background; a failure is logged (and shown in `status`), and
/// the agent keeps serving the membership.
pub fn spawn(cluster: &Cluster) {
    let task = cluster.spawn_form();
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(f)) => tracing::info!(
                "formation: {} {} (cluster id {})",
                f.role.as_str(),
                f.target,
                f.cluster_id
            ),
            Ok(Err(e)) => tracing::error!("formation failed: {e}"),
            Err(e) => tracing::error!("formation task ended: {e}"),
        }
    });
}

/// The formation lines of `autocluster status`: the decision (or why it failed), and a
/// warning per member of another cluster.
pub fn status_lines(report: &autocluster::StatusReport) -> String {
    use autocluster::plugin::log::Escaped;
    use std::fmt::Write as _;
    let mut out = String::new();
    match (&report.formation, &report.formation_error) {
        (Some(f), _) => {
            let how = match f.role {
                autocluster::Role::Seed => "seed (this node starts the cluster)".to_string(),
                autocluster::Role::Join => format!("join {}", f.target),
            };
            let existing = if f.existing { ", formed earlier" } else { "" };
            let _ = writeln!(
                out,
                "formation: {how}; cluster id {}{existing}",
                Escaped::new(f.cluster_id.as_str())
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "formation: failed: {}", Escaped::new(e.as_str()));
        }
        (None, None) => {}
    }
    for m in &report.foreign_members {
        let _ = writeln!(
            out,
            "warning: {} belongs to another cluster (id {}): two clusters formed; see docs/formation.md",
            m.node,
            Escaped::new(m.cluster_id.as_str())
        );
    }
    out
}

/// Follows the members seen in another cluster, and yields each newly seen one once (again
/// only after it was gone from the list).
pub struct ForeignFollow {
    rx: watch::Receiver<Vec<ForeignMember>>,
    listed: Vec<ForeignMember>,
    backlog: VecDeque<ForeignMember>,
}

impl ForeignFollow {
    /// From `rx`: the members it lists now come first.
    pub fn new(mut rx: watch::Receiver<Vec<ForeignMember>>) -> Self {
        rx.mark_changed();
        ForeignFollow {
            rx,
            listed: Vec::new(),
            backlog: VecDeque::new(),
        }
    }

    /// The next member newly seen in another cluster; pending while there is none (and
    /// forever once the cluster stopped).
    pub async fn next(&mut self) -> ForeignMember {
        loop {
            if let Some(m) = self.backlog.pop_front() {
                return m;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            let now = self.rx.borrow_and_update().clone();
            for m in &now {
                if !self.listed.contains(m) {
                    self.backlog.push_back(m.clone());
                }
            }
            self.listed = now;
        }
    }
}
