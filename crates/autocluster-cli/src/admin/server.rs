//! The admin endpoint's HTTP/1 server: its own accept loop, so that connections are bounded
//! in number and in time, whatever connects.
//!
//! - At most [`Limits::max_connections`] at once (derived from the open-file limit, see
//!   [`crate::limits`]). When all are taken, the oldest connection that has not sent a
//!   request yet is closed to make room; when every one has, the next waits in the listen
//!   backlog until one ends.
//! - A request head must arrive within [`Limits::header_timeout`], also on a kept-alive
//!   connection between requests (hyper's header-read timeout covers both); a response whose
//!   writes make no progress for [`Limits::write_stall`] ends its connection.
//! - A failed accept (out of descriptors, say) is counted, logged at most every 10 s, and
//!   retried after a delay that grows to 1 s, never in a busy loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

use super::stall::StallGuard;
use crate::limits::RateLimited;

/// The first delay after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a request head may take to arrive, also between requests.
    pub header_timeout: Duration,
    /// How long a response's writes may make no progress.
    pub write_stall: Duration,
}

/// The server's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// [`Limits::max_connections`].
    pub max: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections closed for a request head that did not come in time, or a stalled write.
    pub timed_out: AtomicU64,
    /// Accepts that failed.
    pub accept_errors: AtomicU64,
}

/// Serves `router` on `listener` until `stop` turns true; then lets open connections finish
/// their current request (the caller bounds how long). Dropping the future closes them all.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ServerStats>,
    mut stop: watch::Receiver<bool>,
) {
    stats
        .max
        .store(limits.max_connections as u64, Ordering::Relaxed);
    let slots = Arc::new(Slots::new(limits.max_connections, stats.clone()));
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut warn = RateLimited::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let permit = tokio::select! {
                    p = slots.acquire() => p,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let conn = Conn {
                    slot: slots.register(permit),
                    router: router.clone(),
                    limits,
                    stop: stop.clone(),
                };
                conns.spawn(conn.run(tcp));
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = warn.allow() {
                    tracing::warn!(
                        suppressed,
                        "the admin endpoint cannot accept a connection: {e}; retrying in {backoff:?}"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// The connections open, in the order they came; each holds a permit of `permits`.
struct Slots {
    permits: Arc<Semaphore>,
    open: Mutex<BTreeMap<u64, Arc<SlotState>>>,
    next: AtomicU64,
    stats: Arc<ServerStats>,
}

/// What the accept loop knows of one connection.
#[derive(Default)]
struct SlotState {
    /// It has sent a request head: a client, not an idle socket.
    proven: AtomicBool,
    /// Raised to close it.
    evict: Notify,
}

impl Slots {
    fn new(max: usize, stats: Arc<ServerStats>) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max.max(1))),
            open: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            stats,
        }
    }

    /// A free slot; when none is, the oldest connection that sent nothing gives way.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return p;
        }
        self.evict_oldest_silent();
        match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    fn evict_oldest_silent(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = open
            .iter()
            .find(|(_, s)| !s.proven.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        if let Some(state) = oldest.and_then(|id| open.remove(&id)) {
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            state.evict.notify_one();
        }
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState::default());
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state.clone());
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Slot {
            id,
            state,
            slots: self.clone(),
            _permit: permit,
        }
    }
}

/// One connection's place; given back when dropped.
struct Slot {
    id: u64,
    state: Arc<SlotState>,
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = &self.slots;
        slots
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        slots.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection being served.
struct Conn {
    slot: Slot,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn run(mut self, tcp: tokio::net::TcpStream) {
        let state = self.slot.state.clone();
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            state.proven.store(true, Ordering::Relaxed);
            let mut router = router.clone();
            async move { router.call(req.map(axum::body::Body::new)).await }
        });
        let io = TokioIo::new(StallGuard::new(tcp, self.limits.write_stall));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let stats = &self.slot.slots.stats;
        tokio::select! {
            ended = conn.as_mut() => {
                match ended {
                    Err(e) if e.is_timeout() || is_stall(&e) => {
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::debug!("admin connection ended: {e}"),
                    Ok(()) => {}
                }
                return;
            }
            // Counted by the evicter.
            _ = self.slot.state.evict.notified() => return,
            _ = self.stop.wait_for(|s| *s) => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// Whether `e` is a write that stalled past [`Limits::write_stall`].
fn is_stall(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server of `/` with `max` connections and a header timeout of `header_ms`.
    async fn start(
        max: usize,
        header_ms: u64,
    ) -> (std::net::SocketAddr, Arc<ServerStats>, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: max,
            header_timeout: Duration::from_millis(header_ms),
            write_stall: Duration::from_secs(5),
        };
        let stats = Arc::new(ServerStats::default());
        let (stop, stopping) = watch::channel(false);
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(listener, router, limits, stats.clone(), stopping));
        (addr, stats, stop)
    }

    /// Reads until the server closes; how long that took.
    async fn closed_within(conn: &mut TcpStream, bound: Duration) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            let n = tokio::time::timeout(bound, conn.read(&mut buf))
                .await
                .expect("closed in time")
                .unwrap_or(0);
            if n == 0 {
                return started.elapsed();
            }
        }
    }

    #[tokio::test]
    async fn a_silent_connection_and_an_idle_kept_alive_one_are_closed() {
        let (addr, stats, _stop) = start(4, 300).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let took = closed_within(&mut silent, Duration::from_secs(5)).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");

        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        kept.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        closed_within(&mut kept, Duration::from_secs(5)).await;
        assert_eq!(stats.timed_out.load(Ordering::Relaxed), 2);
        assert_eq!(stats.open.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn when_full_the_oldest_silent_connection_makes_room() {
        let (addr, stats, _stop) = start(2, 10_000).await;
        let mut oldest = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        closed_within(&mut oldest, Duration::from_secs(5)).await;
        third.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        third.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        assert!(stats.evicted.load(Ordering::Relaxed) >= 1);
        assert!(stats.open.load(Ordering::Relaxed) <= 2);
    }
}
