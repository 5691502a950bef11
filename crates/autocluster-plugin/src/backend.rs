//! The backend trait and what it declares about itself.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    BoxStream, Error, ErrorKind, Metadata, NodeName, Result, Revision, Section, Snapshot,
    WatchBatch,
};

/// How a backend delivers the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// A snapshot, then changes pushed by [`Discovery::watch`] from the snapshot's revision
    /// (etcd).
    Push,
    /// Only snapshots; the engine asks for one every `interval` (static seeds, DNS).
    Poll {
        /// How often to ask.
        interval: Duration,
    },
    /// Members announce themselves and the backend passes on what it hears, as it hears it,
    /// through [`Discovery::observe`] (multicast): no snapshot, no history, no revision. The
    /// engine's table applies each observation and expires a member not heard from again
    /// within the TTL it carries.
    Observe,
}

/// How a node registers itself with a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registrations {
    /// It does not: the backend lists candidates someone else keeps (seeds, DNS records).
    None,
    /// On a lease the server expires (etcd): keep-alives renew it, a lost lease is granted
    /// again and the registration written again.
    ServerLease,
    /// By announcing itself periodically (multicast); peers expire it when the heartbeats
    /// stop, by the TTL each announcement carries.
    Heartbeat,
}

/// What a backend can do; the engine and the behaviour suite choose by it.
///
/// Built from [`Capabilities::default`] (or one of the view constructors) and the `with_`
/// methods, so a field added later does not break a backend:
///
/// ```
/// use std::time::Duration;
/// use autocluster_plugin::{Capabilities, Registrations};
/// let caps = Capabilities::push()
///     .with_registration(Registrations::ServerLease, Duration::from_secs(60), Duration::from_secs(20))
///     .with_lock();
/// assert!(caps.lock);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Pushed changes or polled snapshots.
    pub view: ViewMode,
    /// How registration works.
    pub registration: Registrations,
    /// The registration's TTL: how long after the last keep-alive a registration is gone.
    pub ttl: Duration,
    /// How often the engine renews the registration (a fraction of `ttl`).
    pub keep_alive_every: Duration,
    /// Whether [`Discovery::lock`] is supported.
    pub lock: bool,
    /// Whether the backend lists candidates only, so the engine must probe each one to know
    /// whether it runs (static seeds, DNS).
    pub candidates_only: bool,
    /// The largest metadata (as JSON) a registration may carry; larger is refused when it is
    /// set, never written.
    pub max_metadata_bytes: usize,
    /// With [`ViewMode::Push`]: the watch yields a batch (a progress notice, empty when
    /// nothing changed) at least this often while it is caught up, so a watch silent for
    /// several times this long is not live. `None`: the backend makes no such promise.
    pub progress_every: Option<Duration>,
}

/// The metadata a registration carries by default at most: 64 KiB as JSON, what every
/// reader accepts.
pub const DEFAULT_MAX_METADATA_BYTES: usize = 64 * 1024;

impl Default for Capabilities {
    /// Pushed changes, no registration, a TTL of 60 s renewed every 20 s, no lock, members
    /// that run while listed, metadata up to [`DEFAULT_MAX_METADATA_BYTES`].
    fn default() -> Self {
        Capabilities {
            view: ViewMode::Push,
            registration: Registrations::None,
            ttl: Duration::from_secs(60),
            keep_alive_every: Duration::from_secs(20),
            lock: false,
            candidates_only: false,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            progress_every: None,
        }
    }
}

impl Capabilities {
    /// A backend that gives a snapshot, then pushes changes ([`ViewMode::Push`]).
    pub fn push() -> Self {
        Capabilities::default()
    }

    /// A backend read by a snapshot every `interval` ([`ViewMode::Poll`]).
    pub fn poll(interval: Duration) -> Self {
        Capabilities {
            view: ViewMode::Poll { interval },
            ..Capabilities::default()
        }
    }

    /// A backend that passes on what it hears ([`ViewMode::Observe`]).
    pub fn observe() -> Self {
        Capabilities {
            view: ViewMode::Observe,
            ..Capabilities::default()
        }
    }

    /// How the view is delivered.
    pub fn with_view(mut self, view: ViewMode) -> Self {
        self.view = view;
        self
    }

