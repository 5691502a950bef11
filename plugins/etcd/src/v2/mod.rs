//! The etcd v2 backend (`api = v2`): HTTP/JSON `/v2/keys/...`, the layout and TTL refresh
//! EMQX 4.x uses, for etcd 3.4/3.5 started with `--enable-v2`.
//!
//! A registration is a key with a TTL (no lease): `createdIndex` is its incarnation (for
//! EMQX 4.x's own keys, which it writes again to keep them alive, the `createdIndex` of the
//! first write of a life: see `lives`), a keep-alive is `refresh=true&prevExist=true`, the watch is a `?wait=true&recursive=true`
//! long poll from `waitIndex`, and the lock is `PUT .../lock?prevExist=false` with a TTL,
//! refreshed with the node's keep-alives while held.
//!
//! `client` sends the requests (failover, errors), `wire` is what etcd answers,
//! `registration` is the node's key, `clash` what happens when another process holds it,
//! `snapshot` reads the nodes directory, `watch` follows it (with the cluster directory
//! around it), `lives` tells which life of a node a key is, `lock` is the cluster lock.

mod clash;
mod client;
mod lives;
mod lock;
mod record;
mod registration;
mod snapshot;
mod watch;
mod wire;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{
    async_trait, BoxStream, Capabilities, Discovery, Lease, LockToken, NodeName, Record,
    Registration, Result, Revision, Snapshot, WatchBatch,
};

use self::client::Client;
use crate::clash::Attempts;
use crate::config::EtcdConfig;
use crate::keys::{Garbage, Layout};
use crate::NAME;

/// The etcd v2 discovery backend.
#[derive(Debug)]
pub struct EtcdV2Backend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    layout: Layout,
    node: NodeName,
    garbage: Garbage,
    /// The life each listed node is in.
    lives: lives::Lives,
    /// Whether this node holds the v2 lock (its TTL is refreshed with the keep-alives).
    locked: AtomicBool,
    /// The log of other processes' attempts at this node's name.
    attempts: Attempts,
}

impl EtcdV2Backend {
    /// A v2 backend for `node` in `cluster`; builds the HTTP client (TLS files were checked
    /// by the config) but connects only on the first call.
    pub fn new(cfg: EtcdConfig, cluster: &str, node: NodeName) -> Result<EtcdV2Backend> {
        let layout = Layout::new(&cfg.prefix, cluster);
        Ok(EtcdV2Backend {
            inner: Arc::new(Inner {
                client: Client::new(cfg)?,
                layout,
                node,
                garbage: Garbage::default(),
                lives: lives::Lives::default(),
                locked: AtomicBool::new(false),
                attempts: Attempts::default(),
            }),
        })
    }
}

impl Inner {
    fn cfg(&self) -> &EtcdConfig {
        self.client.cfg()
    }
}

#[async_trait]
impl Discovery for EtcdV2Backend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.cfg().capabilities()
    }

    async fn register(&self, reg: &Registration) -> Result<Lease> {
        self.inner.register(reg).await
    }

    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        let ttl = self.inner.keep_alive(lease).await?;
        self.inner.refresh_lock().await;
        Ok(ttl)
    }

    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        self.inner.refresh(reg, lease).await
    }

    async fn deregister(&self, lease: &Lease) -> Result<()> {
        let _ = lease; // v2 keys carry no lease: the key is the registration
                       // As a revoked v3 lease releases its lock, so does a clean leave here.
        self.inner.release_lock().await?;
        self.inner.deregister().await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.inner.snapshot().await
    }

    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        watch::watch(self.inner.clone(), after)
    }

    async fn lock(&self, lease: &Lease, timeout: Duration) -> Result<LockToken> {
        self.inner.lock(lease, timeout).await
    }

    async fn unlock(&self, token: &LockToken) -> Result<()> {
        self.inner.unlock(token).await
    }

    fn invalid_entries(&self) -> u64 {
        self.inner.garbage.count()
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Record> {
        self.inner.create_record_v2(name, value).await
    }

    async fn read_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_record_v2(name).await
    }
}
