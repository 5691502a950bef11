//! The handle an application embeds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autocluster_plugin::{
    Discovery, Error, ErrorKind, LockToken, Member, Metadata, NodeName, Registration, Result,
};
use futures::future::BoxFuture;
use tokio::sync::{broadcast, watch};

use crate::config::Settings;
use crate::engine::{Engine, EngineConfig, Prober, Shared, Stats};
use crate::probe::{
    probe, probe_addr, Identity, ListenerStats, PeerListener, ProbeOutcome, DEFAULT_PORT,
};
use crate::view::{unix_ms, Event, Health, View};

/// A running membership: this node registered through its backend, and a live view of the
/// others.
///
/// ```no_run
/// # async fn demo() -> Result<(), autocluster::plugin::Error> {
/// let cluster = autocluster::Cluster::from_file("node.conf").await?;
/// println!("{}", cluster.view().emqx_status_line());
/// let mut events = cluster.events();
/// while let Ok(event) = events.recv().await {
///     println!("{} {}", event.kind.as_str(), event.node);
/// }
/// cluster.leave().await?;
/// # Ok(()) }
/// ```
pub struct Cluster {
    engine: Engine,
    shared: Arc<Shared>,
    /// The peer listener's counters, when this node runs one.
    listener: Option<Arc<ListenerStats>>,
    /// `cluster.name`, when started from settings (a label of `autocluster_info`).
    cluster_name: Option<Arc<str>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", self.node())
            .field("backend", &self.backend_name())
            .finish()
    }
}

impl Cluster {
    /// Loads `path` (with `AUTOCLUSTER_` environment overrides) and starts.
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Cluster> {
        let settings = Settings::load(path).map_err(Error::from)?;
        Cluster::start(&settings).await
    }

    /// Starts from loaded settings: builds the backend `cluster.discovery` names and runs the
    /// engine. Does not wait for the backend: a node starts even when its backend is down, and
    /// registers once it answers.
    pub async fn start(settings: &Settings) -> Result<Cluster> {
        let backend = crate::dispatch::build_backend(settings)?;
        let mut config = EngineConfig::new(Registration {
            node: settings.node.clone(),
            meta: Metadata::of(settings.node.clone())
                .with_addrs(settings.listen.iter().map(|a| a.to_string()).collect())
                .with_version(env!("CARGO_PKG_VERSION"))
                .with_started_at_ms(unix_ms(SystemTime::now())),
        });
        config.call_timeout = settings.call_timeout;
        config.backoff_min = settings.backoff_min;
        config.backoff_max = settings.backoff_max;
        config.grace = settings.grace;
        config.probe_interval = settings.probe_interval;
        crate::engine::check_metadata(&config.registration, &backend)?;
        let mut extra: Vec<(&'static str, BoxFuture<'static, ()>)> = Vec::new();
        let mut listener_stats = None;
        if backend.capabilities().candidates_only {
            let (listener, prober) = peer_listener_and_prober(settings).await?;
            config.registration.meta.addrs = vec![listener.local_addr().to_string()];
            listener_stats = Some(listener.stats());
            extra.push(("probe listener", Box::pin(listener.run())));
            config.prober = Some(prober);
        }
        let mut cluster = Cluster::assemble(backend, config, extra);
        cluster.listener = listener_stats;
        cluster.cluster_name = Some(settings.cluster_name.as_str().into());
        Ok(cluster)
    }

    /// Runs the engine over a backend built by the program (your own `Discovery`, or one of
    /// ours configured in code).
    pub fn with_backend(backend: Arc<dyn Discovery>, config: EngineConfig) -> Cluster {
        Cluster::assemble(backend, config, Vec::new())
    }

    fn assemble(
        backend: Arc<dyn Discovery>,
        config: EngineConfig,
        extra: Vec<(&'static str, BoxFuture<'static, ()>)>,
    ) -> Cluster {
        let engine = Engine::spawn(backend, config, extra);
        let shared = engine.shared.clone();
        Cluster {
            engine,
            shared,
            listener: None,
            cluster_name: None,
        }
    }

    /// The engine's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// What [`crate::metrics::ClusterMetrics`] reads.
    pub(crate) fn metric_parts(&self) -> (Option<Arc<ListenerStats>>, Option<Arc<str>>) {
        (self.listener.clone(), self.cluster_name.clone())
    }

    /// This node.
    pub fn node(&self) -> &NodeName {
        &self.shared.config.registration.node
    }

