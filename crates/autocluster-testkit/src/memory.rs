//! An in-memory backend with a server-side lease, a revisioned history and fault injection,
//! for the engine's own tests and the behaviour suite's self-test. Users never run it: real
//! backends are tested against real servers.
//!
//! Time is tokio's, so tests can run on the paused clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use autocluster_plugin::{
    async_trait, BoxStream, Capabilities, Change, Discovery, Error, ErrorKind, Incarnation, Lease,
    Member, NodeName, Registration, Registrations, Result, Revision, Snapshot, ViewMode,
    WatchBatch,
};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Notice {
    Batch(WatchBatch),
    /// The server went down or was replaced: every watch ends.
    Broken,
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    compacted: u64,
    keys: BTreeMap<NodeName, (Member, u64)>,
    leases: HashMap<u64, (Instant, Duration)>,
    history: Vec<(u64, Change)>,
    next_lease: u64,
    down: bool,
}

/// The shared "server" many [`MemoryBackend`]s talk to.
#[derive(Debug, Clone)]
pub struct MemoryServer {
    state: Arc<Mutex<State>>,
    tx: broadcast::Sender<Notice>,
}

impl Default for MemoryServer {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryServer {
    /// A new, empty server.
    pub fn new() -> Self {
        MemoryServer {
            state: Arc::new(Mutex::new(State {
                next_lease: 0x1000,
                ..State::default()
            })),
            tx: broadcast::channel(65536).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A client for one node, with server-side leases of `ttl` and pushed changes.
    pub fn backend(&self, ttl: Duration) -> Arc<MemoryBackend> {
        self.backend_with(ttl, ViewMode::Push)
    }

    /// A client with the given view mode (`Poll` to exercise the polling path).
    pub fn backend_with(&self, ttl: Duration, view: ViewMode) -> Arc<MemoryBackend> {
        Arc::new(MemoryBackend {
            server: self.clone(),
            ttl,
            view,
            cut: AtomicBool::new(false),
            calls: Mutex::new(BTreeMap::new()),
        })
    }

    /// Takes the server down (every call fails with `Unavailable`, every watch breaks) or
    /// brings it back with its data, as an etcd restart does. Leases are extended by their
    /// TTL on the way back, as etcd does on a new leader.
    pub fn set_down(&self, down: bool) {
        let mut s = self.lock();
        s.down = down;
        if !down {
            let now = Instant::now();
            for (deadline, ttl) in s.leases.values_mut() {
                *deadline = now + *ttl;
            }
        }
        drop(s);
        if down {
            let _ = self.tx.send(Notice::Broken);
        }
    }

    /// Replaces the server by an empty one at the same address: data and leases gone, the
    /// revision back to zero.
    pub fn wipe(&self) {
        let mut s = self.lock();
        let next_lease = s.next_lease;
        *s = State {
            next_lease,
            ..State::default()
        };
        drop(s);
        let _ = self.tx.send(Notice::Broken);
    }

    /// Replaces the server by an empty one whose revision has overtaken the old one's,
    /// without breaking the watches (as an etcd replaced behind a gRPC proxy might look to
    /// its clients): data and leases gone, no deletion told, nothing for a watcher to see.
    pub fn replace_quietly(&self) {
        let mut s = self.lock();
        let (next_lease, revision) = (s.next_lease, s.revision + 1000);
        *s = State {
            next_lease,
            revision,
            compacted: revision,
            ..State::default()
        };
    }

    /// Drops the history up to now and breaks every watch, so watchers must resync.
    pub fn compact_and_break(&self) {
        let mut s = self.lock();
        s.compacted = s.revision;
        s.history.clear();
        drop(s);
        let _ = self.tx.send(Notice::Broken);
    }

    /// Revokes `node`'s lease by hand (its key goes with it).
    pub fn revoke(&self, node: &NodeName) {
        let mut s = self.lock();
        if let Some((_, lease)) = s.keys.get(node).cloned() {
            s.leases.remove(&lease);
            self.drop_keys_of(&mut s, lease);
        }
    }

    /// Deletes `node`'s key by hand (its lease stays).
    pub fn delete_key(&self, node: &NodeName) {
        let mut s = self.lock();
        if s.keys.remove(node).is_some() {
            self.record(
                &mut s,
                Change::Delete {
                    node: node.clone(),
                    incarnation: None,
                },
            );
        }
    }

    /// The registered nodes.
    pub fn nodes(&self) -> Vec<NodeName> {
        self.expire();
        self.lock().keys.keys().cloned().collect()
    }

    /// Expires leases whose TTL ran out (called by every operation, and by the tests).
    pub fn expire(&self) {
        let mut s = self.lock();
        if s.down {
            return;
        }
        let now = Instant::now();
        let dead: Vec<u64> = s
            .leases
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            s.leases.remove(&id);
            self.drop_keys_of(&mut s, id);
        }
    }

    fn drop_keys_of(&self, s: &mut State, lease: u64) {
        let nodes: Vec<NodeName> = s
            .keys
            .iter()
            .filter(|(_, (_, l))| *l == lease)
            .map(|(n, _)| n.clone())
            .collect();
        for node in nodes {
            s.keys.remove(&node);
            self.record(
                s,
                Change::Delete {
                    node,
                    incarnation: None,
                },
            );
        }
    }

    fn record(&self, s: &mut State, change: Change) {
        s.revision += 1;
        s.history.push((s.revision, change.clone()));
        let _ = self.tx.send(Notice::Batch(WatchBatch {
            revision: Revision(s.revision),
            changes: vec![change],
        }));
    }

    fn check_up(&self, op: &'static str) -> Result<MutexGuard<'_, State>> {
        self.expire();
        let s = self.lock();
        if s.down {
            return Err(
                Error::new(ErrorKind::Unavailable, "the memory server is down")
                    .with_backend("memory")
                    .with_operation(op),
            );
        }
        Ok(s)
    }
}

/// One node's client of a [`MemoryServer`].
#[derive(Debug)]
pub struct MemoryBackend {
    server: MemoryServer,
    ttl: Duration,
    view: ViewMode,
    cut: AtomicBool,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl MemoryBackend {
    /// The server.
    pub fn server(&self) -> &MemoryServer {
        &self.server
    }

    /// Cuts this client off the server (`true`: its calls fail, its watches break; others
    /// are unaffected but for a watch restart) or heals the cut.
    pub fn partition(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            let _ = self.server.tx.send(Notice::Broken);
        }
    }

    /// How many times the engine called `op` (`register`, `keep_alive`, `snapshot`, `watch`,
    /// ...) on this client: what a real backend would be asked to do.
    pub fn calls(&self, op: &str) -> u64 {
        self.calls
            .lock()
            .map(|c| c.get(op).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn check_up(&self, op: &'static str) -> Result<MutexGuard<'_, State>> {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(op).or_default() += 1;
        }
        if self.cut.load(Ordering::SeqCst) {
            return Err(
                Error::new(ErrorKind::Unavailable, "cut off from the memory server")
                    .with_backend("memory")
                    .with_operation(op),
            );
        }
        self.server.check_up(op)
    }
}

#[async_trait]
impl Discovery for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_view(self.view)
            .with_registration(Registrations::ServerLease, self.ttl, self.ttl / 3)
    }

    async fn register(&self, reg: &Registration) -> Result<Lease> {
        let server = &self.server;
        let mut s = self.check_up("register")?;
        s.next_lease += 1;
        let id = s.next_lease;
        s.leases.insert(id, (Instant::now() + self.ttl, self.ttl));
        let member = Member::new(reg.node.clone(), Incarnation(id))
            .with_meta(Some(reg.meta.clone()))
            .with_created(Revision(s.revision + 1));
        s.keys.insert(reg.node.clone(), (member.clone(), id));
        server.record(&mut s, Change::Put(member));
        Ok(Lease {
            id,
            ttl: self.ttl,
            age: Duration::ZERO,
        })
    }

    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        let mut s = self.check_up("keep_alive")?;
        match s.leases.get_mut(&lease.id) {
            Some((deadline, ttl)) => {
                *deadline = Instant::now() + *ttl;
                Ok(*ttl)
            }
            None => Err(Error::new(ErrorKind::LeaseLost, "lease not found")
                .with_backend("memory")
                .with_operation("keep_alive")),
        }
    }

    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let server = &self.server;
        let mut s = self.check_up("refresh")?;
        if !s.leases.contains_key(&lease.id) {
            return Err(Error::new(ErrorKind::LeaseLost, "lease not found")
                .with_backend("memory")
                .with_operation("refresh"));
        }
        let member = Member::new(reg.node.clone(), Incarnation(lease.id))
            .with_meta(Some(reg.meta.clone()))
            .with_created(Revision(s.revision + 1));
        s.keys.insert(reg.node.clone(), (member.clone(), lease.id));
        server.record(&mut s, Change::Put(member));
        Ok(())
    }

