//! The view task: feeds the one member table from the backend and publishes what it holds.
//!
//! It is a [`ViewTask`] with one method per input: a snapshot that came back, a watch batch
//! (or observations), a watch that failed or ended, a change of this node's registration, a
//! probe's verdict, a member's deadline, and the timer that asks for the next snapshot or
//! reopens the watch. Whether the view is stale is derived in one place, [`Freshness`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{
    BoxStream, Capabilities, Change, Error, ErrorKind, Incarnation, Member, Metadata, NodeName,
    Registrations, Result, Revision, Snapshot, ViewMode, WatchBatch,
};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::backoff::Backoff;
use super::freshness::Freshness;
use super::table::Table;
use super::Shared;
use crate::view::{Event, Status};

/// What the task asks the backend for next, once its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Snapshot,
    Watch,
    Observe,
    /// A lost lease that the watch has not yet confirmed (see [`ViewTask::on_lease`]):
    /// resync when its time comes.
    Resync,
}

pub(crate) struct ViewTask {
    shared: Arc<Shared>,
    caps: Capabilities,
    /// How long a member missing from a resync is kept.
    grace: Duration,
    table: Table,
    events: Vec<Event>,
    backoff: Backoff,
    /// The next request and when to make it.
    next: Option<(Instant, Ask)>,
    /// The open watch (or observation) stream.
    stream: Option<BoxStream<Result<WatchBatch>>>,
    /// Whether the backend is being read live now (see [`Freshness`]).
    live: bool,
    /// The lease this node last held: when it is lost, so may be the backend's history.
    last_lease: Option<u64>,
    /// Observation batches received (the revision of an observed view).
    observed: u64,
    /// For a backend that promises a progress notice every `progress_every`: when the open
    /// stream has been silent too long to count as live.
    silent_at: Option<Instant>,
    /// The warning that members' expiries were put off, at most once a minute.
    postponed_log: autocluster_plugin::log::RateLimit,
    /// When the open stream last yielded a batch (changes or a progress notice).
    heard_at: Option<Instant>,
    /// When the registration task's calls began to fail (`None` while they succeed).
    registration_failing_since: Option<Instant>,
    /// When the stream last told that this node's own key was deleted.
    own_deleted_at: Option<Instant>,
    /// A lost lease, last renewed at this instant, whose end the stream has yet to show (the
    /// deletion of this node's key, after that instant): resync if it does not in time.
    loss_unconfirmed: Option<Instant>,
}

/// A TTL expiry this late means this node, not the member, stopped running meanwhile (a
/// timer fires within a millisecond or two of its deadline on a running process; one that
/// had to wait for the CPU loses nothing by the short catch-up either).
const PAUSED_AFTER: Duration = Duration::from_millis(50);
/// How long members whose TTL ran out while this node was stopped get to be heard from: the
/// heartbeats that came meanwhile wait in the socket, and the receiving task reads them as
/// soon as the process runs again.
const CATCH_UP: Duration = Duration::from_millis(500);

/// How many stream items that are ready at once are applied before the view is published.
const DRAIN_AT_ONCE: usize = 256;

/// How many progress notices in a row may be missed before a watch counts as silent.
const SILENT_AFTER_NOTICES: u32 = 3;

