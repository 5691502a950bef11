//! [`ClusterBuilder`]: everything the settings say, the application's own labels, endpoints
//! and version, and the peer probe of list-only backends, started as one [`Cluster`].

use std::sync::Arc;
use std::time::SystemTime;

use autocluster_plugin::{Error, ErrorKind, Member, Metadata, Registration, Result};
use futures::future::BoxFuture;

use crate::config::Settings;
use crate::engine::{EngineConfig, ExtraTask, ProbeVerdict, Prober, Shared};
use crate::metadata;
use crate::probe::{
    probe_addr, probe_with_metadata, Identity, PeerListener, ProbeOutcome, DEFAULT_PORT,
};
use crate::view::unix_ms;
use crate::Cluster;

/// Builds a [`Cluster`] from loaded [`Settings`] ([`Cluster::builder`]): the labels
/// (`node.labels.*`) and endpoints (`node.advertise.*`) of the configuration, plus what the
/// application adds, checked as they are set; the first bad one is the error of
/// [`ClusterBuilder::start`], which also checks the size the backend carries.
#[derive(Debug)]
#[must_use = "a builder does nothing until started"]
pub struct ClusterBuilder {
    settings: Settings,
    meta: Metadata,
    error: Option<Error>,
}

impl ClusterBuilder {
    pub(crate) fn new(settings: &Settings) -> Self {
        let mut meta = Metadata::of(settings.node.clone()).with_version(env!("CARGO_PKG_VERSION"));
        meta.labels = settings.labels.clone();
        meta.endpoints = settings.endpoints.clone();
        ClusterBuilder {
            settings: settings.clone(),
            meta,
            error: None,
        }
    }

    /// With one more label (`zone`, `eu-1`), or a new value for one the configuration set.
    /// The key is 1 to 63 characters from `a-z`, `0-9`, `_` and `-`; the value at most 256
    /// bytes without control characters.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match metadata::check_label(&key, &value) {
            Ok(()) => {
                self.meta.labels.insert(key, value);
            }
            Err(e) => self.keep_first(e),
        }
        self
    }

    /// With one more named endpoint (`grpc`, `10.0.0.5:50051`), or a new address for one the
    /// configuration set. The name is formed as a label key; the address is `host:port`.
    pub fn endpoint(mut self, name: impl Into<String>, addr: impl Into<String>) -> Self {
        let (name, addr) = (name.into(), addr.into());
        match metadata::check_named_endpoint(&name, &addr) {
            Ok(()) => {
                self.meta.endpoints.insert(name, addr);
            }
            Err(e) => self.keep_first(e),
        }
        self
    }

    /// The application's version, instead of autocluster's (at most 128 bytes without
    /// control characters).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        let version = version.into();
        match metadata::check_version(&version) {
            Ok(()) => self.meta.version = Some(version),
            Err(e) => self.keep_first(e),
        }
        self
    }

    /// The metadata this node will register, as set so far.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    fn keep_first(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Builds the backend `cluster.discovery` names and runs the engine (with the peer
    /// listener and probe of static and DNS). Fails on the first bad label, endpoint or
    /// version set, on metadata larger than the backend carries, and on what the backend's
    /// own settings refuse. Does not wait for the backend: a node starts even when its
    /// backend is down, and registers once it answers.
    pub async fn start(self) -> Result<Cluster> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let settings = &self.settings;
        let backend = crate::dispatch::build_backend(settings)?;
        let meta = self
            .meta
            .with_addrs(settings.listen.iter().map(|a| a.to_string()).collect())
            .with_started_at_ms(unix_ms(SystemTime::now()));
        let mut config = EngineConfig::new(Registration {
            node: settings.node.clone(),
            meta,
        });
        config.call_timeout = settings.call_timeout;
        config.backoff_min = settings.backoff_min;
        config.backoff_max = settings.backoff_max;
        config.grace = settings.grace;
        config.probe_interval = settings.probe_interval;
        crate::engine::check_metadata(&config.registration, &backend)?;
        let mut extra: Vec<(&'static str, ExtraTask)> = Vec::new();
        let mut listener_stats = None;
        if backend.capabilities().candidates_only {
            let (listener, prober) = peer_listener_and_prober(settings).await?;
            config.registration.meta.addrs = vec![listener.local_addr().to_string()];
            listener_stats = Some(listener.stats());
            // The listener serves what this node registers, as it is at each probe.
            let serve: ExtraTask =
                Box::new(move |shared: &Arc<Shared>| -> BoxFuture<'static, ()> {
                    Box::pin(listener.serve_metadata(shared.own.subscribe()).run())
                });
            extra.push(("probe listener", serve));
            config.prober = Some(prober);
        }
        let mut cluster = Cluster::assemble(backend, config, extra);
        cluster.listener = listener_stats;
        cluster.cluster_name = Some(settings.cluster_name.as_str().into());
        cluster.formation = crate::formation::FormationState::new(
            &settings.cluster_name,
            crate::formation::FormationConfig::from_settings(settings)?,
        );
        Ok(cluster)
    }
}

/// For backends that list candidates only: listen on `node.listen` (default: the host of
/// `node.name`, port 4370) so peers can prove this node runs, and probe candidates the same
/// way.
async fn peer_listener_and_prober(settings: &Settings) -> Result<(PeerListener, Prober)> {
    let me = Identity::new(
        settings.node.clone(),
        settings.cluster_name.clone(),
        settings.cookie.clone(),
    );
    let listen = match settings.listen {
        Some(a) => a,
        None => probe_addr(&Member::bare(settings.node.clone()), DEFAULT_PORT)
            .await
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "node.listen is not set and the host of node.name ({}) does not resolve; \
                         set node.listen = ip:port",
                        settings.node.host()
                    ),
                )
                .with_key("node.listen")
            })?,
    };
    let listener = PeerListener::bind(listen, me.clone()).await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot listen for peer probes on {listen} (node.listen): {e}"),
        )
        .with_key("node.listen")
        .with_source(e)
    })?;
    tracing::info!(%listen, "peer probe listener up");
    let port = listen.port();
    let timeout = settings.call_timeout;
    let me = Arc::new(me);
    let prober: Prober = Arc::new(move |member: Member| {
        let me = me.clone();
        Box::pin(async move {
            let Some(addr) = probe_addr(&member, port).await else {
                tracing::debug!(node = %member.node, "no address to probe");
                return ProbeVerdict::not_running();
            };
            let (outcome, meta) = probe_with_metadata(&me, &member.node, addr, timeout).await;
            match &outcome {
                ProbeOutcome::Running => {}
                ProbeOutcome::Unreachable(why) => {
                    tracing::debug!(node = %member.node, %addr, "not running: {why}")
                }
                other => {
                    tracing::warn!(node = %member.node, %addr, "not counted as running: {other}")
                }
            }
            if outcome.is_running() {
                ProbeVerdict::running(meta)
            } else {
                ProbeVerdict::not_running()
            }
        })
    });
    Ok((listener, prober))
}
