//! The floor of the mesh run: N bare `etcd-client` clients in this one process, each on its
//! own connection doing what an agent does at the least (lease grant, put on the lease, a
//! read of the prefix, then a watch of it from the revision after), all started at once.
//! The figure is the time until every client has seen all N keys: etcd's own cost of a full
//! mesh formation (N puts, each an event for N watchers).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use tokio::task::JoinSet;

use crate::probes::BoxError;

/// The floor's leases: long enough to outlast the run without keep-alives (the floor
/// measures formation, not renewal).
const FLOOR_TTL: i64 = 120;

/// What the floor measured.
pub struct Floor {
    /// Until every client saw all N keys (`None`: not within the timeout).
    pub all_see_all: Option<Duration>,
    /// Clients that saw all N.
    pub complete: usize,
    /// Clients whose calls failed (each counted once).
    pub failed: usize,
}

/// Runs the floor on `endpoint` under `prefix` for `n` clients, at most `timeout`; revokes
/// its leases afterwards (best effort).
pub async fn run(
    endpoint: &str,
    prefix: &str,
    n: usize,
    timeout: Duration,
) -> Result<Floor, BoxError> {
    let started = Instant::now();
    let failed = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (endpoint, prefix, failed) = (endpoint.to_string(), prefix.to_string(), failed.clone());
        set.spawn(async move {
            match tokio::time::timeout(timeout, client(&endpoint, &prefix, i, n)).await {
                Ok(Ok(lease)) => Some((started.elapsed(), lease)),
                Ok(Err(_)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(_) => None,
            }
        });
    }
    let mut done = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        if let Ok(Some(d)) = r {
            done.push(d);
        }
    }
    let complete = done.len();
    let all_see_all = (complete == n)
        .then(|| done.iter().map(|d| d.0).max())
        .flatten();
    revoke_all(endpoint, done.iter().map(|d| d.1).collect()).await;
    Ok(Floor {
        all_see_all,
        complete,
        failed: failed.load(Ordering::Relaxed),
    })
}

/// One client: lease, put, read, watch until all `n` keys were seen. Returns its lease.
async fn client(endpoint: &str, prefix: &str, i: usize, n: usize) -> Result<i64, BoxError> {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(30));
    let mut c = Client::connect([endpoint], Some(opts)).await?;
    let lease = c.lease_grant(FLOOR_TTL, None).await?.id();
    let key = format!("{prefix}/floor{i:05}");
    let put = etcd_client::PutOptions::new().with_lease(lease);
    c.put(key, "x", Some(put)).await?;
    let snap = c
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await?;
    let mut seen: HashSet<Vec<u8>> = snap.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    if seen.len() >= n {
        return Ok(lease);
    }
    let rev = snap.header().map_or(0, |h| h.revision()) + 1;
    let wopts = WatchOptions::new().with_prefix().with_start_revision(rev);
    let mut stream = c.watch(prefix, Some(wopts)).await?;
    while let Some(resp) = stream.message().await? {
        for ev in resp.events() {
            if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                seen.insert(kv.key().to_vec());
            }
        }
        if seen.len() >= n {
            return Ok(lease);
        }
    }
    Err("the watch ended".into())
}

async fn revoke_all(endpoint: &str, leases: Vec<i64>) {
    let Ok(mut c) = Client::connect([endpoint], None).await else {
        return;
    };
    for id in leases {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(id)).await;
    }
}