    async fn deregister(&self, lease: &Lease) -> Result<()> {
        let server = &self.server;
        let mut s = self.check_up("deregister")?;
        s.leases.remove(&lease.id);
        server.drop_keys_of(&mut s, lease.id);
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let s = self.check_up("snapshot")?;
        Ok(Snapshot {
            members: s.keys.values().map(|(m, _)| m.clone()).collect(),
            revision: Revision(s.revision),
        })
    }

    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        let server = self.server.clone();
        let rx = server.tx.subscribe();
        let start: Result<(Vec<WatchBatch>, u64)> = (|| {
            let s = self.check_up("watch")?;
            if after.0 < s.compacted || after.0 > s.revision {
                return Err(Error::new(
                    ErrorKind::Compacted,
                    format!(
                        "revision {} is gone (compacted at {}, current {})",
                        after.0, s.compacted, s.revision
                    ),
                )
                .with_backend("memory")
                .with_operation("watch"));
            }
            let mut batches: Vec<WatchBatch> = s
                .history
                .iter()
                .filter(|(r, _)| *r > after.0)
                .map(|(r, c)| WatchBatch {
                    revision: Revision(*r),
                    changes: vec![c.clone()],
                })
                .collect();
            if batches.is_empty() {
                batches.push(WatchBatch {
                    revision: Revision(s.revision),
                    changes: vec![],
                });
            }
            Ok((batches, s.revision))
        })();
        match start {
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
            Ok((replay, upto)) => {
                let live = futures::stream::unfold(rx, move |mut rx| async move {
                    loop {
                        match rx.recv().await {
                            Ok(Notice::Batch(b)) if b.revision.0 <= upto => continue,
                            Ok(Notice::Batch(b)) => return Some((Ok(b), rx)),
                            Ok(Notice::Broken) | Err(_) => return None,
                        }
                    }
                });
                Box::pin(futures::stream::iter(replay.into_iter().map(Ok)).chain(live))
            }
        }
    }
}
