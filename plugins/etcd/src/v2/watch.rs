//! The v2 watch: a chain of `?wait=true&recursive=true` long polls on the nodes directory,
//! each from the index after the last change, mapped to changes.

use std::sync::Arc;

use autocluster_plugin::{BoxStream, Change, ErrorKind, Incarnation, Result, Revision, WatchBatch};
use reqwest::Method;

use super::client::{error, Request};
use super::snapshot::Seen;
use super::wire::etcd_index;
use super::Inner;

/// Where a v2 watch stands.
enum Poll {
    /// Poll next from this index.
    Next(u64),
    /// A long poll from this index is established; its body is awaited.
    Pending(u64, Box<reqwest::Response>, String),
    /// The watch broke.
    Done,
}

/// The watch of the nodes directory from `after` on, as a stream of batches.
pub(super) fn watch(inner: Arc<Inner>, after: Revision) -> BoxStream<Result<WatchBatch>> {
    let start = (Poll::Next(after.0 + 1), false);
    let stream = futures::stream::unfold(start, move |(mut state, announced)| {
        let inner = inner.clone();
        async move {
            loop {
                state = match state {
                    Poll::Done => return None,
                    Poll::Next(index) => match inner.poll(index, after).await {
                        // The first established poll is announced at once (claiming no
                        // progress beyond `after`), so the engine knows the watch is up.
                        Ok((resp, ep)) if !announced && resp.status().is_success() => {
                            let up = WatchBatch {
                                revision: after,
                                changes: Vec::new(),
                            };
                            let next = Poll::Pending(index, Box::new(resp), ep);
                            return Some((Ok(up), (next, true)));
                        }
                        Ok((resp, ep)) => Poll::Pending(index, Box::new(resp), ep),
                        Err(e) => return Some((Err(e), (Poll::Done, announced))),
                    },
                    Poll::Pending(index, resp, ep) => match inner.finish(*resp, ep).await {
                        Ok(None) => Poll::Next(index),
                        Ok(Some(b)) => {
                            let next = Poll::Next(b.revision.0 + 1);
                            return Some((Ok(b), (next, announced)));
                        }
                        Err(e) => return Some((Err(e), (Poll::Done, announced))),
                    },
                };
            }
        }
    });
    Box::pin(stream)
}

impl Inner {
    /// Starts a long poll for the next change under `nodes` at or after `index`; returns
    /// once etcd sent the headers (the watch is established), the body comes with a change.
    async fn poll(&self, index: u64, after: Revision) -> Result<(reqwest::Response, String)> {
        let dir = self.layout.nodes_dir();
        let query = [
            ("wait", "true".to_string()),
            ("recursive", "true".to_string()),
            ("waitIndex", index.to_string()),
        ];
        let (resp, endpoint) = self
            .client
            .open("watch", Request::new(Method::GET, dir).query(&query))
            .await?;
        let current = etcd_index(&resp);
        if current > 0 && current < after.0 {
            return Err(error(
                ErrorKind::Compacted,
                "watch",
                &endpoint,
                format!(
                    "etcd's index {current} is behind the watch's {}: etcd was wiped or replaced",
                    after.0
                ),
            )
            .with_key(dir));
        }
        Ok((resp, endpoint))
    }

    /// The change a long poll answered; `Ok(None)` when it ended without one (poll again).
    async fn finish(
        &self,
        resp: reqwest::Response,
        endpoint: String,
    ) -> Result<Option<WatchBatch>> {
        let dir = self.layout.nodes_dir();
        let r = self.client.read("watch", resp, endpoint).await?;
        if r.code().is_some() {
            return Err(r.unexpected("watch", dir));
        }
        let Some(node) = &r.body.node else {
            return Ok(None);
        };
        let action = r.body.action.as_deref().unwrap_or("");
        let revision = Revision(node.modified_index);
        let mut changes = Vec::new();
        let key = node.key.as_deref().unwrap_or("");
        match action {
            "set" | "create" | "update" | "compareAndSwap" => {
                let prev = r.body.prev_node.as_ref();
                if let Some(m) = self.member_of(node, Seen::Written { prev }) {
                    changes.push(Change::Put(m));
                } else if let Ok(n) = self.layout.node_of(key.as_bytes()) {
                    // A node's key overwritten with garbage registers that node no more, as
                    // a snapshot would say.
                    self.lives.ended(&n, None);
                    changes.push(Change::Delete {
                        node: n,
                        incarnation: None,
                    });
                }
            }
            "delete" | "expire" | "compareAndDelete" => {
                if key.trim_end_matches('/') == dir {
                    // The whole directory went: its members with it. Resync.
                    return Err(error(
                        ErrorKind::Compacted,
                        "watch",
                        &r.endpoint,
                        format!("the directory {dir} was deleted"),
                    )
                    .with_key(dir));
                }
                if let Ok(n) = self.layout.node_of(key.as_bytes()) {
                    let prev = r.body.prev_node.as_ref().map(|p| p.created_index);
                    let incarnation = self.lives.ended(&n, prev).map(Incarnation);
                    changes.push(Change::Delete {
                        node: n,
                        incarnation,
                    });
                }
            }
            _ => {}
        }
        Ok(Some(WatchBatch { revision, changes }))
    }
}
