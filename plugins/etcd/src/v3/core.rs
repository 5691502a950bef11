//! The etcd v3 client wrapper: connects lazily on the first call (a node starts even when
//! etcd is down), with TLS, authentication, and failover over the configured endpoints.
//!
//! etcd-client's own balancer keeps sending requests to a dead endpoint, so this wrapper
//! holds one client per endpoint and lets [`Endpoints`] pick the one a call goes to.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use autocluster_plugin::{Error, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::Mutex;

use crate::config::EtcdConfig;
use crate::error::from_etcd;
use crate::failover::{Bound, Endpoints};

/// The largest message decoded. A snapshot page is sized to stay well below it, and a watch
/// asks etcd to fragment large revisions (a fragment is about `--max-request-bytes`, 1.5 MiB
/// by default); this much leaves room for a single event or key of any size etcd accepts
/// with sane settings.
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The lazily connected clients, one per endpoint.
pub struct Core {
    cfg: EtcdConfig,
    endpoints: Endpoints,
    clients: Vec<Mutex<Option<Client>>>,
    /// The revision etcd last reported in an answer other than the watch's (keep-alives,
    /// registration, snapshots): the watch must show it got that far, or it is stalled.
    seen: AtomicI64,
    /// Per endpoint: whether we said that a watch there does not answer progress requests.
    warned_no_progress: Vec<AtomicBool>,
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
        let warned_no_progress = cfg.servers.iter().map(|_| AtomicBool::new(false)).collect();
        let endpoints = Endpoints::new(cfg.servers.clone(), cfg.call_timeout);
        Core {
            cfg,
            endpoints,
            clients,
            seen: AtomicI64::new(0),
            warned_no_progress,
        }
    }

    /// etcd answered with `revision` in a response header (0: no header).
    pub fn saw(&self, revision: i64) {
        if revision > 0 {
            // The last one, not the largest: a replaced etcd starts again from 1.
            self.seen.store(revision, Ordering::Relaxed);
        }
    }

    /// The revision etcd last reported outside the watch (0: none yet).
    pub fn seen(&self) -> i64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// A watch on endpoint `idx` does not answer progress requests: says so, once.
    pub fn warn_no_progress(&self, idx: usize) {
        if !self.warned_no_progress[idx].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                backend = crate::NAME,
                endpoint = self.endpoints.url(idx),
                "etcd at this endpoint does not answer watch progress requests (an etcd gRPC \
                 proxy ignores them; some etcd versions do not answer a quiet watch): a watch \
                 that falls behind cannot be told from a quiet one there, and is taken as live \
                 while its stream is open"
            );
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
        let t = self.cfg.timeouts();
        let mut o = ConnectOptions::new()
            .with_connect_timeout(t.connect)
            .with_keep_alive(t.ping_every, t.ping_timeout)
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            o = o
                .with_user(u.clone(), p.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &self.cfg.tls {
            let mut opts = TlsOptions::new().timeout(t.connect);
            opts = match &tls.ca_pem {
                Some(ca) => opts.ca_certificate(Certificate::from_pem(ca)),
                None => opts.with_native_roots(),
            };
            if let Some((cert, key)) = &tls.identity {
                opts = opts.identity(Identity::from_pem(cert, key));
            }
            o = o.with_tls(opts);
        }
        o
    }
}
