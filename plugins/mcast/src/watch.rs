//! The watch stream: the changes after a revision, from the view's history, as they come.

use std::sync::Arc;

use autocluster_plugin::{BoxStream, ErrorKind, Result, Revision, WatchBatch};
use futures::StreamExt;

use crate::core::Core;
use crate::view::Gap;

/// The changes after `after`: a first batch at once (empty when nothing changed), then one
/// batch per wake-up with everything that happened since; ends after an error.
pub(crate) fn changes(core: Arc<Core>, after: u64) -> BoxStream<Result<WatchBatch>> {
    let rx = core.view.subscribe();
    let state = (core, rx, after, true, false);
    futures::stream::unfold(state, |(core, mut rx, last, first, done)| async move {
        if done {
            return None;
        }
        loop {
            rx.borrow_and_update();
            match core.view.since(last) {
                Err(gap) => {
                    let why = match gap {
                        Gap::Compacted => "the watch fell behind the changes kept",
                        Gap::Ahead => "the revision is ahead of this backend's (a new instance)",
                    };
                    let e = core.error(ErrorKind::Compacted, "watch", why);
                    return Some((Err(e), (core, rx, last, false, true)));
                }
                Ok((revision, changes)) if first || !changes.is_empty() => {
                    let batch = WatchBatch {
                        revision: Revision(revision),
                        changes,
                    };
                    return Some((Ok(batch), (core, rx, revision, false, false)));
                }
                Ok(_) => {}
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .boxed()
}
