//! The liveness probe of list-only backends (static seeds, DNS): every candidate is probed
//! each `probe_interval`, and at once when the candidates change; the verdicts go to the view
//! task, which applies them to the table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use autocluster_plugin::{Member, Metadata, NodeName};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{ProbeVerdict, Prober, Shared};
use crate::view::Status;

/// How many probes run at once.
const PARALLEL: usize = 32;
/// A running candidate is declared stopped after this many failed probes in a row, so one
/// lost connection does not make it flap.
const FAILURES_TO_STOP: u32 = 2;

/// A probe's result as the view task applies it: the candidate's status, and the metadata
/// it serves (kept when `None`).
pub(crate) type Probed = (NodeName, Status, Option<Metadata>);

/// Probes until the engine is cancelled or the view task is gone.
pub(crate) async fn run(shared: Arc<Shared>, prober: Prober, tx: mpsc::Sender<Probed>) {
    let me = shared.config.registration.node.clone();
    let mut view_rx = shared.view.subscribe();
    let mut failures: HashMap<NodeName, u32> = HashMap::new();
    loop {
        let members: Vec<Member> = view_rx
            .borrow_and_update()
            .members()
            .map(|e| e.member.clone())
            .collect();
        let known: BTreeSet<NodeName> = members.iter().map(|m| m.node.clone()).collect();
        failures.retain(|n, _| known.contains(n));
        let results: Vec<(NodeName, ProbeVerdict)> = futures::stream::iter(members)
            .map(|m| {
                let prober = prober.clone();
                // This node, when listed, runs and serves what it registers now.
                let own = (m.node == me).then(|| shared.own.borrow().meta.clone());
                async move {
                    let verdict = match own {
                        Some(meta) => ProbeVerdict::running(Some(meta)),
                        None => prober(m.clone()).await,
                    };
                    (m.node, verdict)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (node, found) in results {
            let Some(status) = verdict(&shared, &mut failures, &node, found.running) else {
                continue;
            };
            if tx.send((node, status, found.meta)).await.is_err() {
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

/// The status one probe result gives `node`, or `None` while a running node's failures are
/// still below [`FAILURES_TO_STOP`].
fn verdict(
    shared: &Shared,
    failures: &mut HashMap<NodeName, u32>,
    node: &NodeName,
    ok: bool,
) -> Option<Status> {
    if ok {
        failures.remove(node);
        return Some(Status::Running);
    }
    let n = failures.entry(node.clone()).or_default();
    *n += 1;
    let was_running = shared.view.borrow().is_running(node);
    if was_running && *n < FAILURES_TO_STOP {
        return None;
    }
    Some(Status::Stopped)
}
