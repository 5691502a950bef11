//! The node's registration in v3: a lease, and the node's key written on it only when no
//! other live lease holds the key (one transaction). A key held by another lease is never
//! taken over: the caller gets a `Conflict` naming the holder, and leaves a marker the holder
//! logs (see [`crate::clash`]).
//!
//! A claim can be applied by etcd and its answer lost (a timeout, a connection reset, or the
//! engine's bound on the call dropping it): the key is then held by a lease this backend
//! granted. The next attempt finds it so, and adopts that lease instead of refusing its own
//! registration as another process's. The lease returned says how long ago its grant was
//! sent (`Lease::age`): the engine renews by that, not by when the registration answered.

use std::time::{Duration, Instant};

use autocluster_plugin::{Lease, NodeName, Registration, Result};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::{EtcdBackend, CLEANUP_TIMEOUT};
use crate::clash;
use crate::keys::encode_value;

/// How many unanswered leases a backend remembers (each expires within `node_ttl` anyway).
const UNANSWERED: usize = 8;

/// A lease this backend granted for a registration.
#[derive(Debug, Clone, Copy)]
struct Granted {
    id: i64,
    /// When the grant was sent: etcd starts the TTL when it applies the grant, after that.
    sent: Instant,
    ttl: Duration,
}

/// Leases this backend granted for a registration whose claim has not answered (yet, or ever:
/// a call dropped by the engine's bound), newest last: the claim may have been applied, so a
/// key held by one of them is this backend's own, on a lease whose TTL began with its grant.
#[derive(Debug, Default)]
pub(super) struct Unanswered(std::sync::Mutex<Vec<Granted>>);

impl Unanswered {
    fn remember(&self, g: Granted) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() == UNANSWERED {
            all.remove(0);
        }
        all.push(g);
    }

    /// Lease `id`, if it is one of them; forgets it.
    fn take(&self, id: i64) -> Option<Granted> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let found = all.iter().position(|g| g.id == id);
        found.map(|i| all.remove(i))
    }
}

/// What a claim of the node's key found.
enum Claim {
    /// The key is written on our lease.
    Written,
    /// Another lease holds the key (its id).
    HeldBy(i64),
}

impl EtcdBackend {
    pub(super) async fn register_node(&self, reg: &Registration) -> Result<Lease> {
        let granted = self.grant().await?;
        // Remembered until a claim on it answers: the engine's bound on the call may drop it
        // after etcd applied the claim, and the next attempt must know the lease as ours.
        self.unanswered.remember(granted);
        let id = granted.id;
        let key = self.shared.layout.node_key(&reg.node);
        let claim = self.claim("register", reg, id, false).await;
        let lease = |g: Granted| Lease {
            id: g.id as u64,
            ttl: g.ttl,
            age: g.sent.elapsed(),
        };
        match claim {
            Ok(Claim::Written) => {
                self.unanswered.take(id);
                Ok(lease(granted))
            }
            Ok(Claim::HeldBy(holder)) => match self.unanswered.take(holder) {
                Some(held) => {
                    // Our own earlier claim (on this lease or an older one) was applied; its
                    // answer was lost. Keep that lease, whose TTL began with its grant.
                    if holder != id {
                        self.unanswered.take(id);
                        self.revoke_quietly(id).await;
                    }
                    tracing::info!(
                        backend = crate::NAME,
                        lease = format_args!("{holder:x}"),
                        "an earlier registration attempt was applied although its answer was \
                         lost; keeping its lease"
                    );
                    Ok(lease(held))
                }
                None => {
                    self.unanswered.take(id);
                    let e = self.refuse("register", reg, id, holder).await;
                    self.revoke_quietly(id).await;
                    Err(e)
                }
            },
            Err(e) => {
                // Best effort: the lease would expire by itself anyway. The claim may have
                // been applied: if the revoke was lost too, the next attempt finds the key on
                // this lease, which stays remembered.
                self.revoke_quietly(id).await;
                Err(e.with_key(key))
            }
        }
    }

    /// Grants a lease of `node_ttl`.
    async fn grant(&self) -> Result<Granted> {
        let ttl = self.cfg().node_ttl.as_secs() as i64;
        let sent = Instant::now();
        let grant = self
            .core()
            .call(
                "register",
                |mut c| async move { c.lease_grant(ttl, None).await },
            )
            .await?;
        Ok(Granted {
            id: grant.id(),
            sent,
            ttl: Duration::from_secs(grant.ttl().max(1) as u64),
        })
    }

    /// Writes the registration again on `lease` (after someone deleted the key), unless
    /// another live lease took the key meanwhile.
    pub(super) async fn refresh_node(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let id = lease.id as i64;
        match self.claim("refresh", reg, id, true).await {
            Ok(Claim::Written) => Ok(()),
            Ok(Claim::HeldBy(holder)) => Err(self.refuse("refresh", reg, id, holder).await),
            Err(e) => Err(e.with_key(self.shared.layout.node_key(&reg.node))),
        }
    }

