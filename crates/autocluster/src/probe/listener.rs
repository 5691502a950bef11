//! The peer listener: accepts probes, and serves each connection in a task it owns, within
//! the limits of [`Admission`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::admission::Admission;
use super::answer::{answer, Deadlines, Served};
use super::stats::{ConnectionOutcome, ListenerStats};
use super::{
    Identity, DEFAULT_HANDSHAKE_TIMEOUT, FIRST_FRAME_TIMEOUT, MAX_CONCURRENT_HANDSHAKES,
    MAX_HANDSHAKES_PER_SOURCE,
};

/// A bound peer listener; [`PeerListener::spawn`] or [`PeerListener::run`] serves it.
#[derive(Debug)]
pub struct PeerListener {
    listener: TcpListener,
    local: SocketAddr,
    me: Arc<Identity>,
    served: Served,
    deadlines: Deadlines,
    max: usize,
    per_source: usize,
    stats: Arc<ListenerStats>,
}

impl PeerListener {
    /// Binds `addr` (`node.listen`) for `me`.
    pub async fn bind(addr: SocketAddr, me: Identity) -> std::io::Result<PeerListener> {
        let listener = TcpListener::bind(addr).await?;
        Ok(PeerListener {
            local: listener.local_addr()?,
            listener,
            me: Arc::new(me),
            served: None,
            deadlines: Deadlines {
                first_frame: FIRST_FRAME_TIMEOUT,
                handshake: DEFAULT_HANDSHAKE_TIMEOUT,
            },
            max: MAX_CONCURRENT_HANDSHAKES,
            per_source: MAX_HANDSHAKES_PER_SOURCE,
            stats: Arc::default(),
        })
    }

    /// Sets how long one client may take for the whole handshake
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.handshake = timeout;
        self
    }

    /// Sets how long a client may take to send its first message after connecting
    /// (default [`FIRST_FRAME_TIMEOUT`]; never more than the handshake timeout).
    pub fn with_first_frame_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.first_frame = timeout;
        self
    }

    /// Sets how many unfinished handshakes the listener keeps in all
    /// (default [`MAX_CONCURRENT_HANDSHAKES`]) and from one IP address
    /// (default [`MAX_HANDSHAKES_PER_SOURCE`]); at least 1 each.
    pub fn with_limits(mut self, max: usize, per_source: usize) -> Self {
        self.max = max;
        self.per_source = per_source;
        self
    }

    /// Serves the metadata of `own`, as it is at each probe, to every prober that proved the
    /// cookie, after its WELCOME (see [`probe_with_metadata`](super::probe_with_metadata));
    /// [`Cluster::start`](crate::Cluster::start) passes the node's registration. Metadata
    /// larger than [`MAX_METADATA_BYTES`](super::MAX_METADATA_BYTES) as JSON is not served.
    pub fn serve_metadata(
        mut self,
        own: tokio::sync::watch::Receiver<autocluster_plugin::Registration>,
    ) -> Self {
        self.served = Some(own);
        self
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listener's counters, shared with the serving task.
    pub fn stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }

    /// Serves probes until the returned task is aborted (or the runtime stops).
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Serves probes until the future is dropped; it never ends on its own. The connections'
    /// tasks belong to it: dropping it ends them too.
    pub async fn run(self) {
        let local = self.local_addr();
        tracing::info!(node = %self.me.node, listen = %local, "peer listener serving probes");
        let admission = Admission::new(self.max, self.per_source);
        let mut tasks = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            match accepted {
                Ok((stream, peer)) => self.serve(stream, peer, &admission, &mut tasks),
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    let why = format!("accepting on {local} failed: {e}");
                    self.stats
                        .record(ConnectionOutcome::AcceptFailed, &"none", &why);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Admits a new connection (closing the ones that give way to it) and serves it.
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        admission: &Arc<Admission>,
        tasks: &mut JoinSet<()>,
    ) {
        let (ticket, evicted) = match admission.admit(peer) {
            Ok(admitted) => admitted,
            Err(full) => {
                let why = format!(
                    "closed a new connection: {full} unfinished handshakes, each about to end"
                );
                self.stats.record(ConnectionOutcome::Evicted, &peer, &why);
                return;
            }
        };
        for e in evicted {
            if let Some(task) = e.task {
                task.abort();
            }
            let why = format!(
                "closed the oldest connection that had not proved the cookie, to make room \
                 for one from {peer}: {} unfinished handshakes (a flood of idle connections?)",
                e.full
            );
            self.stats.record(ConnectionOutcome::Evicted, &e.peer, &why);
        }
        let me = self.me.clone();
        let served = self.served.clone();
        let stats = self.stats.clone();
        let deadlines = self.deadlines;
        let id = ticket.id();
        let task = tasks.spawn(async move {
            answer(stream, peer, &me, &served, deadlines, &stats, ticket).await;
        });
        admission.served_by(id, task);
    }
}
