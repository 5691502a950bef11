//! The v2 cluster lock: `PUT .../lock?prevExist=false` holding the node's name with the
//! node's TTL, refreshed with the node's keep-alives while held, waited for with a long poll
//! on the lock key, released by a compare-and-delete on the node's name.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{Error, ErrorKind, Lease, LockToken, Result, Revision};
use reqwest::Method;

use super::client::{error, Request};
use super::wire::{secs, Node, KEY_NOT_FOUND, NODE_EXIST, TEST_FAILED};
use super::Inner;
use crate::NAME;

impl Inner {
    /// Takes the lock, waiting at most `timeout` (`lock_timeout` when zero).
    pub(super) async fn lock(&self, lease: &Lease, timeout: Duration) -> Result<LockToken> {
        let timeout = if timeout.is_zero() {
            self.cfg().lock_timeout
        } else {
            timeout
        };
        let name = self.layout.lock_name();
        let me = self.node.to_string();
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || {
            error(
                ErrorKind::LockTimeout,
                "lock",
                self.client.current_endpoint(),
                format!("the cluster lock {name} was not acquired within {timeout:?}"),
            )
            .with_key(name)
        };
        loop {
            let form = [
                ("value", me.clone()),
                ("prevExist", "false".to_string()),
                ("ttl", secs(self.cfg().node_ttl)),
            ];
            let put = self
                .client
                .call("lock", Request::new(Method::PUT, name).form(&form));
            let r = within(deadline, put, timed_out).await?;
            match (&r.body.node, r.code()) {
                (Some(n), None) => return Ok(self.held(lease, n)),
                (_, Some(NODE_EXIST)) => {
                    // Taken: ours already (a second call), or wait until it changes.
                    let get = self.client.call("lock", Request::new(Method::GET, name));
                    let cur = within(deadline, get, timed_out).await?;
                    if let (Some(n), None) = (&cur.body.node, cur.code()) {
                        if n.value.as_deref() == Some(me.as_str()) {
                            return Ok(self.held(lease, n));
                        }
                    }
                    let wait_index = cur.index.max(r.body.index.unwrap_or(0)) + 1;
                    let query = [
                        ("wait", "true".to_string()),
                        ("waitIndex", wait_index.to_string()),
                    ];
                    let wait = async {
                        let req = Request::new(Method::GET, name).query(&query);
                        let (resp, ep) = self.client.open("lock", req).await?;
                        self.client.read("lock", resp, ep).await
                    };
                    within(deadline, wait, timed_out).await?;
                }
                _ => return Err(r.unexpected("lock", name)),
            }
        }
    }

    /// The lock is ours, at `n`'s index.
    fn held(&self, lease: &Lease, n: &Node) -> LockToken {
        self.locked.store(true, Ordering::Relaxed);
        LockToken {
            key: self.layout.lock_name().to_string(),
            lease: lease.id,
            fence: Revision(n.modified_index),
        }
    }

    pub(super) async fn unlock(&self, token: &LockToken) -> Result<()> {
        self.locked.store(false, Ordering::Relaxed);
        // Compare-and-delete: only our own lock.
        let query = [("prevValue", self.node.to_string())];
        let req = Request::new(Method::DELETE, &token.key).query(&query);
        let r = self.client.call("unlock", req).await?;
        match r.code() {
            None | Some(KEY_NOT_FOUND) | Some(TEST_FAILED) => Ok(()),
            _ => Err(r.unexpected("unlock", &token.key)),
        }
    }

    /// While the lock is held, refreshes its TTL (with the node's keep-alive): the lock
    /// lives as long as the node. A lock found gone is no longer held; a failure is logged.
    pub(super) async fn refresh_lock(&self) {
        if !self.locked.load(Ordering::Relaxed) {
            return;
        }
        let form = [
            ("refresh", "true".to_string()),
            ("prevExist", "true".to_string()),
            ("prevValue", self.node.to_string()),
            ("ttl", secs(self.cfg().node_ttl)),
        ];
        let name = self.layout.lock_name();
        let req = Request::new(Method::PUT, name).form(&form);
        match self.client.call("keep_alive", req).await {
            Ok(r) if r.code().is_some() => {
                self.locked.store(false, Ordering::Relaxed);
                tracing::warn!(
                    backend = NAME,
                    key = name,
                    "the cluster lock is no longer held"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                backend = NAME,
                key = name,
                "refreshing the cluster lock: {}",
                Escaped::new(&e).max(1024)
            ),
        }
    }

    /// Releases the lock if this node holds it (a clean leave).
    pub(super) async fn release_lock(&self) -> Result<(), Error> {
        if !self.locked.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let query = [("prevValue", self.node.to_string())];
        let req = Request::new(Method::DELETE, self.layout.lock_name()).query(&query);
        self.client.call("deregister", req).await?;
        Ok(())
    }
}

/// `f`, or `timed_out()` if it has not ended by `deadline`.
async fn within<T>(
    deadline: tokio::time::Instant,
    f: impl Future<Output = Result<T>>,
    timed_out: impl FnOnce() -> Error,
) -> Result<T> {
    tokio::time::timeout_at(deadline, f)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}