    /// Writes the node's key on lease `id` if no lease holds it (a key without a lease, as
    /// `etcdctl put` writes, is not held), or, when `ours_too`, if lease `id` holds it
    /// already; otherwise reads who holds it. One transaction.
    async fn claim(
        &self,
        op: &'static str,
        reg: &Registration,
        id: i64,
        ours_too: bool,
    ) -> Result<Claim> {
        let key = self.shared.layout.node_key(&reg.node);
        let value = encode_value(&reg.meta);
        let put = TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(id)));
        let get = TxnOp::get(key.clone(), Some(GetOptions::new().with_keys_only()));
        let otherwise = if ours_too {
            TxnOp::txn(
                Txn::new()
                    .when([Compare::lease(key.clone(), CompareOp::Equal, id)])
                    .and_then([put.clone()])
                    .or_else([get]),
            )
        } else {
            get
        };
        let txn = Txn::new()
            .when([Compare::lease(key, CompareOp::Equal, 0)])
            .and_then([put])
            .or_else([otherwise]);
        let resp = self
            .core()
            .call(op, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        self.core().saw(resp.header().map_or(0, |h| h.revision()));
        Ok(claim_of(&resp))
    }

    /// The error for a key held by lease `holder`, after leaving the marker that tells the
    /// holder (on our lease `id`, best effort) and asking how long the holder's lease has
    /// left.
    async fn refuse(
        &self,
        op: &'static str,
        reg: &Registration,
        id: i64,
        holder: i64,
    ) -> autocluster_plugin::Error {
        let marker = self.shared.layout.clash_key(&reg.node);
        self.shared.attempts.left_own(&format!("lease {id:x}"));
        let value = encode_value(&reg.meta);
        let put = self.core().call(op, |mut c| {
            let (marker, value) = (marker.clone(), value.clone());
            async move {
                c.put(marker, value, Some(PutOptions::new().with_lease(id)))
                    .await
            }
        });
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, put).await;
        let ttl = self.core().call(op, |mut c| async move {
            c.lease_time_to_live(holder, None).await
        });
        let left = match tokio::time::timeout(CLEANUP_TIMEOUT, ttl).await {
            Ok(Ok(r)) => Some(r.ttl()),
            _ => None,
        };
        let key = self.shared.layout.node_key(&reg.node);
        clash::conflict(op, &reg.node, &key, &format!("lease {holder:x}"), left)
    }

    /// Revokes lease `id`, best effort and briefly (it expires by itself anyway).
    pub(super) async fn revoke_quietly(&self, id: i64) {
        let revoke = self
            .core()
            .call("register", |mut c| async move { c.lease_revoke(id).await });
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, revoke).await;
    }

    /// The node this backend registers, when it was built for one.
    pub(super) fn me(&self) -> Option<&NodeName> {
        self.me.as_ref()
    }
}

/// What the claim transaction found: written, or the lease of the key's holder.
fn claim_of(resp: &TxnResponse) -> Claim {
    if resp.succeeded() {
        return Claim::Written;
    }
    match resp.op_responses().into_iter().next() {
        Some(TxnOpResponse::Txn(inner)) => claim_of(&inner),
        Some(TxnOpResponse::Get(get)) => match get.kvs().first() {
            Some(kv) => Claim::HeldBy(kv.lease()),
            // Unreachable: the comparison failed on an existing key.
            None => Claim::HeldBy(0),
        },
        _ => Claim::HeldBy(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocluster_plugin::{Metadata, Origin, Section};
    use autocluster_testkit::fixtures::etcd::EtcdServer;

    use crate::config::EtcdConfig;

    /// Nemesis seed 3 (issue 16): a claim applied by etcd whose answer was lost (the engine's
    /// 2 s bound dropped the call while a member restarted, or quorum came back); the retry
    /// found the key on the lost attempt's lease and refused its own node as "another
    /// process" (the agent exited 2).
    #[tokio::test]
    async fn a_key_on_a_lease_whose_claim_was_unanswered_is_adopted_not_refused() {
        let etcd = EtcdServer::start().await.unwrap();
        let (backend, reg) = backend_for(&etcd, "10s").await;
        // The lost attempt: a lease granted, the claim applied, the answer never read.
        let lost = backend.grant().await.unwrap();
        assert!(matches!(
            backend
                .claim("register", &reg, lost.id, false)
                .await
                .unwrap(),
            Claim::Written
        ));
        backend.unanswered.remember(lost);

        let lease = backend.register_node(&reg).await.unwrap();
        assert_eq!(
            lease.id, lost.id as u64,
            "the applied attempt's lease is kept"
        );

        // A lease it never granted is still another process's: refused (a sibling remembers
        // leases of its own).
        let other = backend.sibling();
        let e = other.register_node(&reg).await.unwrap_err();
        assert_eq!(e.kind(), autocluster_plugin::ErrorKind::Conflict, "{e}");
    }

    async fn backend_for(etcd: &EtcdServer, ttl: &str) -> (EtcdBackend, Registration) {
        let mut section = Section::new("cluster.etcd");
        section.set("server", etcd.endpoint(), Origin::Program);
        section.set("node_ttl", ttl, Origin::Program);
        let node = NodeName::parse("n1@127.0.0.1").unwrap();
        let backend = EtcdBackend::new(EtcdConfig::from_section(&section).unwrap(), "emqxcl")
            .for_node(node.clone());
        let reg = Registration {
            meta: Metadata::of(node.clone()),
            node,
        };
        (backend, reg)
    }
}
