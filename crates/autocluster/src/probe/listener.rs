//! The peer listener: answers probes, one bounded handshake per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::proof::{nonce, Role, Transcript};
use super::wire::{read_frame, write_frame, Frame, Refusal, WireError, VERSION};
use super::{Identity, DEFAULT_HANDSHAKE_TIMEOUT, MAX_CONCURRENT_HANDSHAKES};

/// Counters of what the listener did, readable while it serves.
#[derive(Debug, Default)]
pub struct ListenerStats {
    proven: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl ListenerStats {
    /// Handshakes completed: the prober proved it knows the cookie and got our proof.
    pub fn proven(&self) -> u64 {
        self.proven.load(Ordering::Relaxed)
    }

    /// Probers refused: a wrong cookie, another cluster, another target node, a version we
    /// do not speak.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections that ended without a verdict: garbage, a timeout, a client that hung up
    /// (also a prober that stopped on seeing a wrong node or cluster), or one over the
    /// concurrency limit.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// A bound peer listener; [`PeerListener::spawn`] serves it.
#[derive(Debug)]
pub struct PeerListener {
    listener: TcpListener,
    local: SocketAddr,
    me: Arc<Identity>,
    handshake_timeout: Duration,
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
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            stats: Arc::default(),
        })
    }

    /// Sets how long one client may take for the whole handshake
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
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

    /// Serves probes until the future is dropped; it never ends on its own.
    pub async fn run(self) {
        let local = self.local_addr();
        tracing::info!(node = %self.me.node, listen = %local, "peer listener serving probes");
        let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(listen = %local, error = %e, "peer listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "peer listener: too many handshakes at once, closing");
                continue;
            };
            let me = self.me.clone();
            let stats = self.stats.clone();
            let limit = self.handshake_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                answer(stream, peer, &me, limit, &stats).await;
            });
        }
    }
}

/// What one connection came to.
enum Verdict {
    Proven(String),
    Refused(Refusal, String),
    Failed(String),
}

async fn answer(
    mut stream: TcpStream,
    peer: SocketAddr,
    me: &Identity,
    limit: Duration,
    stats: &ListenerStats,
) {
    let _ = stream.set_nodelay(true);
    let verdict = tokio::time::timeout(limit, handshake(&mut stream, me, limit))
        .await
        .unwrap_or_else(|_| Verdict::Failed(format!("no complete handshake within {limit:?}")));
    match verdict {
        Verdict::Proven(prober) => {
            stats.proven.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %prober, "peer listener: probe answered");
        }
        Verdict::Refused(reason, why) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, ?reason, "peer listener: refused a probe: {why}");
        }
        Verdict::Failed(why) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "peer listener: handshake failed: {why}");
        }
    }
}

async fn handshake(stream: &mut TcpStream, me: &Identity, limit: Duration) -> Verdict {
    let failed = |e: WireError| Verdict::Failed(e.to_string());
    let hello = match read_frame(stream, limit).await {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let Frame::Hello {
        version,
        cluster,
        node: prober,
        target,
        nonce: prober_nonce,
    } = hello
    else {
        return Verdict::Failed("the first message is not a HELLO".into());
    };
    if version != VERSION {
        let why = format!("the prober speaks probe version {version}, this node {VERSION}");
        return refuse(stream, Refusal::Version, why, limit).await;
    }
    let listener_nonce = nonce();
    let me_node = me.node.as_str();
    let challenge = Frame::Challenge {
        version: VERSION,
        cluster: me.cluster.clone(),
        node: me_node.to_string(),
        nonce: listener_nonce,
    };
    if let Err(e) = write_frame(stream, &challenge, limit).await {
        return failed(e);
    }
    let mac = match read_frame(stream, limit).await {
        Ok(Frame::Proof { mac }) => mac,
        Ok(_) => return Verdict::Failed("expected a PROOF".into()),
        Err(e) => return failed(e),
    };
    if cluster != me.cluster {
        let why = format!(
            "{prober} is in cluster {cluster:?}, this node in {:?}",
            me.cluster
        );
        return refuse(stream, Refusal::WrongCluster, why, limit).await;
    }
    if target != me_node {
        let why = format!("{prober} asked for {target}, this is {me_node}");
        return refuse(stream, Refusal::WrongNode, why, limit).await;
    }
    let transcript = Transcript {
        cluster: &me.cluster,
        prober: &prober,
        listener: me_node,
        prober_nonce: &prober_nonce,
        listener_nonce: &listener_nonce,
    };
    if !transcript.verify(&me.cookie, Role::Prober, &mac) {
        let why = format!("{prober} does not know this cluster's cookie");
        return refuse(stream, Refusal::BadCookie, why, limit).await;
    }
    let welcome = Frame::Welcome {
        mac: transcript.prove(&me.cookie, Role::Listener),
    };
    match write_frame(stream, &welcome, limit).await {
        Ok(()) => Verdict::Proven(prober),
        Err(e) => failed(e),
    }
}

async fn refuse(stream: &mut TcpStream, reason: Refusal, why: String, limit: Duration) -> Verdict {
    let frame = Frame::Refused {
        reason,
        detail: why.clone(),
    };
    // The verdict stands whether or not the prober reads the refusal.
    let _ = write_frame(stream, &frame, limit).await;
    Verdict::Refused(reason, why)
}
