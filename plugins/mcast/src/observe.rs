//! The observation stream the engine reads: a first, empty batch once listening, then what
//! the receive loop heard, in batches; an error when the receive loop ends.

use std::sync::Arc;

use autocluster_plugin::{BoxStream, Change, ErrorKind, Result, Revision, WatchBatch};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::core::Core;

/// How many observations wait for the engine before new ones are dropped and counted.
pub(crate) const QUEUE: usize = 4096;
/// At most this many observations in one batch.
const BATCH: usize = 1024;

/// The observations that reach `rx` from now on, while the receive loop (`alive`) runs.
pub(crate) fn stream(
    core: Arc<Core>,
    rx: mpsc::Receiver<Change>,
    alive: watch::Receiver<()>,
) -> BoxStream<Result<WatchBatch>> {
    let first = futures::stream::once(async { Ok(WatchBatch::default()) });
    let rest = futures::stream::unfold(Some((core, rx, alive)), |state| async move {
        let (core, mut rx, mut alive) = state?;
        let first = tokio::select! {
            c = rx.recv() => c,
            _ = alive.changed() => None,
        };
        let Some(first) = first else {
            let e = core.error(ErrorKind::Unavailable, "observe", "the receive loop ended");
            return Some((Err(e), None));
        };
        let mut changes = vec![first];
        while changes.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => changes.push(c),
                Err(_) => break,
            }
        }
        let batch = WatchBatch {
            revision: Revision(0),
            changes,
        };
        Some((Ok(batch), Some((core, rx, alive))))
    });
    first.chain(rest).boxed()
}
