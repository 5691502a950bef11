//! The simulated members: thousands of engine registration tasks in this process, sharing
//! one etcd connection.

use std::sync::Arc;
use std::time::Duration;

use autocluster::bench_support::{metadata, node_name, Registrar};
use autocluster::plugin::{async_trait, Capabilities, Discovery, Lease, Registration, Snapshot};
use autocluster::EngineConfig;
use autocluster_etcd::{EtcdBackend, EtcdConfig};
use tokio::sync::Semaphore;

use crate::probes::BoxError;

/// Simulated members: each is the engine's registration task (its own lease, keep-alive
/// stream and registration) over a sibling of one etcd backend, so all share that
/// backend's one connection. With `in_flight`, at most that many of their calls are in
/// flight on the shared connection at once (the same load shape as the floor's loop);
/// without, every member calls as soon as it starts, as separate processes would.
pub struct Members {
    base: EtcdBackend,
    limit: Option<Arc<Semaphore>>,
}

impl Members {
    pub async fn new(
        cfg: &EtcdConfig,
        cluster: &str,
        in_flight: Option<usize>,
    ) -> Result<Members, BoxError> {
        let base = EtcdBackend::new(cfg.clone(), cluster);
        // Connect before anything is timed.
        base.snapshot().await?;
        Ok(Members {
            base,
            limit: in_flight.map(|n| Arc::new(Semaphore::new(n.max(1)))),
        })
    }

    /// Starts member `i` (node `bench<i>@10.x.y.z`).
    pub fn spawn(&self, i: usize) -> Registrar {
        let config = EngineConfig::new(Registration {
            node: node_name(i),
            meta: metadata(i),
        });
        let backend: Arc<dyn Discovery> = match &self.limit {
            Some(permits) => Arc::new(Limited {
                inner: self.base.sibling(),
                permits: permits.clone(),
            }),
            None => Arc::new(self.base.sibling()),
        };
        Registrar::spawn(backend, config)
    }
}

/// A member's backend whose calls take a permit of the members' shared connection.
#[derive(Debug)]
struct Limited {
    inner: EtcdBackend,
    permits: Arc<Semaphore>,
}

#[async_trait]
impl Discovery for Limited {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn register(&self, reg: &Registration) -> autocluster::plugin::Result<Lease> {
        let _permit = self.permits.acquire().await;
        self.inner.register(reg).await
    }

    async fn keep_alive(&self, lease: &Lease) -> autocluster::plugin::Result<Duration> {
        let _permit = self.permits.acquire().await;
        self.inner.keep_alive(lease).await
    }

    async fn refresh(&self, reg: &Registration, lease: &Lease) -> autocluster::plugin::Result<()> {
        let _permit = self.permits.acquire().await;
        self.inner.refresh(reg, lease).await
    }

    async fn deregister(&self, lease: &Lease) -> autocluster::plugin::Result<()> {
        let _permit = self.permits.acquire().await;
        self.inner.deregister(lease).await
    }

    async fn snapshot(&self) -> autocluster::plugin::Result<Snapshot> {
        self.inner.snapshot().await
    }
}
