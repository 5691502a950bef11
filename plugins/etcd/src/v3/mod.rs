//! The etcd v3 backend (the default, `api = v3`): leases, a prefix watch, and the Lock API,
//! over gRPC.
//!
//! `core` is the client wrapper (connections, TLS, auth, failover), `registration` writes
//! the node's key (never over another live registration), `keeper` keeps the lease alive,
//! `snapshot` reads the prefix in pages, `watch` follows it and `progress` tells whether the
//! watch keeps up; the lock is here.

mod coalesce;
mod core;
mod keeper;
mod progress;
mod record;
mod registration;
mod snapshot;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{
    async_trait, BoxStream, Capabilities, Discovery, Error, ErrorKind, Lease, LockToken, NodeName,
    Record, Registration, Result, Revision, Snapshot, WatchBatch,
};
use etcd_client::LockOptions;
use tokio::sync::Mutex;

use self::core::Core;
use self::keeper::Keeper;
use crate::clash::Attempts;
use crate::config::EtcdConfig;
use crate::keys::{Garbage, Layout};
use crate::NAME;

/// How long the clean-up after a lock timeout, or after a failed registration, may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The etcd v3 discovery backend.
#[derive(Debug)]
pub struct EtcdBackend {
    shared: Arc<Shared>,
    keeper: Mutex<Option<Keeper>>,
    /// Leases granted for a registration whose claim got no answer (see `registration.rs`).
    unanswered: registration::Unanswered,
    /// The node this backend was built for: its watch also follows the node's clash marker.
    me: Option<NodeName>,
}

#[derive(Debug)]
struct Shared {
    core: Core,
    layout: Layout,
    garbage: Garbage,
    /// The log of other processes' attempts at this node's name.
    attempts: Attempts,
    /// The watch opened for the last snapshot, until the engine asks for it.
    prepared: std::sync::Mutex<Option<watch::Prepared>>,
    /// About how many nodes the prefix holds: the last snapshot's, plus keys created and
    /// minus keys deleted on the watch since (for [`coalesce`]: only a large cluster pays
    /// for batches with latency).
    nodes: std::sync::atomic::AtomicU64,
}

impl EtcdBackend {
    /// A backend for `cluster` with `cfg`; it connects on its first call.
    pub fn new(cfg: EtcdConfig, cluster: &str) -> EtcdBackend {
        let layout = Layout::new(&cfg.prefix, cluster);
        EtcdBackend {
            shared: Arc::new(Shared {
                core: Core::new(cfg),
                layout,
                garbage: Garbage::default(),
                attempts: Attempts::default(),
                prepared: std::sync::Mutex::new(None),
                nodes: Default::default(),
            }),
            keeper: Mutex::new(None),
            unanswered: Default::default(),
            me: None,
        }
    }

    /// The backend of `node`: its watch also follows the marker a process refused `node`'s
    /// name leaves, and logs the attempt (see [`crate::build`], which builds it so).
    pub fn for_node(mut self, node: NodeName) -> EtcdBackend {
        self.me = Some(node);
        self
    }

    /// Another backend over the same etcd connections (and layout), with its own lease and
    /// keep-alive stream: for a process that registers several nodes; the benchmarks
    /// register thousands from one process this way.
    pub fn sibling(&self) -> EtcdBackend {
        EtcdBackend {
            shared: self.shared.clone(),
            keeper: Mutex::new(None),
            unanswered: Default::default(),
            me: None,
        }
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    fn cfg(&self) -> &EtcdConfig {
        self.shared.core.cfg()
    }

    fn core(&self) -> &Core {
        &self.shared.core
    }
}

/// The end of the prefix range: the prefix with its last byte incremented (`/a/` -> `/a0`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait]
impl Discovery for EtcdBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.cfg().capabilities()
    }

    async fn register(&self, reg: &Registration) -> Result<Lease> {
        self.register_node(reg).await
    }

    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        keeper::keep_alive(self.core(), &self.keeper, lease).await
    }

    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        self.refresh_node(reg, lease).await
    }

    async fn deregister(&self, lease: &Lease) -> Result<()> {
        self.keeper.lock().await.take();
        let id = lease.id as i64;
        let revoke = self
            .core()
            .call(
                "deregister",
                |mut c| async move { c.lease_revoke(id).await },
            )
            .await;
        match revoke {
            Ok(_) => Ok(()),
            // Already gone is what we wanted.
            Err(e) if e.kind() == ErrorKind::LeaseLost => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.shared.snapshot_with_watch(self.me().cloned()).await
    }

    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        watch::watch(self.shared.clone(), self.me().cloned(), after)
    }

    async fn lock(&self, lease: &Lease, timeout: Duration) -> Result<LockToken> {
        let timeout = if timeout.is_zero() {
            self.cfg().lock_timeout
        } else {
            timeout
        };
        let id = lease.id as i64;
        let name = self.shared.layout.lock_name();
        let attempt = self.core().call_waiting("lock", |mut c| async move {
            c.lock(name, Some(LockOptions::new().with_lease(id))).await
        });
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(resp)) => Ok(LockToken {
                key: String::from_utf8_lossy(resp.key()).into_owned(),
                lease: lease.id,
                fence: Revision(resp.header().map_or(0, |h| h.revision()).max(0) as u64),
            }),
            Ok(Err(e)) => Err(e.with_key(name)),
            Err(_) => {
                // etcd removes the waiter's key when the cancelled call reaches it; delete it
                // too, so no dangling waiter blocks the next holder whatever the timing.
                let waiter = format!("{name}/{id:x}");
                let delete = self.core().call("lock", |mut c| {
                    let waiter = waiter.clone();
                    async move { c.delete(waiter, None).await }
                });
                let _ = tokio::time::timeout(CLEANUP_TIMEOUT, delete).await;
                Err(Error::new(
                    ErrorKind::LockTimeout,
                    format!("the cluster lock {name} was not acquired within {timeout:?}"),
                )
                .with_backend(NAME)
                .with_operation("lock")
                .with_key(name))
            }
        }
    }

    async fn unlock(&self, token: &LockToken) -> Result<()> {
        let key = token.key.clone();
        self.core()
            .call("unlock", |mut c| {
                let key = key.clone();
                async move { c.unlock(key).await }
            })
            .await
            .map_err(|e| e.with_key(key.clone()))?;
        Ok(())
    }

    fn invalid_entries(&self) -> u64 {
        self.shared.garbage.count()
    }

    async fn create_record(&self, name: &str, value: &[u8]) -> Result<Record> {
        self.create_record_v3(name, value).await
    }

    async fn read_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.read_record_v3(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_a_true_prefix_range() {
        assert_eq!(
            prefix_end("/emqxcl/emqxcl/nodes/"),
            b"/emqxcl/emqxcl/nodes0".to_vec()
        );
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
