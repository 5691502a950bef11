//! Keeps this node registered: register, keep alive, register again after any loss, write the
//! registration again when it was deleted, deregister on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{ErrorKind, Lease};
use tokio::time::{sleep, sleep_until, Instant};

use super::backoff::Backoff;
use super::Shared;

/// How a registration ended.
enum Ended {
    /// The lease is gone: register anew.
    Lost,
    /// The engine stops (after deregistering).
    Stopped,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.config.backoff_min, shared.config.backoff_max);
    loop {
        let Some(lease) = register(&shared, &mut backoff).await else {
            return;
        };
        backoff.reset();
        match keep_alive(&shared, lease, &mut backoff).await {
            Ended::Lost => set_registered(&shared, None),
            Ended::Stopped => return,
        }
    }
}

/// Registers, retrying with backoff until it works; `None` when the engine stops first.
async fn register(shared: &Shared, backoff: &mut Backoff) -> Option<Lease> {
    let backend = &shared.backend;
    let reg = &shared.config.registration;
    let lease = loop {
        let attempt = tokio::select! {
            r = shared.call("register", backend.register(reg)) => r,
            _ = shared.cancel.cancelled() => return None,
        };
        match attempt {
            Ok(lease) => break lease,
            Err(_) => {
                shared.set_registration_ok(false);
                tokio::select! {
                    _ = sleep(backoff.next_delay()) => {}
                    _ = shared.cancel.cancelled() => return None,
                }
            }
        }
    };
    shared.stats.registrations.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        backend = backend.name(),
        node = %reg.node,
        lease = format_args!("{:x}", lease.id),
        ttl = ?lease.ttl,
        "registered"
    );
    set_registered(shared, Some(lease));
    Some(lease)
}

/// Renews `lease` every `keep_alive_every` and writes the registration again when the view
/// task says it is missing, until the lease is lost or the engine stops.
async fn keep_alive(shared: &Shared, lease: Lease, backoff: &mut Backoff) -> Ended {
    let backend = &shared.backend;
    let reg = &shared.config.registration;
    let every = backend.capabilities().keep_alive_every;
    let mut last_renewal = Instant::now();
    let mut next = last_renewal + every;
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = shared.own_key_missing.notified() => {
                tracing::warn!(node = %reg.node, "this node's registration was deleted; writing it again");
                match shared.call("refresh", backend.refresh(reg, &lease)).await {
                    Err(e) if e.kind() == ErrorKind::LeaseLost => return Ended::Lost,
                    // Done, or try again when the view notices again.
                    _ => continue,
                }
            }
            _ = shared.cancel.cancelled() => {
                deregister(shared, &lease).await;
                return Ended::Stopped;
            }
        }
        match shared.call("keep_alive", backend.keep_alive(&lease)).await {
            Ok(_) => {
                shared.stats.renewals.fetch_add(1, Ordering::Relaxed);
                last_renewal = Instant::now();
                backoff.reset();
                shared.set_registration_ok(true);
                next = last_renewal + every;
            }
            Err(e) => {
                shared
                    .stats
                    .renewal_failures
                    .fetch_add(1, Ordering::Relaxed);
                if e.kind() == ErrorKind::LeaseLost {
                    tracing::warn!(node = %reg.node, lease = format_args!("{:x}", lease.id), "lease lost; registering again");
                    return Ended::Lost;
                }
                // Keep renewing the same lease until the backend answers: a server that was
                // down itself kept it (etcd extends leases on restart), and one that expired
                // it says so (LeaseLost). Registering anew on a timer would give peers a
                // false leave-and-join.
                shared.set_registration_ok(false);
                if last_renewal.elapsed() >= lease.ttl {
                    tracing::warn!(
                        node = %reg.node,
                        "no keep-alive for {:?}: the registration may have expired; still trying",
                        last_renewal.elapsed()
                    );
                }
                next = Instant::now() + backoff.next_delay().min(every);
            }
        }
    }
}

fn set_registered(shared: &Shared, lease: Option<Lease>) {
    let registered = lease.is_some();
    shared.lease.send_replace(lease);
    if registered {
        shared.set_registration_ok(true);
    }
    shared.health.send_modify(|h| {
        h.registered = registered;
        h.incarnation = lease.map(|l| l.id);
    });
}

async fn deregister(shared: &Shared, lease: &Lease) {
    match shared
        .call("deregister", shared.backend.deregister(lease))
        .await
    {
        Ok(()) => tracing::info!(node = %shared.config.registration.node, "deregistered"),
        Err(e) => {
            let e = Escaped::new(&e).max(1024);
            tracing::warn!("could not deregister (the registration expires with its TTL): {e}")
        }
    }
    set_registered(shared, None);
}
