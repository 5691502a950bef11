//! The handle an application embeds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{
    Discovery, Error, ErrorKind, LockToken, Member, Metadata, NodeName, Result,
};
use tokio::sync::{broadcast, watch};

use crate::builder::ClusterBuilder;
use crate::changes::ViewChange;
use crate::config::Settings;
use crate::engine::{Engine, EngineConfig, Shared, Stats};
use crate::formation::{FormationConfig, FormationState};
use crate::probe::ListenerStats;
use crate::view::{Event, Health, View};

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
    pub(crate) listener: Option<Arc<ListenerStats>>,
    /// Formation's settings, decision and sightings (`formation/`).
    pub(crate) formation: Arc<FormationState>,
    /// `cluster.name`, when started from settings (a label of `autocluster_info`).
    pub(crate) cluster_name: Option<Arc<str>>,
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
    /// engine, with the labels and endpoints of the configuration and autocluster's version.
    /// Does not wait for the backend: a node starts even when its backend is down, and
    /// registers once it answers. [`Cluster::builder`] sets more.
    pub async fn start(settings: &Settings) -> Result<Cluster> {
        Cluster::builder(settings).start().await
    }

    /// A builder from loaded settings, where the application adds its own labels, endpoints
    /// and version before it starts:
    ///
    /// ```no_run
    /// # async fn demo(settings: autocluster::Settings) -> Result<(), autocluster::Error> {
    /// let cluster = autocluster::Cluster::builder(&settings)
    ///     .label("role", "api")
    ///     .endpoint("grpc", "10.0.0.5:50051")
    ///     .version("myapp 2.1.0")
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(settings: &Settings) -> ClusterBuilder {
        ClusterBuilder::new(settings)
    }

    /// Runs the engine over a backend built by the program (your own `Discovery`, or one of
    /// ours configured in code).
    pub fn with_backend(backend: Arc<dyn Discovery>, config: EngineConfig) -> Cluster {
        Cluster::assemble(backend, config, Vec::new())
    }

    pub(crate) fn assemble(
        backend: Arc<dyn Discovery>,
        config: EngineConfig,
        extra: Vec<(&'static str, crate::engine::ExtraTask)>,
    ) -> Cluster {
        let cluster_name = backend.name();
        let engine = Engine::spawn(backend, config, extra);
        let shared = engine.shared.clone();
        Cluster {
            engine,
            shared,
            listener: None,
            formation: FormationState::new(cluster_name, FormationConfig::default()),
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

    /// The membership as one stream that misses nothing: first a
    /// [`ViewChange::Snapshot`] of the members now, then every [`ViewChange::Event`] after it
    /// (an event is in the snapshot or in the stream, never both, never neither). A
    /// subscriber that falls more than the event capacity behind gets
    /// [`ViewChange::Lagged`], then a fresh snapshot. The stream ends after [`Cluster::leave`]
    /// (or when the engine fails), once the last events were given.
    ///
    /// ```no_run
    /// # async fn demo(cluster: &autocluster::Cluster) {
    /// use futures::StreamExt;
    /// use autocluster::ViewChange;
    /// let mut changes = cluster.changes();
    /// while let Some(change) = changes.next().await {
    ///     match change {
    ///         ViewChange::Snapshot(view) => println!("{} members", view.len()),
    ///         ViewChange::Event(e) => println!("{} {}", e.kind.as_str(), e.node),
    ///         ViewChange::Lagged(n) => println!("{n} events missed; a snapshot follows"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn changes(&self) -> futures::stream::BoxStream<'static, ViewChange> {
        crate::changes::changes(self.shared.clone())
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
    ///
    /// Fails when the backend did not take the deregistration (down, or no answer within
    /// `cluster.call_timeout`): the engine has stopped all the same, and peers see this node
    /// go when its registration's TTL runs out.
    pub async fn leave(&self) -> Result<()> {
        self.engine.shutdown().await;
        let failed = self
            .shared
            .deregister_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            None => Ok(()),
            Some((kind, why)) => Err(Error::new(
                kind,
                format!(
                    "{} left, but could not deregister (peers see it go when its registration's TTL runs out): {why}",
                    self.node()
                ),
            )
            .with_backend(self.backend_name())
            .with_operation("deregister")
            .with_retryable(false)),
        }
    }

    /// The metadata this node registers now: the configuration's and the builder's, with
    /// every update since.
    pub fn metadata(&self) -> Metadata {
        self.shared.own.borrow().meta.clone()
    }

    /// Changes this node's labels, endpoints or version at run time. `update` edits a copy;
    /// the result is checked (label keys and values, endpoints, the version, and the size the
    /// backend carries) and, when it differs, written again under the same registration:
    /// etcd puts the key again on the same lease, multicast sends it at once in a heartbeat,
    /// and peers see one [`EventKind::Updated`](crate::EventKind::Updated). Updates in quick
    /// succession may be written together (one `Updated`). The node's name, addresses and
    /// start time belong to the engine: changes to them are ignored. Updates from several
    /// tasks at once apply one after the other; `update` must not call `update_metadata`
    /// itself.
    ///
    /// With `static` and `dns`, peers learn it at their next probe of this node (within
    /// `cluster.probe_interval`).
    ///
    /// Returns whether the metadata changed. Fails, changing nothing, on a bad or too large
    /// result, when the cluster was left, and when nothing carries metadata to peers (a
    /// list-only backend run by [`Cluster::with_backend`], without the peer listener that
    /// [`Cluster::start`] adds; `manual`: [`ErrorKind::Unsupported`]).
    ///
    /// ```no_run
    /// # fn demo(cluster: &autocluster::Cluster) -> Result<(), autocluster::Error> {
    /// cluster.update_metadata(|m| {
    ///     m.labels.insert("state".into(), "draining".into());
    ///     m.endpoints.remove("mqtt");
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn update_metadata(&self, update: impl FnOnce(&mut Metadata)) -> Result<bool> {
        if self.shared.cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{} has left the cluster: its metadata no longer changes",
                    self.node()
                ),
            ));
        }
        let backend = &self.shared.backend;
        let registers =
            backend.capabilities().registration != autocluster_plugin::Registrations::None;
        // A list-only backend's peers learn the metadata from this node's peer listener.
        if !registers && self.listener.is_none() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the {} backend carries no metadata to peers and no peer listener serves \
                     it (they know this node from a candidate list): an update would reach nobody",
                    backend.name()
                ),
            )
            .with_backend(backend.name()));
        }
        self.shared.update_registration(update)
    }
}

impl Cluster {
    pub(crate) fn engine_shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn formation_state(&self) -> &Arc<FormationState> {
        &self.formation
    }

    /// Stops without deregistering, as a crash would: peers see this node go when its
    /// registration's TTL runs out. For tests, demos, and handing a registration over.
    pub fn abandon(&self) {
        self.engine.abort();
    }
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
