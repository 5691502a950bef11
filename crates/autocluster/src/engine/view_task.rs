//! Keeps the view: snapshot, then pushed changes or polled snapshots; expiry, grace periods
//! and probes; resync after a gap; the last view kept, marked stale, while the backend fails.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use autocluster_plugin::{
    BoxStream, Change, ErrorKind, Member, NodeName, Registrations, Result, ViewMode, WatchBatch,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::backoff::Backoff;
use super::table::Table;
use super::Shared;
use crate::view::Status;

enum Next {
    Snapshot,
    Watch,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let backend = shared.backend.clone();
    let caps = backend.capabilities();
    let grace = shared.config.grace.unwrap_or(caps.ttl);
    let me = shared.config.registration.node.clone();
    let probing = caps.candidates_only && shared.config.prober.is_some();
    let mut table = Table::new(probing);
    let mut events = Vec::new();
    let mut backoff = Backoff::new(shared.config.backoff_min, shared.config.backoff_max);
    let mut lease_rx = shared.lease.subscribe();
    // The lease this node last held: when it is lost, so may be the backend's history.
    let mut last_lease: Option<u64> = None;
    let mut reg_ok_rx = shared.registration_ok.subscribe();
    let (probe_tx, mut probe_rx) = mpsc::channel::<(NodeName, Status)>(1024);
    if probing {
        tokio::spawn(probe_loop(shared.clone(), probe_tx));
    } else {
        drop(probe_tx);
    }

    let mut next: Option<(Instant, Next)> = Some((Instant::now(), Next::Snapshot));
    let mut stream: Option<BoxStream<Result<WatchBatch>>> = None;
    let mut first_snapshot = true;