    /// The backend's name (`etcd`).
    pub fn backend_name(&self) -> &'static str {
        self.shared.backend.name()
    }

    /// The current view.
    pub fn view(&self) -> View {
        self.shared.view.borrow().clone()
    }

    /// A receiver of the current view, woken at every change.
    pub fn watch(&self) -> watch::Receiver<View> {
        self.shared.view.subscribe()
    }

    /// Events from now on. A subscriber that falls more than the event capacity behind gets
    /// `RecvError::Lagged` and should read [`Cluster::view`] to catch up.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.subscribe_events()
    }

    /// The current view and a receiver of exactly the events that follow it: an event is
    /// either already reflected in the view or comes through the receiver, never both, never
    /// neither.
    pub fn view_and_events(&self) -> (View, broadcast::Receiver<Event>) {
        self.shared.subscribe_with_view()
    }

    /// The engine's health now.
    pub fn health(&self) -> Health {
        self.shared.health.borrow().clone()
    }

    /// A receiver of the health, woken at every change.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The peer listener's counters (`node.listen`): how its connections ended, by
    /// outcome. `None` unless the backend lists candidates only (static, DNS).
    pub fn probe_listener(&self) -> Option<&ListenerStats> {
        self.listener.as_deref()
    }

    /// Entries the backend skipped as invalid (garbage under the prefix, bad datagrams).
    pub fn invalid_entries(&self) -> u64 {
        self.shared.backend.invalid_entries()
    }

    /// Waits until the node is registered and its view is fresh, at most `timeout`; returns
    /// whether it got there. Returns false at once when the engine has failed (the backend
    /// refused this node for good, or a task died): [`Health::failed`] says why.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.health.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|h| h.is_ready() || h.failed.is_some()))
            .await
            .is_ok_and(|r| r.is_ok_and(|h| h.is_ready()))
    }

    /// The oldest running member (lowest creation revision): the natural node to join.
    pub fn oldest(&self) -> Option<Member> {
        self.shared.view.borrow().oldest().map(|e| e.member.clone())
    }

    /// Takes the cluster lock (etcd: `/<prefix>/<cluster>/lock`, on this node's lease), waiting
    /// at most `timeout`. The lock goes with the lease: if this node dies, it is released.
    pub async fn lock(&self, timeout: Duration) -> Result<ClusterLock> {
        let backend = &self.shared.backend;
        if !backend.capabilities().lock {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("the {} backend has no cluster lock", backend.name()),
            ));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut lease_rx = self.shared.lease.subscribe();
        let lease = tokio::time::timeout_at(deadline, lease_rx.wait_for(|l| l.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|l| *l))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::LockTimeout,
                    format!("not registered within {timeout:?}, so no lock"),
                )
            })?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(Error::new(
                ErrorKind::LockTimeout,
                format!("registered only as the {timeout:?} to take the lock ran out"),
            ));
        }
        let token = backend.lock(&lease, left).await?;
        Ok(ClusterLock {
            token: Some(token),
            backend: backend.clone(),
        })
    }

    /// Leaves the cluster: deregisters at once (peers see this node go within milliseconds)
    /// and stops. The handle stays readable (the last view) but no longer changes.
    pub async fn leave(&self) -> Result<()> {
        self.engine.shutdown().await;
        Ok(())
    }
}

impl Cluster {
    /// Stops without deregistering, as a crash would: peers see this node go when its
    /// registration's TTL runs out. For tests, demos, and handing a registration over.
    pub fn abandon(&self) {
        self.engine.abort();
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
                return false;
            };
            let outcome = probe(&me, &member.node, addr, timeout).await;
            match &outcome {
                ProbeOutcome::Running => {}
                ProbeOutcome::Unreachable(why) => {
                    tracing::debug!(node = %member.node, %addr, "not running: {why}")
                }
                other => {
                    tracing::warn!(node = %member.node, %addr, "not counted as running: {other}")
                }
            }
            outcome.is_running()
        })
    });
    Ok((listener, prober))
}

/// A held cluster lock. Release it with [`ClusterLock::unlock`]; dropping it releases it in
/// the background.
#[derive(Debug)]
pub struct ClusterLock {
    token: Option<LockToken>,
    backend: Arc<dyn Discovery>,
}

impl ClusterLock {
    /// The fencing token: larger for every later holder.
    pub fn fence(&self) -> u64 {
        self.token.as_ref().map_or(0, |t| t.fence.0)
    }

    /// The key that holds the lock.
    pub fn key(&self) -> &str {
        self.token.as_ref().map_or("", |t| t.key.as_str())
    }

    /// Releases the lock.
    pub async fn unlock(mut self) -> Result<()> {
        match self.token.take() {
            Some(t) => self.backend.unlock(&t).await,
            None => Ok(()),
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            let backend = self.backend.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = backend.unlock(&t).await;
                });
            }
        }
    }
}