/// Runs the view task until the engine is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, mut probes: mpsc::Receiver<super::probe::Probed>) {
    let mut task = ViewTask::new(shared.clone());
    let mut lease_rx = shared.lease.subscribe();
    let mut registration_rx = shared.registration_ok.subscribe();
    let mut own_rx = shared.own.subscribe();
    loop {
        let ask_at = task.next.map(|(at, _)| at);
        let deadline = task.table.next_deadline();
        let silent_at = task.silent_at.filter(|_| task.stream.is_some());
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = sleep_until(ask_at.unwrap_or_else(Instant::now)), if ask_at.is_some() => {
                if !task.on_ask_due().await {
                    return;
                }
            }
            item = next_batch(&mut task.stream), if task.stream.is_some() => {
                task.on_item(item);
                // What else the stream holds already is applied before the view is
                // published: one copy of the view and one wake-up of its readers per burst,
                // not per change (a formation of N nodes is N changes for every node).
                for _ in 1..DRAIN_AT_ONCE {
                    let Some(item) = task.stream.as_mut().and_then(|s| s.next().now_or_never()) else {
                        break;
                    };
                    task.on_item(item);
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                task.on_deadline();
            }
            _ = sleep_until(silent_at.unwrap_or_else(Instant::now)), if silent_at.is_some() => {
                task.on_silence();
            }
            Some((node, status, meta)) = probes.recv() => task.on_probe(&node, status, meta),
            Ok(()) = lease_rx.changed() => {
                let lease = lease_rx.borrow_and_update().map(|l| l.id);
                task.on_lease(lease);
            }
            // Backends that register by heartbeat list this node themselves: with its new
            // metadata at once (peers hear it in the next heartbeat).
            Ok(()) = own_rx.changed() => {
                own_rx.borrow_and_update();
                task.put_self_if_heartbeat();
            }
            Ok(()) = registration_rx.changed() => {
                let ok = *registration_rx.borrow_and_update();
                task.on_registration_ok(ok);
            }
        }
        task.publish();
    }
}

impl ViewTask {
    fn on_item(&mut self, item: Option<Result<WatchBatch>>) {
        match item {
            Some(Ok(batch)) => self.on_batch(batch),
            Some(Err(e)) => self.on_watch_error(e),
            None => self.on_watch_end(),
        }
    }

    fn new(shared: Arc<Shared>) -> Self {
        let caps = shared.backend.capabilities();
        let probing = caps.candidates_only && shared.config.prober.is_some();
        let first = match caps.view {
            ViewMode::Observe => Ask::Observe,
            ViewMode::Push | ViewMode::Poll { .. } => Ask::Snapshot,
        };
        ViewTask {
            grace: shared.config.grace.unwrap_or(caps.ttl),
            table: Table::new(probing),
            events: Vec::new(),
            backoff: Backoff::new(shared.config.backoff_min, shared.config.backoff_max),
            next: Some((Instant::now(), first)),
            stream: None,
            live: false,
            last_lease: None,
            observed: 0,
            silent_at: None,
            postponed_log: autocluster_plugin::log::RateLimit::new(Duration::from_secs(60)),
            heard_at: None,
            registration_failing_since: None,
            own_deleted_at: None,
            loss_unconfirmed: None,
            caps,
            shared,
        }
    }

    /// The time for the next request came. False when the engine was cancelled meanwhile.
    async fn on_ask_due(&mut self) -> bool {
        let Some((_, ask)) = self.next.take() else {
            return true;
        };
        match ask {
            Ask::Watch => self.open_stream(self.shared.backend.watch(self.table.revision())),
            Ask::Observe => self.open_stream(self.shared.backend.observe()),
            Ask::Resync => {
                self.loss_unconfirmed = None;
                tracing::warn!(
                    "this node's lease was lost and the watch did not show its key deleted; \
                     resyncing the view from a snapshot"
                );
                self.resync();
            }
            Ask::Snapshot => {
                let shared = self.shared.clone();
                // A snapshot asked for before this node's registration was written may be
                // read before it, too: its key missing from it is no deletion.
                let registered = shared.lease.borrow().is_some();
                let result = tokio::select! {
                    r = shared.call("snapshot", shared.backend.snapshot()) => r,
                    _ = shared.cancel.cancelled() => return false,
                };
                match result {
                    Ok(snapshot) => self.on_snapshot(snapshot, registered),
                    Err(e) if !e.is_retryable() => self.refused(e),
                    Err(_) => self.on_snapshot_error(),
                }
            }
        }
        true
    }

    /// A stream (re)opened: the view is live again once its first batch arrives.
    fn open_stream(&mut self, stream: BoxStream<Result<WatchBatch>>) {
        self.live = false;
        self.heard_at = None;
        self.stream = Some(stream);
        self.expect_word();
    }

    /// The stream must say something (a change or a progress notice) within a few
    /// `progress_every`, or it counts as silent.
    fn expect_word(&mut self) {
        self.silent_at = self
            .caps
            .progress_every
            .map(|every| Instant::now() + every * SILENT_AFTER_NOTICES);
    }