    /// How this node registers, the registration's TTL, and how often it is renewed.
    pub fn with_registration(
        mut self,
        registration: Registrations,
        ttl: Duration,
        keep_alive_every: Duration,
    ) -> Self {
        self.registration = registration;
        self.ttl = ttl;
        self.keep_alive_every = keep_alive_every;
        self
    }

    /// The TTL alone (for backends without registration: the grace period's default).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// [`Discovery::lock`] is supported.
    pub fn with_lock(mut self) -> Self {
        self.lock = true;
        self
    }

    /// The largest metadata a registration may carry, in bytes of JSON.
    pub fn with_max_metadata_bytes(mut self, max: usize) -> Self {
        self.max_metadata_bytes = max;
        self
    }

    /// The backend lists candidates that the engine must probe.
    pub fn with_candidates_only(mut self) -> Self {
        self.candidates_only = true;
        self
    }

    /// The watch yields a batch at least every `every` while it is caught up (see
    /// [`Capabilities::progress_every`]).
    pub fn with_progress_every(mut self, every: Duration) -> Self {
        self.progress_every = Some(every);
        self
    }
}

/// What this node registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// This node.
    pub node: NodeName,
    /// What it says about itself.
    pub meta: Metadata,
}

/// A registration the backend accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease's id (etcd's lease id, or the node's start time); it is the incarnation peers
    /// see for this registration.
    pub id: u64,
    /// The TTL the backend granted.
    pub ttl: Duration,
    /// How long before `register` returned the TTL began to count, at most: the lease runs
    /// out `ttl - age` after the return unless renewed. etcd counts a lease's TTL from its
    /// grant, and a registration under load (or one that adopts the lease of an earlier
    /// attempt whose answer was lost) can take seconds after it; the engine renews by this,
    /// not by when the registration answered. Zero when the TTL starts with the answer.
    pub age: Duration,
}

/// A held cluster lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    /// The key that holds the lock.
    pub key: String,
    /// The lease it is attached to; the lock goes with it.
    pub lease: u64,
    /// A fencing token: the revision at which the lock was acquired; larger is later.
    pub fence: Revision,
}

/// What a backend is built from.
///
/// Built with [`BackendContext::new`] and the `with_` methods, so a field added later does
/// not break a backend or a test:
///
/// ```
/// use std::time::Duration;
/// use autocluster_plugin::{BackendContext, NodeName, Section};
/// let ctx = BackendContext::new(
///     NodeName::parse("emqx1@192.168.1.162").unwrap(),
///     "emqxcl",
///     Section::new("cluster.etcd"),
/// )
/// .with_call_timeout(Duration::from_secs(30));
/// assert_eq!(ctx.call_timeout, Duration::from_secs(30));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct BackendContext {
    /// This node.
    pub node: NodeName,
    /// `cluster.name`.
    pub cluster: String,
    /// `node.cookie`, the shared secret of the cluster (never printed).
    pub cookie: String,
    /// The backend's own settings (`cluster.<backend>.*`), defaults filled in.
    pub section: Section,
    /// `cluster.call_timeout`: the engine's bound on every backend call. A backend derives its
    /// transport's timeouts from it (a connection that may take this long to answer is not
    /// dead), so a slow or distant server is served by raising this one setting.
    pub call_timeout: Duration,
}

impl BackendContext {
    /// The engine's default `cluster.call_timeout`.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

    /// The context of `node` in `cluster` with the backend's `section`; no cookie, the default
    /// call timeout.
    pub fn new(node: NodeName, cluster: impl Into<String>, section: Section) -> Self {
        BackendContext {
            node,
            cluster: cluster.into(),
            cookie: String::new(),
            section,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
        }
    }

    /// With `node.cookie`.
    pub fn with_cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookie = cookie.into();
        self
    }

    /// With `cluster.call_timeout`.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }
}

impl fmt::Debug for BackendContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendContext")
            .field("node", &self.node)
            .field("cluster", &self.cluster)
            .field("cookie", &"******")
            .field("section", &self.section)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

