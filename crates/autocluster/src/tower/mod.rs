//! Load balancing over the live members (cargo feature `tower`): the running members that
//! advertise an endpoint by name, as a [`tower::discover::Discover`] keyed by node.
//!
//! [`Discover`] starts with the running members of the view and then follows every change,
//! from [`Cluster::view_and_events`] (a view and exactly the events after it, so nothing is
//! missed between the two): `Insert` when a member starts running with the endpoint, or its
//! endpoint changes; `Remove` when it stops running, leaves, or no longer advertises it. A
//! reader that falls behind the event buffer reads the view again and catches up with the
//! difference. The stream ends when the cluster stops.
//!
//! With tonic (cargo feature `tonic`), [`feed_balance_channel`] keeps a
//! `Channel::balance_channel` on the members advertising, say, `grpc`:
//!
//! ```ignore
//! let (channel, tx) = tonic::transport::Channel::balance_channel(16);
//! let _feed = autocluster::tower::feed_balance_channel(&cluster, "grpc", tx);
//! // requests on `channel` go to the running members that advertise `grpc`
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use autocluster_plugin::{Member, NodeName};
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

pub use ::tower::discover::Change;

use crate::engine::Shared;

#[cfg(feature = "tonic")]
mod tonic;
#[cfg(feature = "tonic")]
pub use self::tonic::{feed_balance_channel, feed_balance_channel_with};
use crate::view::{Event, EventKind, Status};
use crate::Cluster;

/// The endpoint `name` that `member` advertises (`host:port`), if it does.
///
/// The member's endpoint `name` (`node.advertise.<name>`, or the builder's `endpoint`).
fn endpoint_of<'m>(member: &'m Member, name: &str) -> Option<&'m str> {
    member
        .meta
        .as_ref()?
        .endpoints
        .get(name)
        .map(String::as_str)
}

/// The running members that advertise an endpoint by name, as a stream of
/// [`Change`]`<NodeName, S>`: a [`tower::discover::Discover`], since tower implements it for
/// every such stream. `S` is what `make` builds from a member's endpoint (`host:port`): the
/// address itself ([`discover`]), a tonic `Endpoint`, a service.
pub struct Discover<S> {
    inner: BoxStream<'static, Change<NodeName, S>>,
}

impl<S> std::fmt::Debug for Discover<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discover").finish_non_exhaustive()
    }
}

/// The running members of `cluster` that advertise the endpoint `name`, valued by that
/// endpoint (`host:port`).
pub fn discover(cluster: &Cluster, name: &str) -> Discover<String> {
    Discover::new(cluster, name, |_, addr| Some(addr.to_string()))
}

impl<S: Send + 'static> Discover<S> {
    /// The running members of `cluster` that advertise the endpoint `name`, each valued by
    /// `make(node, endpoint)`. A member for which `make` returns `None` (an endpoint it cannot
    /// use) is left out, as if it did not advertise one.
    pub fn new<F>(cluster: &Cluster, name: &str, make: F) -> Discover<S>
    where
        F: FnMut(&NodeName, &str) -> Option<S> + Send + 'static,
    {
        let follow = Follow {
            shared: cluster.shared().clone(),
            name: name.to_string(),
            make,
            rx: None,
            known: BTreeMap::new(),
            pending: VecDeque::new(),
        };
        let inner = futures::stream::unfold(follow, |mut f| async move {
            let change = f.next().await?;
            Some((change, f))
        });
        Discover {
            inner: inner.boxed(),
        }
    }
}

impl<S> Stream for Discover<S> {
    type Item = Result<Change<NodeName, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx).map(|c| c.map(Ok))
    }
}

/// The state of a [`Discover`]: what it told its reader, and what it has yet to.
struct Follow<S, F> {
    shared: Arc<Shared>,
    name: String,
    make: F,
    /// `None` until the first read, which reads the view and subscribes.
    rx: Option<broadcast::Receiver<Event>>,
    /// The members inserted and not removed since, with their endpoint.
    known: BTreeMap<NodeName, String>,
    pending: VecDeque<Change<NodeName, S>>,
}