    /// The watch said nothing for several progress periods: whatever it claims, the view is
    /// not being read live. Reopen it from the last revision (a watch that fell behind
    /// history then says `Compacted`, and the view resyncs).
    fn on_silence(&mut self) {
        let every = self.caps.progress_every.unwrap_or_default();
        tracing::warn!(
            "the watch said nothing for {:?} ({SILENT_AFTER_NOTICES} progress periods of {every:?}); reopening it from revision {}",
            every * SILENT_AFTER_NOTICES,
            self.table.revision().0
        );
        self.shared
            .stats
            .watch_silences
            .fetch_add(1, Ordering::Relaxed);
        if self.loss_unconfirmed.is_some() {
            // The stream that was to confirm a lost lease went silent.
            self.resync();
            return;
        }
        self.stream = None;
        self.live = false;
        self.silent_at = None;
        self.next = Some((Instant::now(), Ask::Watch));
    }

    /// A snapshot, asked for when this node's registration was (`registered`) or was not yet
    /// written.
    fn on_snapshot(&mut self, mut snapshot: Snapshot, registered: bool) {
        self.backoff.reset();
        if let Some(me) = self.self_if_heartbeat() {
            if !snapshot.members.iter().any(|m| m.node == me.node) {
                snapshot.members.push(me);
            }
        }
        let me = &self.shared.config.registration.node;
        let self_listed = snapshot.members.iter().any(|m| &m.node == me);
        // The first snapshot is the starting point; a later one follows a gap whose history
        // is unknown: who is missing from it gets the grace period.
        let grace = self.table.view().synced.then_some(self.grace);
        self.table
            .apply_snapshot(snapshot, grace, Instant::now(), &mut self.events);
        if !self_listed && registered {
            self.own_key_missing();
        }
        self.put_self_if_heartbeat();
        match self.caps.view {
            // Live once the watch from the snapshot's revision is established.
            ViewMode::Push => self.open_stream(self.shared.backend.watch(self.table.revision())),
            ViewMode::Poll { interval } => {
                self.live = true;
                self.next = Some((Instant::now() + interval, Ask::Snapshot));
            }
            ViewMode::Observe => {}
        }
    }

    fn on_snapshot_error(&mut self) {
        self.live = false;
        let mut delay = self.backoff.next_delay();
        if let ViewMode::Poll { interval } = self.caps.view {
            delay = delay.min(interval);
        }
        self.next = Some((Instant::now() + delay, Ask::Snapshot));
    }

    fn on_batch(&mut self, batch: WatchBatch) {
        self.expect_word();
        self.heard_at = Some(Instant::now());
        if !self.live {
            self.shared.record_success("watch");
            self.live = true;
        }
        self.backoff.reset();
        let revision = match self.caps.view {
            ViewMode::Observe => {
                if !batch.changes.is_empty() {
                    self.observed += 1;
                }
                if !self.table.view().synced {
                    // Listening: what is heard from now on is the view.
                    self.table.mark_synced();
                    self.put_self_if_heartbeat();
                }
                Revision(self.observed)
            }
            ViewMode::Push | ViewMode::Poll { .. } => batch.revision,
        };
        let now = Instant::now();
        let me = self.shared.config.registration.node.clone();
        for change in batch.changes {
            if matches!(&change, Change::Delete { node, .. } if *node == me) {
                self.own_deleted_at = Some(now);
                self.own_key_missing();
            }
            self.table.apply(change, revision, now, &mut self.events);
        }
        if self.loss_confirmed() {
            self.loss_unconfirmed = None;
            if matches!(self.next, Some((_, Ask::Resync))) {
                self.next = None;
            }
        }
    }

    /// The lost lease's end came through the watch: its key deleted after its last renewal.
    fn loss_confirmed(&self) -> bool {
        matches!(
            (self.loss_unconfirmed, self.own_deleted_at),
            (Some(renewed), Some(deleted)) if deleted >= renewed
        )
    }

