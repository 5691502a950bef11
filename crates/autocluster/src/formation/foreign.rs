//! Noticing a second cluster: after formation, a running member of the same `cluster.name`
//! whose registration carries another cluster id is reported (log, counter, watch).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::NodeName;
use serde::{Deserialize, Serialize};

use super::FormationState;
use crate::engine::Shared;
use crate::view::{Status, View};

/// The longest cluster id kept from a peer; a longer one is cut (it is only compared).
const MAX_ID: usize = 128;

/// A member seen with another cluster id than this node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ForeignMember {
    /// The member.
    pub node: NodeName,
    /// The cluster id it carries (at most 128 characters, control characters escaped).
    pub cluster_id: String,
}

/// Members of `view` carrying another id than `ours`.
fn foreign(view: &View, ours: &str) -> BTreeMap<NodeName, String> {
    view.members()
        .filter(|e| e.status == Status::Running)
        .filter_map(|e| {
            let id = e.member.meta.as_ref()?.cluster_id.as_deref()?;
            let id: String = id.chars().take(MAX_ID).collect();
            // Shown in logs, hook environments and JSON: escaped (ids are hex; a peer's may
            // hold anything).
            (id != ours).then(|| (e.member.node.clone(), Escaped::new(id.as_str()).to_string()))
        })
        .collect()
}

/// Follows the view until the engine stops, publishing the foreign members: a task the
/// engine's supervisor owns.
pub(super) fn spawn(shared: Arc<Shared>, state: Arc<FormationState>, ours: String) {
    let owner = shared.clone();
    owner.spawn_owned("formation's second-cluster watch", Box::pin(async move {
        let mut rx = shared.view.subscribe();
        let mut known: BTreeMap<NodeName, String> = BTreeMap::new();
        loop {
            let now = foreign(&rx.borrow_and_update(), &ours);
            for (node, id) in &now {
                if known.get(node) == Some(id) {
                    continue;
                }
                state.sightings.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    node = %node,
                    their_cluster_id = %id,
                    our_cluster_id = %ours,
                    cluster = %Escaped::new(state.cluster_name.as_str()),
                    "two clusters formed: this member of the same cluster.name belongs to another \
                     cluster (see docs/formation.md, \"Two clusters\")"
                );
            }
            if now != known {
                let list = now
                    .iter()
                    .map(|(node, id)| ForeignMember {
                        node: node.clone(),
                        cluster_id: id.clone(),
                    })
                    .collect();
                state.foreign.send_replace(list);
                known = now;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = shared.cancel.cancelled() => return,
            }
        }
    }));
}
