//! Keeps this node registered: register, keep alive, register again after any loss, write the
//! registration again when it was deleted, deregister on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use autocluster_plugin::{ErrorKind, Lease};
use tokio::time::{sleep, sleep_until, Instant};

use super::backoff::Backoff;
use super::Shared;

pub(crate) async fn run(shared: Arc<Shared>) {
    let backend = shared.backend.clone();
    let reg = shared.config.registration.clone();
    let caps = backend.capabilities();
    let mut backoff = Backoff::new(shared.config.backoff_min, shared.config.backoff_max);

    'register: loop {
        // Register, retrying with backoff until it works or we are told to stop.
        let lease = loop {
            let attempt = tokio::select! {
                r = shared.call("register", backend.register(&reg)) => r,
                _ = shared.cancel.cancelled() => return,
            };
            match attempt {
                Ok(lease) => break lease,
                Err(_) => {
                    shared.set_registration_ok(false);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = shared.cancel.cancelled() => return,
                    }
                }
            }
        };
        backoff.reset();
        shared.stats.registrations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            backend = backend.name(),
            node = %reg.node,
            lease = format_args!("{:x}", lease.id),
            ttl = ?lease.ttl,
            "registered"
        );
        set_registered(&shared, Some(lease));

        // Keep it alive.
        let mut last_renewal = Instant::now();
        let mut next = Instant::now() + caps.keep_alive_every;
        loop {
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = shared.own_key_missing.notified() => {
                    tracing::warn!(node = %reg.node, "this node's registration was deleted; writing it again");
                    match shared.call("refresh", backend.refresh(&reg, &lease)).await {
                        Ok(()) => continue,
                        Err(e) if e.kind() == ErrorKind::LeaseLost => {
                            set_registered(&shared, None);
                            continue 'register;
                        }
                        Err(_) => {
                            // Try again at the next keep-alive; the view will notice again.
                            continue;
                        }
                    }
                }
                _ = shared.cancel.cancelled() => {
                    deregister(&shared, &lease).await;
                    return;
                }
            }
            match shared.call("keep_alive", backend.keep_alive(&lease)).await {
                Ok(_) => {
                    shared.stats.renewals.fetch_add(1, Ordering::Relaxed);
                    last_renewal = Instant::now();
                    backoff.reset();
                    shared.set_registration_ok(true);
                    next = last_renewal + caps.keep_alive_every;
                }
                Err(e) if e.kind() == ErrorKind::LeaseLost => {
                    shared
                        .stats
                        .renewal_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %reg.node, lease = format_args!("{:x}", lease.id), "lease lost; registering again");
                    set_registered(&shared, None);
                    continue 'register;
                }
                Err(_) => {
                    shared
                        .stats
                        .renewal_failures
                        .fetch_add(1, Ordering::Relaxed);
                    // Keep renewing the same lease until the backend answers: a server that
                    // was down itself kept it (etcd extends leases on restart), and one that
                    // expired it says so (LeaseLost). Registering anew on a timer would give
                    // peers a false leave-and-join.
                    shared.set_registration_ok(false);
                    if last_renewal.elapsed() >= lease.ttl {
                        tracing::warn!(
                            node = %reg.node,
                            "no keep-alive for {:?}: the registration may have expired; still trying",
                            last_renewal.elapsed()
                        );
                    }
                    next = Instant::now() + backoff.next_delay().min(caps.keep_alive_every);
                }
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
            tracing::warn!("could not deregister (the registration expires with its TTL): {e}")
        }
    }
    set_registered(shared, None);
}
