//! The etcd v3 client wrapper: connects lazily on the first call (a node starts even when
//! etcd is down), with TLS, authentication, and failover over the configured endpoints.
//!
//! etcd-client's own balancer keeps sending requests to a dead endpoint, so this wrapper
//! holds one client per endpoint and sticks to the one that answered last; a call that finds
//! its endpoint unreachable moves on to the next one within the same attempt.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use autocluster_plugin::{Error, ErrorKind, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::Mutex;

use crate::config::EtcdConfig;
use crate::error::from_etcd;
use crate::NAME;

/// How long a TCP (and TLS) connection to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings on open streams (watch, keep-alive) find a dead or paused server. etcd
/// refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Large snapshots and watch batches (thousands of members, 64 KiB values) fit.
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The lazily connected clients, one per endpoint.
pub struct Core {
    cfg: EtcdConfig,
    clients: Vec<Mutex<Option<Client>>>,
    /// Per endpoint: whether it ever answered (see `from_etcd`'s `fresh_tls`).
    answered: Vec<AtomicBool>,
    current: AtomicUsize,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("cfg", &self.cfg)
            .field("current", &self.current_endpoint())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core that has not connected yet.
    pub fn new(cfg: EtcdConfig) -> Core {
        let clients = cfg.servers.iter().map(|_| Mutex::new(None)).collect();
        let answered = cfg.servers.iter().map(|_| AtomicBool::new(false)).collect();
        Core {
            cfg,
            clients,
            answered,
            current: AtomicUsize::new(0),
        }
    }

    /// The configuration.
    pub fn cfg(&self) -> &EtcdConfig {
        &self.cfg
    }

    /// The endpoint calls go to now.
    pub fn current_endpoint(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.cfg.servers.len();
        &self.cfg.servers[i]
    }

    /// Maps an error that happened on the current endpoint (a broken stream).
    pub fn error(&self, e: etcd_client::Error, op: &'static str) -> Error {
        from_etcd(e, op, &self.cfg, self.current_endpoint(), false)
    }

    /// Runs `f` with a client of the current endpoint; when that endpoint is unreachable,
    /// with the next one, until each was tried once.
    pub async fn call<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut unreachable = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let url = &self.cfg.servers[idx];
            let res = match self.client(idx).await {
                Ok(c) => f(c).await,
                Err(e) => Err(e),
            };
            let e = match res {
                Ok(v) => {
                    self.current.store(idx, Ordering::Relaxed);
                    self.answered[idx].store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    let fresh_tls =
                        self.cfg.tls.is_some() && !self.answered[idx].load(Ordering::Relaxed);
                    from_etcd(e, op, &self.cfg, url, fresh_tls)
                }
            };
            if e.kind() != ErrorKind::Unavailable || n == 1 {
                return Err(e);
            }
            tracing::debug!(backend = NAME, endpoint = %url, "{e}; trying the next endpoint");
            unreachable.push(e);
        }
        // Every endpoint was unreachable: say so, with the last one's cause.
        let mut e = Error::new(
            ErrorKind::Unavailable,
            format!("cannot reach any etcd endpoint of {}", self.cfg.endpoints()),
        )
        .with_backend(NAME)
        .with_operation(op)
        .with_endpoint(self.cfg.endpoints());
        if let Some(last) = unreachable.pop() {
            e = e.with_source(last);
        }
        Err(e)
    }

    /// The client of endpoint `idx`, connecting first if needed.
    async fn client(&self, idx: usize) -> std::result::Result<Client, etcd_client::Error> {
        let mut slot = self.clients[idx].lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect([&self.cfg.servers[idx]], Some(self.options())).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(PING_EVERY, PING_TIMEOUT)
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            o = o
                .with_user(u.clone(), p.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &self.cfg.tls {
            let mut t = TlsOptions::new().timeout(CONNECT_TIMEOUT);
            t = match &tls.ca_pem {
                Some(ca) => t.ca_certificate(Certificate::from_pem(ca)),
                None => t.with_native_roots(),
            };
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(Identity::from_pem(cert, key));
            }
            o = o.with_tls(t);
        }
        o
    }
}
