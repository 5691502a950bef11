//! The node's registration in v2: its key with a TTL, whose `createdIndex` is the
//! incarnation; kept alive by refreshing the TTL, rewritten with new metadata in place.

use std::time::{Duration, Instant};

use autocluster_plugin::{Lease, Registration, Result};
use reqwest::Method;

use super::client::Request;
use super::wire::{secs, Node, Reply, KEY_NOT_FOUND, NODE_EXIST};
use super::Inner;
use crate::keys::encode_value;

impl Inner {
    /// Writes the node's key with its TTL where no live registration holds it
    /// (`prevExist=false`); a key without a TTL (written by hand) is taken over with a
    /// compare-and-swap, a key with one is refused (see [`Inner::refuse`]).
    pub(super) async fn register(&self, reg: &Registration) -> Result<Lease> {
        let key = self.layout.node_key(&reg.node);
        let value = String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned();
        let ttl = secs(self.cfg().node_ttl);
        // etcd starts the key's TTL when it applies the write: after it was sent.
        let sent = Instant::now();
        let form = [
            ("value", value.clone()),
            ("ttl", ttl.clone()),
            ("prevExist", "false".to_string()),
        ];
        let r = self
            .client
            .call("register", Request::new(Method::PUT, &key).form(&form))
            .await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) => return Ok(lease_of(n, sent)),
            (_, Some(NODE_EXIST)) => {}
            _ => return Err(r.unexpected("register", &key)),
        }
        let cur = self.read_key("register", &key).await?;
        let held = match (&cur.body.node, cur.code()) {
            (Some(n), None) if n.ttl.is_some() => {
                return Err(self.refuse("register", reg, n).await)
            }
            (Some(n), None) if !n.dir => n.modified_index,
            _ => return Err(cur.unexpected("register", &key)),
        };
        let sent = Instant::now();
        let form = [
            ("value", value),
            ("ttl", ttl),
            ("prevIndex", held.to_string()),
        ];
        let r = self
            .client
            .call("register", Request::new(Method::PUT, &key).form(&form))
            .await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) => Ok(lease_of(n, sent)),
            _ => Err(r.unexpected("register", &key)),
        }
    }

    async fn read_key(&self, op: &'static str, key: &str) -> Result<Reply> {
        let query = [("quorum", "true".to_string())];
        self.client
            .call(op, Request::new(Method::GET, key).query(&query))
            .await
    }

    /// Refreshes the TTL of the node's key; returns the TTL etcd now gives it.
    pub(super) async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        let key = self.layout.node_key(&self.node);
        let form = [
            ("refresh", "true".to_string()),
            ("prevExist", "true".to_string()),
            ("ttl", secs(self.cfg().node_ttl)),
        ];
        let r = self
            .client
            .call("keep_alive", Request::new(Method::PUT, &key).form(&form))
            .await?;
        let ttl = match (&r.body.node, r.code()) {
            (Some(n), None) if n.created_index == lease.id => n.ttl.unwrap_or(0),
            // Another life of the key (someone deleted and wrote it again).
            (Some(_), None) => return Err(r.lease_lost("keep_alive", &key)),
            (_, Some(KEY_NOT_FOUND)) => return Err(r.lease_lost("keep_alive", &key)),
            _ => return Err(r.unexpected("keep_alive", &key)),
        };
        Ok(Duration::from_secs(ttl.max(0) as u64))
    }

    /// Writes the registration again in place (a compare-and-swap that keeps the key's
    /// `createdIndex`, our incarnation). A key that is gone, or held by a key without a TTL,
    /// must be registered anew; one held by another registration is refused.
    pub(super) async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let key = self.layout.node_key(&reg.node);
        let cur = self.read_key("refresh", &key).await?;
        let n = match (&cur.body.node, cur.code()) {
            (Some(n), None) => n,
            (_, Some(KEY_NOT_FOUND)) => return Err(cur.lease_lost("refresh", &key)),
            _ => return Err(cur.unexpected("refresh", &key)),
        };
        if n.created_index != lease.id {
            if n.ttl.is_some() {
                return Err(self.refuse("refresh", reg, n).await);
            }
            return Err(cur.lease_lost("refresh", &key));
        }
        let value = String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned();
        let form = [
            ("value", value),
            ("ttl", secs(self.cfg().node_ttl)),
            ("prevIndex", n.modified_index.to_string()),
        ];
        let r = self
            .client
            .call("refresh", Request::new(Method::PUT, &key).form(&form))
            .await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) if n.created_index == lease.id => Ok(()),
            (Some(_), None) | (_, Some(KEY_NOT_FOUND)) => Err(r.lease_lost("refresh", &key)),
            _ => Err(r.unexpected("refresh", &key)),
        }
    }

    /// Deletes the node's key.
    pub(super) async fn deregister(&self) -> Result<()> {
        let key = self.layout.node_key(&self.node);
        let r = self
            .client
            .call("deregister", Request::new(Method::DELETE, &key))
            .await?;
        match r.code() {
            None | Some(KEY_NOT_FOUND) => Ok(()),
            _ => Err(r.unexpected("deregister", &key)),
        }
    }
}

/// The lease a written key stands for: its `createdIndex` and TTL, counted (on the safe side)
/// from when the write was `sent`.
fn lease_of(n: &Node, sent: Instant) -> Lease {
    Lease {
        id: n.created_index,
        ttl: Duration::from_secs(n.ttl.unwrap_or(0).max(1) as u64),
        age: sent.elapsed(),
    }
}