/// A discovery backend: the primitives the engine drives.
///
/// Every method is a single, bounded attempt: the engine puts a timeout around each call,
/// retries with backoff, and decides what an error means by its [`ErrorKind`]. A backend
/// never retries, sleeps or keeps member state of its own beyond what its protocol needs.
#[async_trait]
pub trait Discovery: Send + Sync + fmt::Debug + 'static {
    /// The backend's name as `cluster.discovery` spells it (`etcd`).
    fn name(&self) -> &'static str;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Registers this node (grants a lease and writes the registration under it). Called
    /// again whenever the previous lease is lost.
    async fn register(&self, reg: &Registration) -> Result<Lease> {
        let _ = reg;
        Ok(Lease {
            id: 0,
            ttl: self.capabilities().ttl,
            age: Duration::ZERO,
        })
    }

    /// Renews the lease (one keep-alive, one heartbeat). Returns the TTL left, or an error of
    /// kind [`ErrorKind::LeaseLost`] when the lease is gone.
    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        Ok(lease.ttl)
    }

    /// Writes the registration again under the same lease (after someone deleted the key).
    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let _ = (reg, lease);
        Ok(())
    }

    /// Removes the registration at once (revokes the lease, sends a leave).
    async fn deregister(&self, lease: &Lease) -> Result<()> {
        let _ = lease;
        Ok(())
    }

    /// Every member now, and the revision of that view ([`ViewMode::Push`] and
    /// [`ViewMode::Poll`]).
    async fn snapshot(&self) -> Result<Snapshot> {
        Err(
            Error::new(ErrorKind::Unsupported, "this backend gives no snapshot")
                .with_backend(self.name())
                .with_operation("snapshot"),
        )
    }

    /// Changes after `after`, as they happen. The stream yields a first batch (empty when
    /// nothing changed since `after`) as soon as the watch is established, so the engine
    /// knows the view is live again. The stream ends, or yields an error, when the watch
    /// breaks; an error of kind [`ErrorKind::Compacted`] means the history after
    /// `after` is gone and the engine must resync from a snapshot.
    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        let _ = after;
        let e = Error::new(ErrorKind::Unsupported, "this backend does not push changes")
            .with_backend(self.name())
            .with_operation("watch");
        Box::pin(futures::stream::once(async move { Err(e) }))
    }

    /// What the backend hears from now on ([`ViewMode::Observe`]): a first, empty batch as
    /// soon as it listens, then the observations as they come: a [`Change::Put`] with the
    /// member's TTL for every announcement heard, a [`Change::Delete`] of an incarnation for
    /// every leave. The batch's revision is not used. The stream ends, or yields an error,
    /// when listening breaks; the engine opens it again.
    ///
    /// [`Change::Put`]: crate::Change::Put
    /// [`Change::Delete`]: crate::Change::Delete
    fn observe(&self) -> BoxStream<Result<WatchBatch>> {
        let e = Error::new(
            ErrorKind::Unsupported,
            "this backend does not observe members",
        )
        .with_backend(self.name())
        .with_operation("observe");
        Box::pin(futures::stream::once(async move { Err(e) }))
    }

    /// Takes the cluster lock on `lease`, waiting at most `timeout`.
    async fn lock(&self, lease: &Lease, timeout: Duration) -> Result<LockToken> {
        let _ = (lease, timeout);
        Err(
            Error::new(ErrorKind::Unsupported, "this backend has no cluster lock")
                .with_backend(self.name())
                .with_operation("lock"),
        )
    }

    /// Creates the cluster record `name` (etcd: `/<prefix>/<cluster>/<name>`, with no lease)
    /// holding `value` unless it exists, in one atomic step, and returns the record as it is
    /// after the call. Formation keeps its record (`formed`) this way. Backends without a
    /// store return [`ErrorKind::Unsupported`].
    async fn create_record(&self, name: &str, value: &[u8]) -> Result<crate::Record> {
        let _ = (name, value);
        Err(Error::new(
            ErrorKind::Unsupported,
            "this backend keeps no cluster records",
        )
        .with_backend(self.name())
        .with_operation("create_record"))
    }

    /// Reads the cluster record `name`; `None` when it does not exist.
    async fn read_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let _ = name;
        Err(Error::new(
            ErrorKind::Unsupported,
            "this backend keeps no cluster records",
        )
        .with_backend(self.name())
        .with_operation("read_record"))
    }

    /// How many entries (keys under the prefix, datagrams) the backend read and skipped
    /// because they were not valid: garbage is counted and ignored, never a panic.
    fn invalid_entries(&self) -> u64 {
        0
    }

    /// Releases a lock taken by [`Discovery::lock`].
    async fn unlock(&self, token: &LockToken) -> Result<()> {
        let _ = token;
        Err(
            Error::new(ErrorKind::Unsupported, "this backend has no cluster lock")
                .with_backend(self.name())
                .with_operation("unlock"),
        )
    }
}
