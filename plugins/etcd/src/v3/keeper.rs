//! The node's lease kept alive on one long-lived keep-alive stream, opened again (on the
//! endpoint failover picks) when it breaks.

use std::time::Duration;

use autocluster_plugin::{Error, ErrorKind, Lease, Result};
use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::Mutex;

use super::core::Core;
use crate::NAME;

/// The long-lived keep-alive stream of one lease.
#[derive(Debug)]
pub(super) struct Keeper {
    lease: i64,
    /// The endpoint the stream is on.
    endpoint: usize,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

/// Why a keep-alive on an open stream did not renew the lease.
enum PingError {
    /// The server answered TTL 0: the lease is gone.
    Lost,
    /// The stream broke (server restarted, connection lost) or its endpoint did not answer
    /// within its share of the call: open a new one.
    Broken,
}

impl Keeper {
    async fn ping(&mut self, core: &Core) -> std::result::Result<i64, PingError> {
        self.keeper
            .keep_alive()
            .await
            .map_err(|_| PingError::Broken)?;
        match self.stream.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {
                core.saw(r.header().map_or(0, |h| h.revision()));
                Ok(r.ttl())
            }
            Ok(Some(_)) => Err(PingError::Lost),
            Ok(None) | Err(_) => Err(PingError::Broken),
        }
    }

    /// A ping bounded, with several endpoints, by an endpoint's share of the call: an
    /// endpoint that stopped answering is passed, and the stream opened on another one.
    async fn ping_bounded(&mut self, core: &Core) -> std::result::Result<i64, PingError> {
        let Some(share) = core.endpoints().share() else {
            return self.ping(core).await;
        };
        match tokio::time::timeout(share, self.ping(core)).await {
            Ok(res) => res,
            Err(_) => {
                core.endpoints().passed(self.endpoint);
                Err(PingError::Broken)
            }
        }
    }
}

/// One keep-alive of `lease`, on the stream in `slot` (opened first if there is none, or if
/// it broke).
pub(super) async fn keep_alive(
    core: &Core,
    slot: &Mutex<Option<Keeper>>,
    lease: &Lease,
) -> Result<Duration> {
    let id = lease.id as i64;
    let mut slot = slot.lock().await;
    // Taken out while in use: if this call is cancelled half-way, the stream (with a
    // response perhaps still in flight) is dropped rather than reused out of step.
    if let Some(mut k) = slot.take().filter(|k| k.lease == id) {
        match k.ping_bounded(core).await {
            Ok(ttl) => {
                *slot = Some(k);
                return Ok(Duration::from_secs(ttl as u64));
            }
            Err(PingError::Lost) => return Err(lease_lost("keep_alive", id)),
            Err(PingError::Broken) => {} // open a new stream below
        }
    }
    // Opening the stream sends one keep-alive and reads its answer.
    let (endpoint, (keeper, stream)) = core
        .open(
            "keep_alive",
            |mut c| async move { c.lease_keep_alive(id).await },
        )
        .await?;
    *slot = Some(Keeper {
        lease: id,
        endpoint,
        keeper,
        stream,
    });
    Ok(lease.ttl)
}

fn lease_lost(op: &'static str, lease: i64) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("lease {lease:x} is gone (expired, revoked, or etcd was replaced)"),
    )
    .with_backend(NAME)
    .with_operation(op)
}
