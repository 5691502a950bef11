//! [`Cluster::changes`](crate::Cluster::changes): the membership as one stream that misses
//! nothing: the current members, then every change after them.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::engine::Shared;
use crate::view::{Event, View};

/// One item of [`Cluster::changes`](crate::Cluster::changes).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ViewChange {
    /// The members at this point: the first item, and again after [`ViewChange::Lagged`].
    /// Every event after it changes this view; none is already in it.
    Snapshot(View),
    /// A member joined, left or changed, after the last snapshot and the events before it.
    Event(Box<Event>),
    /// The subscriber fell more than the event capacity behind and this many events were
    /// dropped; a fresh [`ViewChange::Snapshot`] follows, then the events after it.
    Lagged(u64),
}

struct State {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Event>,
    /// An item to give before reading more (the snapshot after a lag).
    queued: Option<ViewChange>,
    /// The engine stopped: give what is left in the channel, then end.
    draining: bool,
}

/// The stream of `shared`'s view and changes; it ends once the engine has stopped and every
/// event it sent was given.
pub(crate) fn changes(shared: Arc<Shared>) -> BoxStream<'static, ViewChange> {
    let (view, rx) = shared.subscribe_with_view();
    let state = State {
        shared,
        rx,
        queued: Some(ViewChange::Snapshot(view)),
        draining: false,
    };
    stream::unfold(state, |mut s| async move {
        let item = next(&mut s).await?;
        Some((item, s))
    })
    .boxed()
}

async fn next(s: &mut State) -> Option<ViewChange> {
    if let Some(item) = s.queued.take() {
        return Some(item);
    }
    loop {
        let received = if s.draining {
            match s.rx.try_recv() {
                Ok(e) => Ok(e),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(_) => return None,
            }
        } else {
            tokio::select! {
                biased;
                r = s.rx.recv() => r,
                _ = s.shared.cancel.cancelled() => {
                    s.draining = true;
                    continue;
                }
            }
        };
        return match received {
            Ok(event) => Some(ViewChange::Event(Box::new(event))),
            Err(RecvError::Lagged(missed)) => {
                let (view, rx) = s.shared.subscribe_with_view();
                s.rx = rx;
                s.queued = Some(ViewChange::Snapshot(view));
                Some(ViewChange::Lagged(missed))
            }
            Err(RecvError::Closed) => None,
        };
    }
}