    loop {
        let deadline = table.next_deadline();
        let action_at = next.as_ref().map(|(at, _)| *at);
        tokio::select! {
            _ = shared.cancel.cancelled() => return,

            _ = sleep_until(action_at.unwrap_or_else(Instant::now)), if action_at.is_some() => {
                let Some((_, what)) = next.take() else { continue };
                match what {
                    Next::Watch => stream = Some(backend.watch(table.revision())),
                    Next::Snapshot => {
                        let result = tokio::select! {
                            r = shared.call("snapshot", backend.snapshot()) => r,
                            _ = shared.cancel.cancelled() => return,
                        };
                        match result {
                            Ok(mut snap) => {
                                backoff.reset();
                                if let Some(me) = self_if_heartbeat(&shared) {
                                    if !snap.members.iter().any(|m| m.node == me.node) {
                                        snap.members.push(me);
                                    }
                                }
                                let self_listed = snap.members.iter().any(|m| m.node == me);
                                let g = if first_snapshot { None } else { Some(grace) };
                                first_snapshot = false;
                                table.apply_snapshot(snap, g, Instant::now(), &mut events);
                                if caps.registration == Registrations::ServerLease
                                    && !self_listed
                                    && shared.lease.borrow().is_some()
                                {
                                    shared.own_key_missing.notify_one();
                                }
                                put_self_if_heartbeat(&shared, &mut table, &mut events);
                                match caps.view {
                                    ViewMode::Push => {
                                        // Stale until the watch is established.
                                        stream = Some(backend.watch(table.revision()));
                                    }
                                    ViewMode::Poll { interval } => {
                                        table.set_stale(!*reg_ok_rx.borrow());
                                        next = Some((Instant::now() + interval, Next::Snapshot));
                                    }
                                }
                            }
                            Err(_) => {
                                table.set_stale(true);
                                let mut delay = backoff.next_delay();
                                if let ViewMode::Poll { interval } = caps.view {
                                    delay = delay.min(interval);
                                }
                                next = Some((Instant::now() + delay, Next::Snapshot));
                            }
                        }
                        shared.publish(table.view(), &mut events);
                    }
                }
            }

            item = next_batch(&mut stream), if stream.is_some() => {
                match item {
                    Some(Ok(batch)) => {
                        if table.view().stale {
                            shared.record_success("watch");
                        }
                        backoff.reset();
                        let now = Instant::now();
                        for change in batch.changes {
                            if let Change::Delete { node, .. } = &change {
                                if *node == me
                                    && caps.registration == Registrations::ServerLease
                                    && shared.lease.borrow().is_some()
                                {
                                    shared.own_key_missing.notify_one();
                                }
                            }
                            table.apply(change, batch.revision, now, &mut events);
                        }
                        table.set_stale(!*reg_ok_rx.borrow());
                    }
                    Some(Err(e)) if e.kind() == ErrorKind::Compacted => {
                        shared.record_error("watch", &e);
                        shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("watch history is gone ({e}); resyncing from a snapshot");
                        stream = None;
                        table.set_stale(true);
                        next = Some((Instant::now(), Next::Snapshot));
                    }
                    Some(Err(e)) => {
                        shared.record_error("watch", &e);
                        stream = None;
                        table.set_stale(true);
                        next = Some((Instant::now() + backoff.next_delay(), Next::Watch));
                    }
                    None => {
                        tracing::warn!("watch ended; resuming from revision {}", table.revision().0);
                        stream = None;
                        table.set_stale(true);
                        next = Some((Instant::now() + backoff.next_delay(), Next::Watch));
                    }
                }
                shared.publish(table.view(), &mut events);
            }

            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                table.expire(Instant::now(), &mut events);
                shared.publish(table.view(), &mut events);
            }

            Some((node, status)) = probe_rx.recv() => {
                table.set_status(&node, status, &mut events);
                shared.publish(table.view(), &mut events);
            }

            Ok(()) = lease_rx.changed() => {
                let lease = lease_rx.borrow_and_update().map(|l| l.id);
                // This node's lease is gone (expired, revoked, or the server was replaced):
                // the watch cannot be trusted to resume. A replaced etcd whose revision has
                // overtaken ours accepts the watch without a sign of the gap, and peers'
                // new incarnations (and later deletes of them) would be missed for good.
                // Read a fresh snapshot; whoever is missing from it gets the grace period.
                let lost = last_lease.is_some() && lease != last_lease;
                last_lease = lease;
                if lost
                    && !first_snapshot
                    && caps.registration == Registrations::ServerLease
                    && matches!(caps.view, ViewMode::Push)
                    && !shared.cancel.is_cancelled()
                {
                    shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("this node's lease was lost; resyncing the view from a snapshot");
                    stream = None;
                    table.set_stale(true);
                    next = Some((Instant::now(), Next::Snapshot));
                }
                put_self_if_heartbeat(&shared, &mut table, &mut events);
                shared.publish(table.view(), &mut events);
            }

            Ok(()) = reg_ok_rx.changed() => {
                let ok = *reg_ok_rx.borrow_and_update();
                if !ok {
                    table.set_stale(true);
                } else if stream.is_some() {
                    // The backend answers again: the watch may have died quietly meanwhile, so
                    // resume it from the last revision; its first batch makes the view fresh.
                    stream = Some(backend.watch(table.revision()));
                } else if matches!(caps.view, ViewMode::Poll { .. }) {
                    table.set_stale(false);
                }
                shared.publish(table.view(), &mut events);
            }
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

/// Backends that register by heartbeat do not hear themselves: this node is in its own view
/// while it is registered.
fn self_if_heartbeat(shared: &Shared) -> Option<Member> {
    if shared.backend.capabilities().registration != Registrations::Heartbeat {
        return None;
    }
    let lease = (*shared.lease.borrow())?;
    let reg = &shared.config.registration;
    Some(Member {
        node: reg.node.clone(),
        incarnation: autocluster_plugin::Incarnation(lease.id),
        meta: Some(reg.meta.clone()),
        ttl: None,
        // As multicast peers report each other: the incarnation (a start time) orders them,
        // so every node agrees on the oldest.
        created: autocluster_plugin::Revision(lease.id),
    })
}

fn put_self_if_heartbeat(shared: &Shared, table: &mut Table, events: &mut Vec<crate::view::Event>) {
    if let Some(me) = self_if_heartbeat(shared) {
        let revision = table.revision();
        table.apply(Change::Put(me), revision, Instant::now(), events);
    }
}

/// Probes every candidate each `probe_interval`, and at once when the candidates change. A
/// running candidate is declared stopped after two failed probes in a row, so one lost
/// connection does not make it flap.
async fn probe_loop(shared: Arc<Shared>, tx: mpsc::Sender<(NodeName, Status)>) {
    let Some(prober) = shared.config.prober.clone() else {
        return;
    };
    let me = shared.config.registration.node.clone();
    let mut view_rx = shared.view.subscribe();
    let mut failures: HashMap<NodeName, u32> = HashMap::new();
    let mut known: BTreeSet<NodeName>;
    loop {
        let members: Vec<Member> = view_rx
            .borrow_and_update()
            .members()
            .map(|e| e.member.clone())
            .collect();
        known = members.iter().map(|m| m.node.clone()).collect();
        failures.retain(|n, _| known.contains(n));
        let results: Vec<(NodeName, bool)> = futures::stream::iter(members)
            .map(|m| {
                let prober = prober.clone();
                let me = me.clone();
                async move {
                    let ok = m.node == me || prober(m.clone()).await;
                    (m.node, ok)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        for (node, ok) in results {
            let status = if ok {
                failures.remove(&node);
                Status::Running
            } else {
                let n = failures.entry(node.clone()).or_default();
                *n += 1;
                let was_running = shared.view.borrow().is_running(&node);
                if was_running && *n < 2 {
                    continue;
                }
                Status::Stopped
            };
            if tx.send((node, status)).await.is_err() {
                return;
            }
        }
        let next = Instant::now() + shared.config.probe_interval;
        loop {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = sleep_until(next) => break,
                r = view_rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let now: BTreeSet<NodeName> =
                        view_rx.borrow_and_update().members().map(|e| e.member.node.clone()).collect();
                    if now != known {
                        break;
                    }
                }
            }
        }
    }
}
