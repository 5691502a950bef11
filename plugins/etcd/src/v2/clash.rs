//! Two processes with the same node name, in v2: the one refused leaves a marker with a TTL
//! under `/<prefix>/<cluster>/clash/<node>`; the holder's watch, which follows the whole
//! cluster directory, sees it and logs the attempt (see [`crate::clash`]). Also what the
//! watch does with the keys outside the nodes directory.

use autocluster_plugin::{Error, ErrorKind, Registration, Result, Revision, WatchBatch};
use reqwest::Method;

use super::client::{error, Request};
use super::wire::{secs, Node, Reply};
use super::Inner;
use crate::clash;
use crate::keys::encode_value;

/// How long the marker of a refused registration may take to write.
const MARKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Inner {
    /// The error for `reg`'s key held by another registration (`held`), after leaving the
    /// marker that tells the holder (best effort).
    pub(super) async fn refuse(&self, op: &'static str, reg: &Registration, held: &Node) -> Error {
        let marker = self.layout.clash_key(&reg.node);
        let form = [
            (
                "value",
                String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned(),
            ),
            ("ttl", secs(self.cfg().node_ttl)),
        ];
        let put = self
            .client
            .call(op, Request::new(Method::PUT, &marker).form(&form));
        let _ = tokio::time::timeout(MARKER_TIMEOUT, put).await;
        let key = self.layout.node_key(&reg.node);
        let holder = format!("createdIndex {}", held.created_index);
        clash::conflict(op, &reg.node, &key, &holder, held.ttl)
    }

    /// A change the cluster-directory watch saw outside the nodes directory: `None` when the
    /// change is under it (the caller maps it), else what to pass on: a progress notice
    /// (this node's clash marker is logged), or `Compacted` when the nodes directory went with
    /// a directory above it.
    pub(super) fn outside_nodes(&self, r: &Reply) -> Option<Result<Option<WatchBatch>>> {
        let node = r.body.node.as_ref()?;
        let key = node.key.as_deref().unwrap_or("");
        let nodes = self.layout.nodes_dir();
        if key == nodes || key.starts_with(&format!("{nodes}/")) {
            return None;
        }
        let action = r.body.action.as_deref().unwrap_or("");
        let deleted = matches!(action, "delete" | "expire" | "compareAndDelete");
        if deleted && nodes.starts_with(&format!("{key}/")) {
            return Some(Err(error(
                ErrorKind::Compacted,
                "watch",
                &r.endpoint,
                format!("the directory {key} was deleted, and the nodes in it"),
            )
            .with_key(nodes)));
        }
        let created = matches!(action, "set" | "create" | "update" | "compareAndSwap");
        if created && key == self.layout.clash_key(&self.node) {
            let value = node.value.as_deref().unwrap_or("");
            let other = format!("createdIndex {}", node.created_index);
            self.attempts
                .log(&self.node, key.as_bytes(), value.as_bytes(), &other);
        }
        Some(Ok(Some(WatchBatch {
            revision: Revision(node.modified_index),
            changes: Vec::new(),
        })))
    }
}
