//! The etcd v3 backend: leases, a prefix watch, and the Lock API.

use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{
    async_trait, BoxStream, Capabilities, Change, Discovery, Error, ErrorKind, Incarnation, Lease,
    LockToken, Registration, Registrations, Result, Revision, Snapshot, WatchBatch,
};
use etcd_client::{
    EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, LockOptions, PutOptions,
    WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::Mutex;

use crate::config::EtcdConfig;
use crate::core::{Core, MAX_MESSAGE};
use crate::keys::{encode_value, Garbage, Layout};
use crate::NAME;

/// Keys read per range request of a snapshot; pages share one revision.
const PAGE: i64 = 1000;
/// How long the clean-up after a lock timeout, or after a failed registration, may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The etcd v3 discovery backend.
#[derive(Debug)]
pub struct EtcdBackend {
    shared: Arc<Shared>,
    keeper: Mutex<Option<Keeper>>,
}

#[derive(Debug)]
struct Shared {
    core: Core,
    layout: Layout,
    garbage: Garbage,
}

/// The long-lived keep-alive stream of one lease.
#[derive(Debug)]
struct Keeper {
    lease: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

/// Why a keep-alive on an open stream did not renew the lease.
enum PingError {
    /// The server answered TTL 0: the lease is gone.
    Lost,
    /// The stream broke (server restarted, connection lost): open a new one.
    Broken,
}

impl Keeper {
    async fn ping(&mut self) -> std::result::Result<i64, PingError> {
        self.keeper
            .keep_alive()
            .await
            .map_err(|_| PingError::Broken)?;
        match self.stream.message().await {
            Ok(Some(r)) if r.ttl() > 0 => Ok(r.ttl()),
            Ok(Some(_)) => Err(PingError::Lost),
            Ok(None) | Err(_) => Err(PingError::Broken),
        }
    }
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
            }),
            keeper: Mutex::new(None),
        }
    }

    /// Another backend over the same etcd connections (and layout), with its own lease and
    /// keep-alive stream: for a process that registers several nodes; the benchmarks
    /// register thousands from one process this way.
    pub fn sibling(&self) -> EtcdBackend {
        EtcdBackend {
            shared: self.shared.clone(),
            keeper: Mutex::new(None),
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

    fn lease_lost(op: &'static str, lease: i64) -> Error {
        Error::new(
            ErrorKind::LeaseLost,
            format!("lease {lease:x} is gone (expired, revoked, or etcd was replaced)"),
        )
        .with_backend(NAME)
        .with_operation(op)
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
        let ttl = self.cfg().node_ttl;
        // A third of the TTL leaves two more tries before the lease runs out.
        Capabilities::push()
            .with_registration(
                Registrations::ServerLease,
                ttl,
                (ttl / 3).max(Duration::from_millis(100)),
            )
            .with_lock()
    }

    async fn register(&self, reg: &Registration) -> Result<Lease> {
        let ttl = self.cfg().node_ttl.as_secs() as i64;
        let grant = self
            .core()
            .call(
                "register",
                |mut c| async move { c.lease_grant(ttl, None).await },
            )
            .await?;
        let id = grant.id();
        let key = self.shared.layout.node_key(&reg.node);
        let value = encode_value(&reg.meta);
        let put = self
            .core()
            .call("register", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    c.put(key, value, Some(PutOptions::new().with_lease(id)))
                        .await
                }
            })
            .await;
        if let Err(e) = put {
            // Best effort: the lease would expire by itself anyway.
            let revoke = self
                .core()
                .call("register", |mut c| async move { c.lease_revoke(id).await });
            let _ = tokio::time::timeout(CLEANUP_TIMEOUT, revoke).await;
            return Err(e.with_key(key));
        }
        Ok(Lease {
            id: id as u64,
            ttl: Duration::from_secs(grant.ttl().max(1) as u64),
        })
    }

    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        let id = lease.id as i64;
        let mut slot = self.keeper.lock().await;
        // Taken out while in use: if this call is cancelled half-way, the stream (with a
        // response perhaps still in flight) is dropped rather than reused out of step.
        if let Some(mut k) = slot.take().filter(|k| k.lease == id) {
            match k.ping().await {
                Ok(ttl) => {
                    *slot = Some(k);
                    return Ok(Duration::from_secs(ttl as u64));
                }
                Err(PingError::Lost) => return Err(Self::lease_lost("keep_alive", id)),
                Err(PingError::Broken) => {} // open a new stream below
            }
        }
        // Opening the stream sends one keep-alive and reads its answer.
        let (keeper, stream) = self
            .core()
            .call(
                "keep_alive",
                |mut c| async move { c.lease_keep_alive(id).await },
            )
            .await?;
        *slot = Some(Keeper {
            lease: id,
            keeper,
            stream,
        });
        Ok(lease.ttl)
    }

    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let key = self.shared.layout.node_key(&reg.node);
        let value = encode_value(&reg.meta);
        let id = lease.id as i64;
        self.core()
            .call("refresh", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    c.put(key, value, Some(PutOptions::new().with_lease(id)))
                        .await
                }
            })
            .await
            .map_err(|e| e.with_key(key.clone()))?;
        Ok(())
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
        let layout = &self.shared.layout;
        let end = prefix_end(layout.nodes_prefix());
        let mut start = layout.nodes_prefix().as_bytes().to_vec();
        let mut revision = 0;
        let mut members = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self
                .core()
                .call("snapshot", |c| {
                    let (start, opts) = (start.clone(), opts.clone());
                    let mut kv = c.kv_client().max_decoding_message_size(MAX_MESSAGE);
                    async move { kv.get(start, Some(opts)).await }
                })
                .await
                .map_err(|e| e.with_key(layout.nodes_prefix()))?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                match layout.member(
                    kv.key(),
                    kv.value(),
                    kv.lease() as u64,
                    kv.create_revision(),
                ) {
                    Ok(m) => members.push(m),
                    Err(why) => self.shared.garbage.skip(NAME, kv.key(), &why),
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(Snapshot {
            members,
            revision: Revision(revision.max(0) as u64),
        })
    }

    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        let shared = self.shared.clone();
        let stream = futures::stream::unfold(WatchState::Start, move |state| {
            let shared = shared.clone();
            async move {
                let mut ws = match state {
                    WatchState::Done => return None,
                    WatchState::Open(ws) => ws,
                    WatchState::Start => match shared.open_watch(after).await {
                        Ok(ws) => Box::new(ws),
                        Err(e) => return Some((Err(e), WatchState::Done)),
                    },
                };
                match shared.next_batch(&mut ws, after).await {
                    Some(Ok(b)) => Some((Ok(b), WatchState::Open(ws))),
                    Some(Err(e)) => Some((Err(e), WatchState::Done)),
                    None => None,
                }
            }
        });
        Box::pin(stream)
    }

    async fn lock(&self, lease: &Lease, timeout: Duration) -> Result<LockToken> {
        let timeout = if timeout.is_zero() {
            self.cfg().lock_timeout
        } else {
            timeout
        };
        let id = lease.id as i64;
        let name = self.shared.layout.lock_name();
        let attempt = self.core().call("lock", |mut c| async move {
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
}

enum WatchState {
    Start,
    Open(Box<WatchStream>),
    Done,
}

impl Shared {
    fn err(&self, e: etcd_client::Error) -> Error {
        self.core.error(e, "watch")
    }

    fn compacted(&self, message: String) -> Error {
        Error::new(ErrorKind::Compacted, message)
            .with_backend(NAME)
            .with_operation("watch")
            .with_key(self.layout.nodes_prefix())
    }

    async fn open_watch(&self, after: Revision) -> Result<WatchStream> {
        let start = after.0.saturating_add(1).min(i64::MAX as u64) as i64;
        let prefix = self.layout.nodes_prefix();
        self.core
            .call("watch", |c| {
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start)
                    .with_progress_notify()
                    .with_prev_key();
                let mut w = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
                async move { w.watch(prefix, Some(opts)).await }
            })
            .await
            .map_err(|e| e.with_key(prefix))
    }

    /// The next batch (or progress notice) of the watch; `None` when the stream ended.
    async fn next_batch(
        &self,
        ws: &mut WatchStream,
        after: Revision,
    ) -> Option<Result<WatchBatch>> {
        let resp = match ws.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => return Some(Err(self.err(e))),
        };
        if resp.compact_revision() > 0 {
            return Some(Err(self.compacted(format!(
                    "etcd compacted its history up to revision {}; the watch asked for revisions after {}",
                    resp.compact_revision(),
                    after.0
                ))));
        }
        let revision = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
        if resp.canceled() {
            let reason = resp.cancel_reason().to_string();
            let e = if reason.contains("permission denied") {
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("etcd cancelled the watch: {reason}"),
                )
            } else {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("etcd cancelled the watch: {reason}"),
                )
            };
            return Some(Err(e.with_backend(NAME).with_operation("watch")));
        }
        if resp.created() {
            if revision < after.0 {
                return Some(Err(self.compacted(format!(
                        "etcd's revision {revision} is behind the watch's {}: etcd was wiped or replaced",
                        after.0
                    ))));
            }
            // The watch is established: say so at once, claiming no progress beyond
            // `after` (events between `after` and the header's revision may follow).
            return Some(Ok(WatchBatch {
                revision: after,
                changes: Vec::new(),
            }));
        }
        Some(Ok(self.batch(&resp, revision)))
    }

    fn batch(&self, resp: &WatchResponse, header_revision: u64) -> WatchBatch {
        let mut changes = Vec::with_capacity(resp.events().len());
        let mut revision = header_revision;
        if let Some(last) = resp.events().last().and_then(|e| e.kv()) {
            revision = last.mod_revision().max(0) as u64;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            // `Event::event_type` panics on a type it does not know: read the raw one.
            match EventType::try_from(ev.0.r#type) {
                Ok(EventType::Put) => match self.layout.member(
                    kv.key(),
                    kv.value(),
                    kv.lease() as u64,
                    kv.create_revision(),
                ) {
                    Ok(m) => changes.push(Change::Put(m)),
                    Err(why) => {
                        self.garbage.skip(NAME, kv.key(), &why);
                        // A node's key overwritten with garbage registers that node no
                        // more, as a snapshot would say: without this, nodes that saw the
                        // overwrite keep the member and nodes that start later do not.
                        if let Ok(node) = self.layout.node_of(kv.key()) {
                            changes.push(Change::Delete {
                                node,
                                incarnation: None,
                            });
                        }
                    }
                },
                Ok(EventType::Delete) => {
                    // A deleted garbage key was counted when it was written.
                    if let Ok(node) = self.layout.node_of(kv.key()) {
                        let incarnation = ev.prev_kv().map(|p| Incarnation(p.lease() as u64));
                        changes.push(Change::Delete { node, incarnation });
                    }
                }
                Err(_) => self
                    .garbage
                    .skip(NAME, kv.key(), "a watch event of an unknown type"),
            }
        }
        WatchBatch {
            revision: Revision(revision),
            changes,
        }
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