    fn on_watch_error(&mut self, e: Error) {
        let operation = self.stream_operation();
        self.shared.record_error(operation, &e);
        self.stream = None;
        self.live = false;
        if !e.is_retryable() {
            self.refused(e);
        } else if e.kind() == ErrorKind::Compacted {
            let shown = Escaped::new(&e).max(1024);
            tracing::warn!("watch history is gone ({shown}); resyncing from a snapshot");
            self.resync();
        } else {
            self.reopen_later();
        }
    }

    fn on_watch_end(&mut self) {
        tracing::warn!(
            "{} ended; resuming from revision {}",
            self.stream_operation(),
            self.table.revision().0
        );
        self.stream = None;
        self.live = false;
        self.reopen_later();
    }

    /// The backend refuses for good (a configuration it cannot serve): the engine fails,
    /// not ready, with the reason, rather than retry forever.
    fn refused(&mut self, e: Error) {
        self.live = false;
        self.next = None;
        self.shared.fail(
            format!("the backend refuses to give the view: {e}"),
            Some(e.kind()),
        );
    }

    fn stream_operation(&self) -> &'static str {
        match self.caps.view {
            ViewMode::Observe => "observe",
            ViewMode::Push | ViewMode::Poll { .. } => "watch",
        }
    }

    fn reopen_later(&mut self) {
        if self.loss_unconfirmed.take().is_some() {
            // The stream that was to confirm a lost lease broke first.
            self.resync();
            return;
        }
        let ask = match self.caps.view {
            ViewMode::Observe => Ask::Observe,
            ViewMode::Push | ViewMode::Poll { .. } => Ask::Watch,
        };
        self.next = Some((Instant::now() + self.backoff.next_delay(), ask));
    }

    /// Reads a fresh snapshot now; the stream, if any, is dropped.
    fn resync(&mut self) {
        self.loss_unconfirmed = None;
        self.shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        self.stream = None;
        self.live = false;
        self.next = Some((Instant::now(), Ask::Snapshot));
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        // A TTL that ran out while this node could not run (SIGSTOP, a VM paused, starved of
        // CPU) says nothing about the peer: its heartbeats wait in our socket. Hear them
        // first; whoever is still silent `CATCH_UP` later expires then.
        let late = self
            .table
            .next_expiry()
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        if late > PAUSED_AFTER {
            let n = self.table.postpone_expiry(now, now + CATCH_UP);
            if let Some(suppressed) = self.postponed_log.allow() {
                tracing::warn!(
                    late_ms = late.as_millis() as u64,
                    members = n,
                    suppressed,
                    "this node did not run for a while (paused or starved of CPU): members whose \
                 TTL ran out meanwhile get {CATCH_UP:?} to be heard before they expire"
                );
            }
            self.shared
                .stats
                .expiries_postponed
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.table.expire(now, &mut self.events);
    }

    fn on_probe(&mut self, node: &NodeName, status: Status, meta: Option<Metadata>) {
        self.table.set_probed(node, status, meta, &mut self.events);
    }

    /// This node's lease changed: registered, lost, or registered anew.
    fn on_lease(&mut self, lease: Option<u64>) {
        // A lost lease: the watch may not be trusted to resume. A replaced etcd whose
        // revision has overtaken ours accepts the watch without a sign of the gap, and
        // peers' new incarnations (and later deletes of them) would be missed for good. Read
        // a fresh snapshot; whoever is missing from it gets the grace period.
        //
        // Unless the watch, open now, shows the lease's end: this node's key deleted after
        // the lease's last renewal (at once, or within a few progress periods if it lags).
        // Only the store that held the lease can tell that deletion: it was not replaced,
        // the lease ran out on a live etcd (an overloaded one refuses keep-alives while its
        // apply loop lags), and the watch has missed nothing. A resync there is a read of every key and a watch etcd must
        // replay history to, for every node that lost its lease at once: overload made
        // worse (docs/benchmarks.md, the mesh).
        let lost = self.last_lease.filter(|_| lease != self.last_lease);
        self.last_lease = lease;
        if let Some(lost) = lost.filter(|_| {
            self.table.view().synced
                && self.caps.registration == Registrations::ServerLease
                && self.caps.view == ViewMode::Push
                && !self.shared.cancel.is_cancelled()
        }) {
            let renewed = *self
                .shared
                .lost_lease
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let renewed = renewed.and_then(|(id, at)| (id == lost).then_some(at));
            match renewed {
                Some(renewed) if self.stream.is_some() => {
                    self.loss_unconfirmed = Some(renewed);
                    if self.loss_confirmed() {
                        self.loss_unconfirmed = None;
                        tracing::info!(
                            "this node's lease was lost; the watch ran without a break and \
                             showed it, so the view is kept as it is"
                        );
                    } else if self.next.is_none() {
                        // The deletion may still be on its way (a lagging watch).
                        let within = self.caps.progress_every.unwrap_or(self.caps.ttl)
                            * SILENT_AFTER_NOTICES;
                        self.next = Some((Instant::now() + within, Ask::Resync));
                    } else {
                        self.loss_unconfirmed = None;
                        tracing::warn!(
                            "this node's lease was lost; resyncing the view from a snapshot"
                        );
                        self.resync();
                    }
                }
                _ => {
                    tracing::warn!(
                        "this node's lease was lost; resyncing the view from a snapshot"
                    );
                    self.resync();
                }
            }
        }
        self.put_self_if_heartbeat();
    }

    /// The registration task's last call succeeded (`ok`) or failed.
    fn on_registration_ok(&mut self, ok: bool) {
        if !ok {
            self.registration_failing_since
                .get_or_insert_with(Instant::now);
            return;
        }
        let failing_since = self.registration_failing_since.take();
        // The backend answers again: the watch may have died quietly meanwhile, so resume it
        // from the last revision (its first batch makes the view live); unless it was heard
        // from since the calls began to fail: then it is alive, and a new watch would only
        // make an overloaded etcd replay history to it (every keep-alive that fails under
        // load, then succeeds, would reopen every watch).
        let heard_since = matches!(
            (self.heard_at, failing_since),
            (Some(heard), Some(since)) if heard >= since
        );
        if self.stream.is_some() && self.caps.view == ViewMode::Push && !heard_since {
            if self.loss_unconfirmed.is_some() {
                // A new stream could not confirm a lost lease.
                self.resync();
                return;
            }
            self.open_stream(self.shared.backend.watch(self.table.revision()));
        }
    }

    /// Publishes the table's view, with its freshness derived, and the events.
    fn publish(&mut self) {
        let freshness = Freshness {
            synced: self.table.view().synced,
            live: self.live,
            registration_ok: *self.shared.registration_ok.borrow(),
        };
        self.table.set_stale(freshness.stale());
        self.shared.publish(self.table.view(), &mut self.events);
    }

    /// This node's registration is missing from what the backend says: have the
    /// registration task write it again.
    fn own_key_missing(&self) {
        if self.caps.registration == Registrations::ServerLease
            && self.shared.lease.borrow().is_some()
        {
            self.shared.own_key_missing.notify_one();
        }
    }

    /// Backends that register by heartbeat do not hear themselves: this node is in its own
    /// view while it is registered.
    fn self_if_heartbeat(&self) -> Option<Member> {
        if self.caps.registration != Registrations::Heartbeat {
            return None;
        }
        let lease = (*self.shared.lease.borrow())?;
        let reg = self.shared.own.borrow();
        // As heartbeat peers report each other: the incarnation (a start time) orders them,
        // so every node agrees on the oldest.
        Some(
            Member::new(reg.node.clone(), Incarnation(lease.id))
                .with_meta(Some(reg.meta.clone()))
                .with_created(Revision(lease.id)),
        )
    }

    fn put_self_if_heartbeat(&mut self) {
        if let Some(me) = self.self_if_heartbeat() {
            let revision = self.table.revision();
            self.table
                .apply(Change::Put(me), revision, Instant::now(), &mut self.events);
        }
    }
}

async fn next_batch(
    stream: &mut Option<BoxStream<Result<WatchBatch>>>,
) -> Option<Result<WatchBatch>> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
