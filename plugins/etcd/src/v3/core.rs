//! The etcd v3 client wrapper: connects lazily on the first call (a node starts even when
//! etcd is down), with TLS, authentication, and failover over the configured endpoints.
//!
//! etcd-client's own balancer keeps sending requests to a dead endpoint, so this wrapper
//! holds one client per endpoint and lets [`Endpoints`] pick the one a call goes to.

use std::future::Future;
use std::time::Duration;

use autocluster_plugin::{Error, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::Mutex;

use crate::config::EtcdConfig;
use crate::error::from_etcd;
use crate::failover::{Bound, Endpoints, CALL_BUDGET};

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
    endpoints: Endpoints,
    clients: Vec<Mutex<Option<Client>>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("cfg", &self.cfg)
            .field("current", &self.endpoints.current())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core that has not connected yet.
    pub fn new(cfg: EtcdConfig) -> Core {
        let clients = cfg.servers.iter().map(|_| Mutex::new(None)).collect();
        let endpoints = Endpoints::new(cfg.servers.clone(), CALL_BUDGET);
        Core {
            cfg,
            endpoints,
            clients,
        }
    }

    /// The configuration.
    pub fn cfg(&self) -> &EtcdConfig {
        &self.cfg
    }

    /// The endpoints and which one is current.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Maps an error that happened on endpoint `idx` (a broken stream).
    pub fn error(&self, e: etcd_client::Error, op: &'static str, idx: usize) -> Error {
        from_etcd(e, op, &self.cfg, self.endpoints.url(idx), false)
    }

    /// Runs `f` with a client of the current endpoint, failing over as [`Endpoints::call`]
    /// says.
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        Ok(self.call_bounded(op, Bound::Share, f).await?.1)
    }

    /// [`Core::call`] for a call that waits by design (the Lock API): no endpoint's share
    /// of the call time cuts it.
    pub async fn call_waiting<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        Ok(self.call_bounded(op, Bound::Waits, f).await?.1)
    }

    /// [`Core::call`] that opens a stream: also says which endpoint the stream is on.
    pub async fn open<T, F, Fut>(&self, op: &'static str, f: F) -> Result<(usize, T)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.call_bounded(op, Bound::Share, f).await
    }

    async fn call_bounded<T, F, Fut>(
        &self,
        op: &'static str,
        bound: Bound,
        f: F,
    ) -> Result<(usize, T)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let f = &f;
        self.endpoints
            .call(op, bound, |idx| async move {
                let res = match self.client(idx).await {
                    Ok(c) => f(c).await,
                    Err(e) => Err(e),
                };
                res.map(|v| (idx, v)).map_err(|e| {
                    let fresh_tls = self.cfg.tls.is_some() && !self.endpoints.answered(idx);
                    from_etcd(e, op, &self.cfg, self.endpoints.url(idx), fresh_tls)
                })
            })
            .await
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
