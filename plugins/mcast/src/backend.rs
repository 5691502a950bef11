//! `McastDiscovery`: the `Discovery` primitives over authenticated multicast.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autocluster_plugin::{
    async_trait, BackendContext, BoxStream, Capabilities, Discovery, Error, ErrorKind, Lease,
    Registration, Registrations, Result, Revision, Snapshot, ViewMode, WatchBatch,
};
use futures::StreamExt;

use crate::config::McastConfig;
use crate::core::Core;
use crate::packet::{Kind, MAX_META};
use crate::stats::DropCounts;
use crate::{watch, NAME};

/// The multicast discovery backend. Sockets open on first use, inside a tokio runtime; the
/// receive loop stops when the backend is dropped.
pub struct McastDiscovery {
    core: Arc<Core>,
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
        self.core.stop();
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
        Capabilities {
            view: ViewMode::Push,
            registration: Registrations::Heartbeat,
            ttl: self.core.cfg.member_ttl,
            keep_alive_every: self.core.cfg.heartbeat,
            lock: false,
            candidates_only: false,
        }
    }

    /// Announces this node at once; peers answer with their own announces.
    async fn register(&self, reg: &Registration) -> Result<Lease> {
        self.check_registration(reg, "register")?;
        let core = &self.core;
        core.set_registered(Some(reg.meta.clone()));
        if let Err(e) = core
            .start_and_send(Kind::Announce, Some(reg.meta.clone()), "register")
            .await
        {
            core.set_registered(None);
            return Err(e);
        }
        Ok(Lease {
            id: core.incarnation,
            ttl: core.member_ttl(),
        })
    }

    /// Sends one heartbeat.
    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        self.check_lease(lease, "keep_alive")?;
        let core = &self.core;
        let Some(meta) = core.registered() else {
            return Err(core.error(ErrorKind::LeaseLost, "keep_alive", "not registered"));
        };
        core.start_and_send(Kind::Heartbeat, Some(meta), "keep_alive")
            .await?;
        Ok(core.member_ttl())
    }

    /// Takes new metadata and sends it in a heartbeat.
    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        self.check_registration(reg, "refresh")?;
        self.check_lease(lease, "refresh")?;
        let core = &self.core;
        core.set_registered(Some(reg.meta.clone()));
        core.start_and_send(Kind::Heartbeat, Some(reg.meta.clone()), "refresh")
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
        core.start_and_send(Kind::Leave, None, "deregister").await?;
        core.start_and_send(Kind::Leave, None, "deregister").await
    }

    /// The peers heard from within their TTL. This node is not among them: the engine
    /// lists it itself while it is registered.
    async fn snapshot(&self) -> Result<Snapshot> {
        self.core.start("snapshot").await?;
        Ok(self.core.view.snapshot(Instant::now()))
    }

    /// Every accepted announce, reply or heartbeat as a `Put` (with the sender's TTL), every
    /// accepted leave as a `Delete` of that incarnation.
    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        let core = self.core.clone();
        let start = futures::stream::once(async move {
            core.start("watch").await?;
            Ok::<_, Error>(core)
        });
        start
            .flat_map(move |started| match started {
                Ok(core) => watch::changes(core, after.0),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }

    fn invalid_entries(&self) -> u64 {
        self.core.stats.counts().total()
    }
}

/// Builds the backend from its context; see the crate docs.
pub fn build(ctx: &BackendContext) -> Result<Arc<dyn Discovery>> {
    Ok(Arc::new(McastDiscovery::new(ctx)?))
}
