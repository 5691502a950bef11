//! The v3 watch of the nodes prefix: one stream from a revision on, its batches mapped to
//! changes, compaction and a wiped etcd reported as `Compacted`.
//!
//! Nothing the engine does not need is asked for: no previous values (a delete's
//! incarnation is not needed: events come in order, so a delete removes the life the view
//! holds for that key), which etcd 3.4 serves slowly for large deletes, and which would
//! carry every deleted value. Large revisions come in fragments, read whole before they are
//! passed on. Progress requests tell a watch that falls behind etcd (see [`Progress`]);
//! the same stream carries a second watcher, on this node's clash marker (see
//! [`crate::clash`]). Bursts of changes are read in batches from etcd's history (see
//! [`Coalesce`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{
    BoxStream, Change, Error, ErrorKind, NodeName, Result, Revision, Snapshot, WatchBatch,
};
use etcd_client::{
    EventType, WatchOptions, WatchRequestSender, WatchResponse, WatchResponseStream,
};
use tokio::time::{sleep_until, Instant};

use super::coalesce::Coalesce;
use super::core::MAX_MESSAGE;
use super::progress::{Progress, Tick};
use super::Shared;
use crate::NAME;

/// The watch of the nodes prefix from `after` on (and of `me`'s clash marker), as a stream
/// of batches.
pub(super) fn watch(
    shared: Arc<Shared>,
    me: Option<NodeName>,
    after: Revision,
) -> BoxStream<Result<WatchBatch>> {
    let stream = futures::stream::unfold(WatchState::Start, move |state| {
        let (shared, me) = (shared.clone(), me.clone());
        async move {
            let mut open = match state {
                WatchState::Done => return None,
                WatchState::Open(open) => open,
                WatchState::Start => match shared.take_prepared(&me, after) {
                    Some(open) => open,
                    None => match shared.open_watch(me, Some(after)).await {
                        Ok(open) => Box::new(open),
                        Err(e) => return Some((Err(e), WatchState::Done)),
                    },
                },
            };
            match open.next(&shared).await {
                Some(Ok(b)) => Some((Ok(b), WatchState::Open(open))),
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

/// A watch opened from etcd's revision of the moment, before a snapshot was read, for the
/// watch that resumes after that snapshot.
///
/// etcd counts a watcher that starts in the past as unsynced and catches it up from its
/// history, under the lock its writes need to notify watchers: a thousand nodes that start
/// at once, each reading the prefix and then watching from the revision it read, are a
/// thousand such catch-ups while their registrations are written, and etcd's apply falls
/// behind (it then refuses keep-alives: "waiting for the applied index took too long").
/// A watcher that starts now is synced from its first moment. Opened before the read, it
/// misses nothing; what it brings up to the snapshot's revision is dropped.
#[derive(Debug)]
pub(super) struct Prepared {
    me: Option<NodeName>,
    open: Box<Open>,
}

/// An open watch stream.
#[derive(Debug)]
struct Open {
    /// The endpoint the stream is on.
    endpoint: usize,
    sender: WatchRequestSender,
    responses: WatchResponseStream,
    after: Revision,
    /// The revision passed on so far (`after` until the first change).
    last: Revision,
    /// The node whose clash marker the second watcher follows.
    me: Option<NodeName>,
    /// The watchers' ids, once etcd created them (`nodes_id` is `None` again while the
    /// nodes watcher is paused).
    nodes_id: Option<i64>,
    clash_id: Option<i64>,
    /// The clash marker's watcher was asked for and etcd has not answered yet.
    clash_pending: bool,
    /// The changes of a revision whose fragments are still coming.
    fragments: Vec<Change>,
    progress: Progress,
    /// Events up to this revision are dropped (a prepared watch: the snapshot has them; a
    /// reopened watcher: they were passed on).
    skip_through: i64,
    /// Bursts of changes read in batches.
    coalesce: Coalesce,
}

impl Shared {
    fn compacted(&self, message: String) -> Error {
        Error::new(ErrorKind::Compacted, message)
            .with_backend(NAME)
            .with_operation("watch")
            .with_key(self.layout.nodes_prefix())
    }

    /// A broken stream: a message too large to decode is a revision this client cannot
    /// read, which a snapshot skips: resync.
    fn stream_error(&self, e: etcd_client::Error, endpoint: usize) -> Error {
        let e = self.core.error(e, "watch", endpoint);
        if super::snapshot::too_large(&e) {
            return self.compacted(format!("{e}: resyncing from a snapshot, which skips it"));
        }
        e
    }

    /// The watch from `after` on, or (`None`) from etcd's revision when it is created.
    async fn open_watch(&self, me: Option<NodeName>, after: Option<Revision>) -> Result<Open> {
        let start = after.map(|a| a.0.saturating_add(1).min(i64::MAX as u64) as i64);
        let after = after.unwrap_or(Revision(0));
        let prefix = self.layout.nodes_prefix();
        let (endpoint, stream) = self
            .core
            .open("watch", |c| {
                let opts = nodes_options(start);
                let mut w = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
                async move { w.watch(prefix, Some(opts)).await }
            })
            .await
            .map_err(|e| e.with_key(prefix))?;
        let (mut sender, responses) = stream.split();
        if let Some(me) = &me {
            // From now on: a watcher that starts in the past on a quiet key keeps some etcd
            // versions from answering the stream's progress requests (see `progress`).
            let marker = self.layout.clash_key(me);
            sender
                .watch(marker, None)
                .await
                .map_err(|e| self.core.error(e, "watch", endpoint))?;
        }
        let t = self.core.cfg().timeouts();
        Ok(Open {
            endpoint,
            sender,
            responses,
            after,
            last: after,
            clash_pending: me.is_some(),
            me,
            nodes_id: None,
            clash_id: None,
            fragments: Vec::new(),
            progress: Progress::new(Instant::now(), t.progress_every, t.stall_after),
            skip_through: 0,
            coalesce: Coalesce::new(self.core.cfg().watch_coalesce, t.progress_every),
        })
    }

    /// Reads the nodes prefix, having first opened the watch that is to resume after it
    /// (see [`Prepared`]); kept for the engine's next `watch` from the snapshot's revision.
    /// Without it (the watch could not be opened) the snapshot is read all the same.
    pub(super) async fn snapshot_with_watch(&self, me: Option<NodeName>) -> Result<Snapshot> {
        drop(self.take_any_prepared());
        let open = match self.open_watch(me.clone(), None).await {
            Ok(mut open) => match open.until_created(self).await {
                Ok(()) => Some(open),
                Err(e) => {
                    tracing::debug!(
                        backend = NAME,
                        "the watch opened before the snapshot failed: {e}"
                    );
                    None
                }
            },
            Err(e) => {
                tracing::debug!(
                    backend = NAME,
                    "cannot open the watch before the snapshot: {e}"
                );
                None
            }
        };
        let snapshot = self.snapshot().await?;
        self.nodes
            .store(snapshot.members.len() as u64, Ordering::Relaxed);
        if let Some(mut open) = open {
            let at = snapshot.revision;
            open.after = at;
            open.last = at;
            open.skip_through = at.0.min(i64::MAX as u64) as i64;
            // Its progress is judged from when it is handed over: the first answer to a
            // progress request says it is established (a stream that broke meanwhile says
            // so instead).
            let t = self.core.cfg().timeouts();
            open.progress = Progress::new(Instant::now(), t.progress_every, t.stall_after);
            *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(Prepared {
                me,
                open: Box::new(open),
            });
        }
        Ok(snapshot)
    }

    fn take_any_prepared(&self) -> Option<Prepared> {
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The prepared watch, if it was opened for `me` and resumes after `after`.
    fn take_prepared(&self, me: &Option<NodeName>, after: Revision) -> Option<Box<Open>> {
        let p = self.take_any_prepared()?;
        (p.me == *me && p.open.after == after).then_some(p.open)
    }
}

/// The nodes watcher's options, from revision `start` on (or etcd's revision of the moment).
fn nodes_options(start: Option<i64>) -> WatchOptions {
    let opts = WatchOptions::new()
        .with_prefix()
        .with_progress_notify()
        .with_fragment();
    match start {
        Some(start) => opts.with_start_revision(start),
        None => opts,
    }
}

impl Open {
    /// Waits until etcd created the nodes watcher (the stream's first answer): from then on
    /// every change after the answer's revision comes on this stream.
    async fn until_created(&mut self, shared: &Shared) -> Result<()> {
        while self.nodes_id.is_none() {
            let resp = match self.responses.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(Error::new(ErrorKind::Unavailable, "the watch stream ended")
                        .with_backend(NAME)
                        .with_operation("watch"))
                }
                Err(e) => return Err(shared.stream_error(e, self.endpoint)),
            };
            if let Some(Err(e)) = self.on_response(shared, resp) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The next batch (or progress notice); `None` when the stream ended.
    async fn next(&mut self, shared: &Shared) -> Option<Result<WatchBatch>> {
        loop {
            // Progress is asked for only while the nodes watcher is open.
            let live = self.coalesce.is_live();
            let reopen_at = self.coalesce.reopen_at();
            tokio::select! {
                msg = self.responses.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return None,
                        Err(e) => return Some(Err(shared.stream_error(e, self.endpoint))),
                    };
                    if let Some(item) = self.on_response(shared, resp) {
                        if let Err(e) = self.after_item(shared, &item).await {
                            return Some(Err(e));
                        }
                        return Some(item);
                    }
                }
                _ = sleep_until(self.progress.next_tick()), if live => {
                    if let Some(item) = self.on_tick(shared).await {
                        return Some(item);
                    }
                }
                _ = sleep_until(reopen_at.unwrap_or_else(Instant::now)), if reopen_at.is_some() => {
                    if let Err(e) = self.reopen(shared).await {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// After an answer with changes: a burst pauses the nodes watcher (see [`Coalesce`]).
    async fn after_item(&mut self, shared: &Shared, item: &Result<WatchBatch>) -> Result<()> {
        let changes = matches!(item, Ok(b) if !b.changes.is_empty());
        let Some(id) = self.nodes_id.filter(|_| changes && !self.clash_pending) else {
            return Ok(());
        };
        let large =
            shared.nodes.load(Ordering::Relaxed) >= shared.core.cfg().watch_coalesce_members;
        if let Some(id) = self.coalesce.on_changes(Instant::now(), id, large) {
            self.sender
                .cancel(id)
                .await
                .map_err(|e| shared.core.error(e, "watch", self.endpoint))?;
        }
        Ok(())
    }

    /// Opens the paused nodes watcher again, from the revision after the last one passed on.
    async fn reopen(&mut self, shared: &Shared) -> Result<()> {
        let start = self.last.0.saturating_add(1).min(i64::MAX as u64) as i64;
        self.skip_through = self.skip_through.max(start - 1);
        self.coalesce.on_reopening();
        tracing::trace!(
            backend = NAME,
            pauses = self.coalesce.pauses(),
            "reopening the paused watch from revision {start}"
        );
        self.sender
            .watch(
                shared.layout.nodes_prefix(),
                Some(nodes_options(Some(start))),
            )
            .await
            .map_err(|e| shared.core.error(e, "watch", self.endpoint))
    }

    fn notice(&self) -> WatchBatch {
        WatchBatch {
            revision: self.last,
            changes: Vec::new(),
        }
    }

    async fn on_tick(&mut self, shared: &Shared) -> Option<Result<WatchBatch>> {
        match self.progress.tick(Instant::now(), shared.core.seen()) {
            Tick::Request => match self.sender.request_progress().await {
                Ok(()) => None,
                Err(e) => Some(Err(shared.core.error(e, "watch", self.endpoint))),
            },
            Tick::Stalled { behind, target } => {
                let endpoint = shared.core.endpoints().url(self.endpoint);
                Some(Err(shared
                    .compacted(format!(
                        "the watch fell behind etcd: for {behind:?} it showed no sign of reaching \
                     revision {target}, which etcd had reported elsewhere (its answers to \
                     progress requests stopped, or lag behind)"
                    ))
                    .with_endpoint(endpoint)))
            }
            Tick::NoAnswers => {
                shared.core.warn_no_progress(self.endpoint);
                Some(Ok(self.notice()))
            }
            Tick::Notice => Some(Ok(self.notice())),
        }
    }

    /// What a response means: a batch, a notice, an error, or nothing to pass on.
    fn on_response(&mut self, shared: &Shared, resp: WatchResponse) -> Option<Result<WatchBatch>> {
        let id = resp.watch_id();
        if resp.compact_revision() > 0 {
            return Some(Err(shared.compacted(format!(
                "etcd compacted its history up to revision {}; the watch asked for revisions after {}",
                resp.compact_revision(),
                self.after.0
            ))));
        }
        let header = resp.header().map_or(0, |h| h.revision());
        if resp.created() && self.clash_pending && self.nodes_id.is_some() {
            // The clash marker's watcher (created second); a user without access to the
            // marker's key only loses the log line on a clash.
            self.clash_pending = false;
            if resp.canceled() {
                let reason = Escaped::new(resp.cancel_reason());
                tracing::debug!(backend = NAME, "cannot watch the clash marker: {reason}");
            } else {
                self.clash_id = Some(id);
            }
            // Now the watch is established, both watchers.
            return Some(Ok(self.notice()));
        }
        if resp.canceled() {
            if self.clash_id == Some(id) {
                self.clash_id = None;
                return None;
            }
            if self.coalesce.on_cancelled(id, Instant::now()) {
                // Paused: the answers it still had were passed on.
                self.nodes_id = None;
                return None;
            }
            return Some(Err(cancelled(resp.cancel_reason())));
        }
        if resp.created() {
            self.nodes_id = Some(id);
            if header.max(0) < self.last.0 as i64 {
                return Some(Err(shared.compacted(format!(
                    "etcd's revision {header} is behind the watch's {}: etcd was wiped or replaced",
                    self.last.0
                ))));
            }
            if self.coalesce.on_created(Instant::now()) {
                // Reopened after a pause: established again from `last` on; its progress is
                // judged afresh.
                self.progress.restart(Instant::now());
                return Some(Ok(self.notice()));
            }
            // The watch is established (once the clash marker's watcher is too, if any): say
            // so at once, claiming no progress beyond `after` (events between `after` and the
            // header's revision may follow).
            return (!self.clash_pending).then(|| Ok(self.notice()));
        }
        if self.clash_id == Some(id) && self.clash_id != self.nodes_id {
            self.on_clash(shared, &resp);
            return None;
        }
        if resp.events().is_empty() {
            if !self.coalesce.is_live() {
                // An answer to a progress request made before the pause: the paused watcher
                // is not where it says.
                return None;
            }
            // A progress answer (or etcd's own progress notification).
            return self
                .progress
                .reached(header, true)
                .then(|| Ok(self.notice()));
        }
        if self.nodes_id != Some(id) {
            // A cancelled watcher's answer (etcd drops them; should one come, the reopened
            // watcher brings its changes again).
            return None;
        }
        self.on_events(shared, &resp)
    }

    fn on_events(&mut self, shared: &Shared, resp: &WatchResponse) -> Option<Result<WatchBatch>> {
        shared.changes(resp, self.skip_through, &mut self.fragments);
        let revision = resp
            .events()
            .iter()
            .filter_map(|e| e.kv())
            .map(|kv| kv.mod_revision())
            .max()
            .unwrap_or(0);
        self.progress.reached(revision, false);
        if resp.0.fragment {
            return None; // the rest of this revision follows
        }
        self.last = Revision(revision.max(self.last.0 as i64) as u64);
        Some(Ok(WatchBatch {
            revision: self.last,
            changes: std::mem::take(&mut self.fragments),
        }))
    }

    fn on_clash(&self, shared: &Shared, resp: &WatchResponse) {
        let Some(me) = &self.me else { return };
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if EventType::try_from(ev.0.r#type) == Ok(EventType::Put) {
                let other = format!("lease {:x}", kv.lease());
                shared.attempts.log(me, kv.key(), kv.value(), &other);
            }
        }
    }
}

fn cancelled(reason: &str) -> Error {
    let kind = if reason.contains("permission denied") {
        ErrorKind::PermissionDenied
    } else {
        ErrorKind::Unavailable
    };
    Error::new(kind, format!("etcd cancelled the watch: {reason}"))
        .with_backend(NAME)
        .with_operation("watch")
}

impl Shared {
    /// Keeps [`Shared::nodes`] about right: a node key created is a node more.
    fn node_created(&self, kv: &etcd_client::KeyValue) {
        if kv.create_revision() == kv.mod_revision() {
            self.nodes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A node key deleted: a node less.
    fn node_deleted(&self) {
        let _ = self
            .nodes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// The changes of a response's events after revision `skip_through`, appended to
    /// `changes`.
    fn changes(&self, resp: &WatchResponse, skip_through: i64, changes: &mut Vec<Change>) {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if kv.mod_revision() <= skip_through {
                continue;
            }
            // `Event::event_type` panics on a type it does not know: read the raw one.
            match EventType::try_from(ev.0.r#type) {
                Ok(EventType::Put) => match self.layout.member(
                    kv.key(),
                    kv.value(),
                    kv.lease() as u64,
                    kv.create_revision(),
                ) {
                    Ok(m) => {
                        self.node_created(kv);
                        changes.push(Change::Put(m));
                    }
                    Err(why) => {
                        self.garbage.skip(NAME, kv.key(), &why);
                        // A node's key overwritten with garbage registers that node no
                        // more, as a snapshot would say: without this, nodes that saw the
                        // overwrite keep the member and nodes that start later do not.
                        if let Ok(node) = self.layout.node_of(kv.key()) {
                            self.node_created(kv);
                            changes.push(Change::Delete {
                                node,
                                incarnation: None,
                            });
                        }
                    }
                },
                Ok(EventType::Delete) => {
                    // A deleted garbage key was counted when it was written. The delete
                    // removes whatever life of the node the view holds: events come in
                    // order, so that is the one the key held.
                    if let Ok(node) = self.layout.node_of(kv.key()) {
                        self.node_deleted();
                        changes.push(Change::Delete {
                            node,
                            incarnation: None,
                        });
                    }
                }
                Err(_) => self
                    .garbage
                    .skip(NAME, kv.key(), "a watch event of an unknown type"),
            }
        }
    }
}
