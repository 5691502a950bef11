//! The node's registration in v3: a lease, and the node's key written on it only when no
//! other live lease holds the key (one transaction). A key held by another lease is never
//! taken over: the caller gets a `Conflict` naming the holder, and leaves a marker the holder
//! logs (see [`crate::clash`]).
//!
//! A claim can be applied by etcd and its answer lost (a timeout, a connection reset, or the
//! engine's bound on the call dropping it): the key is then held by a lease this backend
//! granted. The next attempt finds it so, and adopts that lease instead of refusing its own
//! registration as another process's.

use std::time::Duration;

use autocluster_plugin::{Lease, NodeName, Registration, Result};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::{EtcdBackend, CLEANUP_TIMEOUT};
use crate::clash;
use crate::keys::encode_value;

/// How many unanswered leases a backend remembers (each expires within `node_ttl` anyway).
const UNANSWERED: usize = 8;

/// Leases this backend granted for a registration whose claim has not answered (yet, or ever:
/// a call dropped by the engine's bound): the claim may have been applied, so a key held by
/// one of them is this backend's own.
#[derive(Debug, Default)]
pub(super) struct Unanswered(std::sync::Mutex<Vec<i64>>);

impl Unanswered {
    fn remember(&self, id: i64) {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() == UNANSWERED {
            ids.remove(0);
        }
        ids.push(id);
    }

    /// Whether `id` is one of them; forgets it.
    fn take(&self, id: i64) -> bool {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let found = ids.iter().position(|&x| x == id);
        found.map(|i| ids.remove(i)).is_some()
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
        let ttl = self.cfg().node_ttl.as_secs() as i64;
        let grant = self
            .core()
            .call(
                "register",
                |mut c| async move { c.lease_grant(ttl, None).await },
            )
            .await?;
        let id = grant.id();
        // Remembered until this attempt answers: the engine's bound on the call may drop it
        // after etcd applied the claim, and the next attempt must know the lease as ours.
        self.unanswered.remember(id);
        let key = self.shared.layout.node_key(&reg.node);
        let claim = self.claim("register", reg, id, false).await;
        if claim.is_ok() {
            self.unanswered.take(id);
        }
        match claim {
            Ok(Claim::Written) => Ok(Lease {
                id: id as u64,
                ttl: Duration::from_secs(grant.ttl().max(1) as u64),
            }),
            Ok(Claim::HeldBy(holder)) if self.unanswered.take(holder) => {
                // Our own earlier attempt was applied; its answer was lost. Keep that lease.
                self.revoke_quietly(id).await;
                tracing::info!(
                    backend = crate::NAME,
                    lease = format_args!("{holder:x}"),
                    "an earlier registration attempt was applied although its answer was lost; \
                     keeping its lease"
                );
                Ok(Lease {
                    id: holder as u64,
                    ttl: Duration::from_secs(grant.ttl().max(1) as u64),
                })
            }
            Ok(Claim::HeldBy(holder)) => {
                let e = self.refuse("register", reg, id, holder).await;
                self.revoke_quietly(id).await;
                Err(e)
            }
            Err(e) => {
                // Best effort: the lease would expire by itself anyway. The claim may have
                // been applied: if the revoke was lost too, the next attempt finds the key on
                // this lease, which stays remembered.
                self.revoke_quietly(id).await;
                Err(e.with_key(key))
            }
        }
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
        let mut section = Section::new("cluster.etcd");
        section.set("server", etcd.endpoint(), Origin::Program);
        section.set("node_ttl", "10s", Origin::Program);
        let node = NodeName::parse("n1@127.0.0.1").unwrap();
        let backend = EtcdBackend::new(EtcdConfig::from_section(&section).unwrap(), "emqxcl")
            .for_node(node.clone());
        let reg = Registration {
            meta: Metadata::of(node.clone()),
            node,
        };
        // The lost attempt: a lease granted, the claim applied, the answer never read.
        let lost = backend
            .core()
            .call(
                "register",
                |mut c| async move { c.lease_grant(10, None).await },
            )
            .await
            .unwrap()
            .id();
        assert!(matches!(
            backend.claim("register", &reg, lost, false).await.unwrap(),
            Claim::Written
        ));
        backend.unanswered.remember(lost);

        let lease = backend.register_node(&reg).await.unwrap();
        assert_eq!(lease.id, lost as u64, "the applied attempt's lease is kept");

        // A lease it never granted is still another process's: refused.
        let other = EtcdBackend::new(EtcdConfig::from_section(&section).unwrap(), "emqxcl");
        let e = other.register_node(&reg).await.unwrap_err();
        assert_eq!(e.kind(), autocluster_plugin::ErrorKind::Conflict, "{e}");
    }
}
