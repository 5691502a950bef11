//! `McastDiscovery`: the `Discovery` primitives over authenticated multicast.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autocluster_plugin::{
    async_trait, BackendContext, BoxStream, Capabilities, Discovery, Error, ErrorKind, Lease,
    Metadata, Registration, Registrations, Result, WatchBatch,
};
use tokio::sync::mpsc;

use crate::config::McastConfig;
use crate::core::Core;
use crate::listen::Listening;
use crate::observe;
use crate::packet::{Kind, MAX_META};
use crate::stats::DropCounts;
use crate::NAME;

/// The multicast discovery backend. Sockets open on first use, inside a tokio runtime; the
/// receive loop stops when the backend is dropped.
pub struct McastDiscovery {
    core: Arc<Core>,
    listening: Listening,
}

impl fmt::Debug for McastDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McastDiscovery")
            .field("node", &self.core.node)
            .field("cluster", &self.core.cluster)
            .field("config", &self.core.cfg)
            .finish_non_exhaustive()
    }
}

impl Drop for McastDiscovery {
    fn drop(&mut self) {
        self.listening.stop();
    }
}

impl McastDiscovery {
    /// Checks the settings and the cookie; opens nothing yet.
    pub fn new(ctx: &BackendContext) -> Result<Self> {
        let cfg = McastConfig::from_section(&ctx.section)?;
        if ctx.cookie.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "node.cookie: expected a shared secret: mcast discovery authenticates its packets with it",
            )
            .with_key("node.cookie"));
        }
        if ctx.cluster.is_empty() || ctx.cluster.len() > 255 {
            return Err(
                Error::new(ErrorKind::Config, "cluster.name: expected 1 to 255 bytes")
                    .with_key("cluster.name"),
            );
        }
        if ctx.node.as_str().len() > 255 {
            return Err(Error::new(
                ErrorKind::Config,
                "node.name: expected at most 255 bytes for mcast discovery",
            )
            .with_key("node.name"));
        }
        let core = Core::new(cfg, &ctx.cookie, ctx.cluster.clone(), ctx.node.clone());
        Ok(McastDiscovery {
            core: Arc::new(core),
            listening: Listening::default(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &McastConfig {
        &self.core.cfg
    }

    /// This process's incarnation, the [`Lease::id`] `register` returns.
    pub fn incarnation(&self) -> u64 {
        self.core.incarnation
    }

    /// The datagrams dropped so far, by reason.
    pub fn drops(&self) -> DropCounts {
        self.core.stats.counts()
    }

    /// Authentic observations dropped because the engine had fallen behind (the members
    /// concerned are heard again, or expire by their TTL).
    pub fn observations_lost(&self) -> u64 {
        self.core.observations_lost.load(Ordering::Relaxed)
    }

    /// Starts listening if need be, then sends.
    async fn send(&self, kind: Kind, meta: Option<Metadata>, op: &'static str) -> Result<()> {
        self.listening.ensure(&self.core, op)?;
        self.core.send(kind, meta, op).await
    }

    fn check_lease(&self, lease: &Lease, op: &'static str) -> Result<()> {
        if lease.id != self.core.incarnation || self.core.registered().is_none() {
            return Err(self.core.error(
                ErrorKind::LeaseLost,
                op,
                "this node is not registered (or under another incarnation)",
            ));
        }
        Ok(())
    }

    fn check_registration(&self, reg: &Registration, op: &'static str) -> Result<()> {
        if reg.node != self.core.node {
            return Err(self.core.error(
                ErrorKind::Config,
                op,
                format!(
                    "registration for {} on a backend built for {}",
                    reg.node, self.core.node
                ),
            ));
        }
        let len = serde_json::to_vec(&reg.meta)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if len > MAX_META {
            return Err(self.core.error(
                ErrorKind::Config,
                op,
                format!("the metadata is {len} bytes as JSON; a multicast packet carries at most {MAX_META}"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Discovery for McastDiscovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::observe()
            .with_registration(
                Registrations::Heartbeat,
                self.core.cfg.member_ttl,
                self.core.cfg.heartbeat,
            )
            .with_max_metadata_bytes(MAX_META)
    }

    /// Announces this node at once; peers answer with their own announces.
    async fn register(&self, reg: &Registration) -> Result<Lease> {
        self.check_registration(reg, "register")?;
        let core = &self.core;
        core.set_registered(Some(reg.meta.clone()));
        if let Err(e) = self
            .send(Kind::Announce, Some(reg.meta.clone()), "register")
            .await
        {
            core.set_registered(None);
            return Err(e);
        }
        Ok(Lease {
            id: core.incarnation,
            ttl: core.member_ttl(),
            age: Duration::ZERO,
        })
    }

    /// Sends one heartbeat. Fails with `Conflict` (after sending it: this node stays a
    /// member) while another live process uses this node's name.
    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        self.check_lease(lease, "keep_alive")?;
        let core = &self.core;
        let Some(meta) = core.registered() else {
            return Err(core.error(ErrorKind::LeaseLost, "keep_alive", "not registered"));
        };
        self.send(Kind::Heartbeat, Some(meta), "keep_alive").await?;
        if let Some(other) = core.clash(Instant::now()) {
            return Err(core.error(
                ErrorKind::Conflict,
                "keep_alive",
                format!(
                    "another live process uses the node name {} (incarnation {other:x}, this \
                     one {:x}): give each node its own node.name",
                    core.node, core.incarnation
                ),
            ));
        }
        Ok(core.member_ttl())
    }

    /// Takes new metadata and sends it in a heartbeat.
    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        self.check_registration(reg, "refresh")?;
        self.check_lease(lease, "refresh")?;
        let core = &self.core;
        core.set_registered(Some(reg.meta.clone()));
        self.send(Kind::Heartbeat, Some(reg.meta.clone()), "refresh")
            .await?;
        Ok(())
    }

    /// Sends a leave, twice (datagrams get lost); peers remove this node at once.
    async fn deregister(&self, lease: &Lease) -> Result<()> {
        let core = &self.core;
        if lease.id != core.incarnation {
            return Ok(());
        }
        core.set_registered(None);
        self.send(Kind::Leave, None, "deregister").await?;
        self.send(Kind::Leave, None, "deregister").await
    }

    /// Every accepted announce, reply or heartbeat as a `Put` (with the sender's TTL), every
    /// accepted leave as a `Delete` of that incarnation. This node is not among them: the
    /// engine lists it itself while it is registered.
    fn observe(&self) -> BoxStream<Result<WatchBatch>> {
        let alive = match self.listening.ensure(&self.core, "observe") {
            Ok(alive) => alive,
            Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
        };
        let (tx, rx) = mpsc::channel(observe::QUEUE);
        self.core.set_observer(tx);
        observe::stream(self.core.clone(), rx, alive)
    }

    fn invalid_entries(&self) -> u64 {
        self.core.stats.counts().total()
    }
}

/// Builds the backend from its context; see the crate docs.
pub fn build(ctx: &BackendContext) -> Result<Arc<dyn Discovery>> {
    Ok(Arc::new(McastDiscovery::new(ctx)?))
}
