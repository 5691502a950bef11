//! The node's registration in v3: a lease, and the node's key written on it only when no
//! other live lease holds the key (one transaction). A key held by another lease is never
//! taken over: the caller gets a `Conflict` naming the holder, and leaves a marker the holder
//! logs (see [`crate::clash`]).

use std::time::Duration;

use autocluster_plugin::{Lease, NodeName, Registration, Result};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::{EtcdBackend, CLEANUP_TIMEOUT};
use crate::clash;
use crate::keys::encode_value;

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
        let key = self.shared.layout.node_key(&reg.node);
        match self.claim("register", reg, id, false).await {
            Ok(Claim::Written) => Ok(Lease {
                id: id as u64,
                ttl: Duration::from_secs(grant.ttl().max(1) as u64),
            }),
            Ok(Claim::HeldBy(holder)) => {
                let e = self.refuse("register", reg, id, holder).await;
                self.revoke_quietly(id).await;
                Err(e)
            }
            Err(e) => {
                // Best effort: the lease would expire by itself anyway.
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
