//! The v3 watch of the nodes prefix: one stream from a revision on, its batches mapped to
//! changes, compaction and a wiped etcd reported as `Compacted`.

use std::sync::Arc;

use autocluster_plugin::{
    BoxStream, Change, Error, ErrorKind, Incarnation, Result, Revision, WatchBatch,
};
use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};

use super::core::MAX_MESSAGE;
use super::Shared;
use crate::NAME;

/// The watch of the nodes prefix from `after` on, as a stream of batches.
pub(super) fn watch(shared: Arc<Shared>, after: Revision) -> BoxStream<Result<WatchBatch>> {
    let stream = futures::stream::unfold(WatchState::Start, move |state| {
        let shared = shared.clone();
        async move {
            let mut ws = match state {
                WatchState::Done => return None,
                WatchState::Open(ws) => ws,
                WatchState::Start => match shared.open_watch(after).await {
                    Ok(ws) => Box::new(ws),
                    Err(e) => return Some((Err(e), WatchState::Done)),
                },
            };
            match shared.next_batch(&mut ws, after).await {
                Some(Ok(b)) => Some((Ok(b), WatchState::Open(ws))),
                Some(Err(e)) => Some((Err(e), WatchState::Done)),
                None => None,
            }
        }
    });
    Box::pin(stream)
}

enum WatchState {
    Start,
    Open(Box<Open>),
    Done,
}

/// An open watch stream and the endpoint it is on.
struct Open {
    endpoint: usize,
    stream: WatchStream,
}

impl Shared {
    fn err(&self, e: etcd_client::Error, endpoint: usize) -> Error {
        self.core.error(e, "watch", endpoint)
    }

    fn compacted(&self, message: String) -> Error {
        Error::new(ErrorKind::Compacted, message)
            .with_backend(NAME)
            .with_operation("watch")
            .with_key(self.layout.nodes_prefix())
    }

    async fn open_watch(&self, after: Revision) -> Result<Open> {
        let start = after.0.saturating_add(1).min(i64::MAX as u64) as i64;
        let prefix = self.layout.nodes_prefix();
        let (endpoint, stream) = self
            .core
            .open("watch", |c| {
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start)
                    .with_progress_notify()
                    .with_prev_key();
                let mut w = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
                async move { w.watch(prefix, Some(opts)).await }
            })
            .await
            .map_err(|e| e.with_key(prefix))?;
        Ok(Open { endpoint, stream })
    }

    /// The next batch (or progress notice) of the watch; `None` when the stream ended.
    async fn next_batch(&self, ws: &mut Open, after: Revision) -> Option<Result<WatchBatch>> {
        let resp = match ws.stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => return Some(Err(self.err(e, ws.endpoint))),
        };
        if resp.compact_revision() > 0 {
            return Some(Err(self.compacted(format!(
                    "etcd compacted its history up to revision {}; the watch asked for revisions after {}",
                    resp.compact_revision(),
                    after.0
                ))));
        }
        let revision = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
        if resp.canceled() {
            let reason = resp.cancel_reason().to_string();
            let e = if reason.contains("permission denied") {
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("etcd cancelled the watch: {reason}"),
                )
            } else {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("etcd cancelled the watch: {reason}"),
                )
            };
            return Some(Err(e.with_backend(NAME).with_operation("watch")));
        }
        if resp.created() {
            if revision < after.0 {
                return Some(Err(self.compacted(format!(
                        "etcd's revision {revision} is behind the watch's {}: etcd was wiped or replaced",
                        after.0
                    ))));
            }
            // The watch is established: say so at once, claiming no progress beyond
            // `after` (events between `after` and the header's revision may follow).
            return Some(Ok(WatchBatch {
                revision: after,
                changes: Vec::new(),
            }));
        }
        Some(Ok(self.batch(&resp, revision)))
    }

    fn batch(&self, resp: &WatchResponse, header_revision: u64) -> WatchBatch {
        let mut changes = Vec::with_capacity(resp.events().len());
        let mut revision = header_revision;
        if let Some(last) = resp.events().last().and_then(|e| e.kv()) {
            revision = last.mod_revision().max(0) as u64;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            // `Event::event_type` panics on a type it does not know: read the raw one.
            match EventType::try_from(ev.0.r#type) {
                Ok(EventType::Put) => match self.layout.member(
                    kv.key(),
                    kv.value(),
                    kv.lease() as u64,
                    kv.create_revision(),
                ) {
                    Ok(m) => changes.push(Change::Put(m)),
                    Err(why) => {
                        self.garbage.skip(NAME, kv.key(), &why);
                        // A node's key overwritten with garbage registers that node no
                        // more, as a snapshot would say: without this, nodes that saw the
                        // overwrite keep the member and nodes that start later do not.
                        if let Ok(node) = self.layout.node_of(kv.key()) {
                            changes.push(Change::Delete {
                                node,
                                incarnation: None,
                            });
                        }
                    }
                },
                Ok(EventType::Delete) => {
                    // A deleted garbage key was counted when it was written.
                    if let Ok(node) = self.layout.node_of(kv.key()) {
                        let incarnation = ev.prev_kv().map(|p| Incarnation(p.lease() as u64));
                        changes.push(Change::Delete { node, incarnation });
                    }
                }
                Err(_) => self
                    .garbage
                    .skip(NAME, kv.key(), "a watch event of an unknown type"),
            }
        }
        WatchBatch {
            revision: Revision(revision),
            changes,
        }
    }
}
