//! The node's registration in v2: its key with a TTL, whose `createdIndex` is the
//! incarnation; kept alive by refreshing the TTL, rewritten with new metadata in place.

use std::time::Duration;

use autocluster_plugin::{Lease, Registration, Result};
use reqwest::Method;

use super::client::Request;
use super::wire::{secs, KEY_NOT_FOUND};
use super::Inner;
use crate::keys::encode_value;

impl Inner {
    pub(super) async fn register(&self, reg: &Registration) -> Result<Lease> {
        let key = self.layout.node_key(&reg.node);
        let value = String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned();
        let form = [("value", value), ("ttl", secs(self.cfg().node_ttl))];
        let r = self
            .client
            .call("register", Request::new(Method::PUT, &key).form(&form))
            .await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) => Ok(Lease {
                id: n.created_index,
                ttl: Duration::from_secs(n.ttl.unwrap_or(0).max(1) as u64),
            }),
            _ => Err(r.unexpected("register", &key)),
        }
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

    pub(super) async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let key = self.layout.node_key(&reg.node);
        let value = String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned();
        // An update (prevExist=true) keeps the key's createdIndex, our incarnation; a key
        // that is gone must be registered anew.
        let form = [
            ("value", value),
            ("ttl", secs(self.cfg().node_ttl)),
            ("prevExist", "true".to_string()),
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