impl<S, F: FnMut(&NodeName, &str) -> Option<S>> Follow<S, F> {
    async fn next(&mut self) -> Option<Change<NodeName, S>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Some(change);
            }
            let Some(rx) = self.rx.as_mut() else {
                self.resync();
                continue;
            };
            let received = tokio::select! {
                biased;
                r = rx.recv() => r,
                () = self.shared.cancel.cancelled() => return None,
            };
            match received {
                Ok(event) => self.apply(&event),
                Err(RecvError::Lagged(_)) => self.resync(),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the view and subscribes again; queues the difference from what was told.
    fn resync(&mut self) {
        let (view, rx) = self.shared.subscribe_with_view();
        self.rx = Some(rx);
        let now: BTreeMap<NodeName, String> = view
            .members()
            .filter(|e| e.status == Status::Running)
            .filter_map(|e| {
                let addr = endpoint_of(&e.member, &self.name)?;
                Some((e.member.node.clone(), addr.to_string()))
            })
            .collect();
        let gone: Vec<NodeName> = self
            .known
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        for node in gone {
            self.unset(&node);
        }
        for (node, addr) in now {
            if self.known.get(&node) != Some(&addr) {
                self.set(node, addr);
            }
        }
    }

    fn apply(&mut self, event: &Event) {
        match event.kind {
            EventKind::Left => self.unset(&event.node),
            EventKind::Joined | EventKind::Updated => {
                match endpoint_of(&event.member, &self.name) {
                    Some(addr) if self.known.get(&event.node).map(String::as_str) == Some(addr) => {
                    }
                    Some(addr) => self.set(event.node.clone(), addr.to_string()),
                    None => self.unset(&event.node),
                }
            }
        }
    }

    /// Inserts `node` at `addr`, or removes it when `make` cannot use `addr`.
    fn set(&mut self, node: NodeName, addr: String) {
        match (self.make)(&node, &addr) {
            Some(value) => {
                self.known.insert(node.clone(), addr);
                self.pending.push_back(Change::Insert(node, value));
            }
            None => {
                tracing::warn!(
                    "load balancing: cannot use the endpoint {:?} of {node}; leaving it out",
                    addr.escape_debug().to_string()
                );
                self.unset(&node);
            }
        }
    }

    fn unset(&mut self, node: &NodeName) {
        if self.known.remove(node).is_some() {
            self.pending.push_back(Change::Remove(node.clone()));
        }
    }
}

/// The task that sends a [`Discover`]'s changes to a channel (a tonic balance channel's
/// sender). It stops when the cluster stops, when the receiver is gone, or when this handle
/// is stopped or dropped.
#[derive(Debug)]
pub struct Feed {
    task: JoinHandle<()>,
}

impl Feed {
    /// Stops sending.
    pub fn stop(self) {}

    /// Whether the task has ended (the cluster stopped or the receiver is gone).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends every change of `discover` to `tx`, from a task of its own, until the cluster stops
/// or `tx`'s receiver is gone.
pub fn feed<S: Send + 'static>(
    discover: Discover<S>,
    tx: mpsc::Sender<Change<NodeName, S>>,
) -> Feed {
    feed_mapped(discover, tx, |c| c)
}

/// [`feed`], with each change turned into what `tx` takes.
fn feed_mapped<S, T, M>(mut discover: Discover<S>, tx: mpsc::Sender<T>, map: M) -> Feed
where
    S: Send + 'static,
    T: Send + 'static,
    M: Fn(Change<NodeName, S>) -> T + Send + 'static,
{
    let task = tokio::spawn(async move {
        while let Some(Ok(change)) = discover.next().await {
            if tx.send(map(change)).await.is_err() {
                break;
            }
        }
    });
    Feed { task }
}
