//! Keeps this node registered: register, keep alive, register again after any loss, write the
//! registration again when it was deleted, deregister on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{ErrorKind, Lease, Registration};
use tokio::sync::watch;
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
    let mut own = shared.own.subscribe();
    let checked = super::check_metadata(&own.borrow(), &shared.backend);
    if let Err(e) = checked {
        shared.fail(format!("this node cannot register: {e}"), Some(e.kind()));
        return;
    }
    loop {
        let Some(lease) = register(&shared, &mut own, &mut backoff).await else {
            return;
        };
        backoff.reset();
        match keep_alive(&shared, lease, &mut own, &mut backoff).await {
            Ended::Lost => set_registered(&shared, None),
            Ended::Stopped => return,
        }
    }
}

/// Registers what `own` holds now, retrying with backoff until it works; `None` when the
/// engine stops first.
async fn register(
    shared: &Shared,
    own: &mut watch::Receiver<Registration>,
    backoff: &mut Backoff,
) -> Option<Lease> {
    let backend = &shared.backend;
    let mut clash = Clash::default();
    let lease = loop {
        let reg = own.borrow_and_update().clone();
        let attempt = tokio::select! {
            r = shared.call("register", backend.register(&reg)) => r,
            _ = shared.cancel.cancelled() => return None,
        };
        match attempt {
            Ok(lease) => break lease,
            Err(e) if e.kind() == ErrorKind::Conflict && clash.may_clear(shared, &e) => {
                shared.set_registration_ok(false);
                tokio::select! {
                    _ = sleep(backoff.next_delay()) => {}
                    _ = shared.cancel.cancelled() => return None,
                }
            }
            Err(e) if !e.is_retryable() => {
                shared.fail(format!("this node cannot register: {e}"), Some(e.kind()));
                return None;
            }
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
        node = %shared.config.registration.node,
        lease = format_args!("{:x}", lease.id),
        ttl = ?lease.ttl,
        "registered"
    );
    set_registered(shared, Some(lease));
    Some(lease)
}

/// A registration refused because another one holds this node's name. That holder may be
/// an earlier life of this very node that crashed (a `kill -9` and a restart by the service
/// manager): its registration runs out within one TTL, and this node then registers. A live
/// holder keeps renewing, so after one TTL and one renewal period the name is really taken,
/// and the refusal stands (the engine fails, the agent exits 2). Unless the first refusal
/// said the holder's registration had longer left: etcd extends every lease at a leader
/// election (by its election timeout), so a crashed holder's lease can outlive one TTL from
/// a refusal just after one; then the wait is what it had left and one renewal period.
#[derive(Default)]
struct Clash {
    /// When the wait for the name ends.
    until: Option<Instant>,
}

impl Clash {
    /// Whether the name may still come free: true until one TTL and one renewal period (or
    /// what the first refusal said the holder had left, and one renewal period, if longer)
    /// have passed since the first refusal.
    fn may_clear(&mut self, shared: &Shared, refusal: &autocluster_plugin::Error) -> bool {
        let caps = shared.backend.capabilities();
        let until = *self.until.get_or_insert_with(|| {
            let left = refusal.clears_in().unwrap_or_default();
            let window = caps.ttl.max(left) + caps.keep_alive_every;
            tracing::warn!(
                node = %shared.config.registration.node,
                "this node's name is held by another registration; waiting up to {window:?} \
                 for it to run out (an earlier life of this node that crashed) before giving up"
            );
            Instant::now() + window
        });
        Instant::now() < until
    }
}

/// Renews `lease` every `keep_alive_every`, and writes the registration again under it when
/// the view task says it is missing or when this node's metadata changed (under its own
/// backoff: a registration that is written and then read back as missing must not become a
/// write loop, and updates in quick succession are written together), until the lease is
/// lost, the backend refuses for good, or the engine stops.
async fn keep_alive(
    shared: &Shared,
    lease: Lease,
    own: &mut watch::Receiver<Registration>,
    backoff: &mut Backoff,
) -> Ended {
    let every = shared.backend.capabilities().keep_alive_every;
    // The TTL began before the registration answered (etcd counts from the grant; a
    // registration under load, or one that adopted an earlier attempt's lease, takes
    // seconds): renewed `every` after that, at once if that is past. Counting from the
    // answer instead is what lost, in one 1,000-agent formation, 297 of 335 lost leases:
    // registrations that took up to the call timeout, then a first keep-alive too late.
    let now = Instant::now();
    let mut last_renewal = now.checked_sub(lease.age).unwrap_or(now);
    let mut next = last_renewal + every;
    // When the last answer came (the registration's, then each renewal's): what the view
    // task compares the watch's deletion of this node's key with when the lease is lost.
    let mut answered = now;
    let mut rewrites = Rewrites::new(shared);
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = shared.own_key_missing.notified(), if rewrites.due.is_none() => {
                rewrites.schedule();
                continue;
            }
            Ok(()) = own.changed() => {
                rewrites.updated = true;
                if rewrites.due.is_none() {
                    rewrites.schedule();
                }
                continue;
            }
            _ = sleep_until(rewrites.due.unwrap_or(next)), if rewrites.due.is_some() => {
                match rewrite(shared, &lease, own, &mut rewrites).await {
                    Some(ended) => return note_lost(shared, &lease, answered, ended),
                    None => continue,
                }
            }
            _ = shared.cancel.cancelled() => {
                deregister(shared, &lease).await;
                return Ended::Stopped;
            }
        }
        // A renewal counts from when it was asked for: the server renewed the lease at
        // some point between the ask and the answer, and the answer may have been slow.
        let asked = Instant::now();
        match renew(shared, &lease, (last_renewal, answered), backoff).await {
            Renewed::Yes => {
                last_renewal = asked;
                answered = Instant::now();
                rewrites.quiet_since(last_renewal - every);
                next = last_renewal + every;
            }
            Renewed::Retry(at) => next = at,
            Renewed::Ended(ended) => return note_lost(shared, &lease, answered, ended),
        }
    }
}

/// Leaves word of a lost lease, and when its last renewal answered, for the view task.
fn note_lost(shared: &Shared, lease: &Lease, answered: Instant, ended: Ended) -> Ended {
    if matches!(ended, Ended::Lost) {
        *shared.lost_lease.lock().unwrap_or_else(|p| p.into_inner()) = Some((lease.id, answered));
    }
    ended
}

/// How one keep-alive went.
enum Renewed {
    Yes,
    /// Not renewed; try again at this instant.
    Retry(Instant),
    Ended(Ended),
}

/// One keep-alive of `lease`, renewed last at `last_renewal` (when that renewal, or the
/// grant, was asked for: the earliest the server can have counted from), whose answer came at
/// `answered` (the latest).
async fn renew(
    shared: &Shared,
    lease: &Lease,
    (last_renewal, answered): (Instant, Instant),
    backoff: &mut Backoff,
) -> Renewed {
    let node = &shared.config.registration.node;
    let every = shared.backend.capabilities().keep_alive_every;
    // A slow answer that comes while the lease still has time renews it as well as a quick
    // one: the call waits for as long as the lease may have left (at least the call time),
    // counted from the last answer: the server renewed it no later than that. Cutting it at
    // the call time, and opening a new keep-alive stream, is what made an overloaded etcd
    // lose leases that were still alive (docs/benchmarks.md, the mesh); counting from the
    // ask cut answers that take about the call time (tests/etcd_overload.rs, CI of 9814a6d).
    let left = lease.ttl.saturating_sub(answered.elapsed());
    let bound = left.max(shared.config.call_timeout);
    match shared
        .call_within("keep_alive", bound, shared.backend.keep_alive(lease))
        .await
    {
        Ok(_) => {
            shared.stats.renewals.fetch_add(1, Ordering::Relaxed);
            backoff.reset();
            shared.set_registration_ok(true);
            Renewed::Yes
        }
        Err(e) => {
            shared
                .stats
                .renewal_failures
                .fetch_add(1, Ordering::Relaxed);
            if e.kind() == ErrorKind::LeaseLost {
                tracing::warn!(node = %node, lease = format_args!("{:x}", lease.id), "lease lost; registering again");
                return Renewed::Ended(Ended::Lost);
            }
            if !e.is_retryable() {
                return Renewed::Ended(refused(shared, lease, e).await);
            }
            // Keep renewing the same lease until the backend answers: a server that was
            // down itself kept it (etcd extends leases on restart), and one that expired
            // it says so (LeaseLost). Registering anew on a timer would give peers a
            // false leave-and-join.
            shared.set_registration_ok(false);
            if e.kind() == ErrorKind::Conflict {
                // The keep-alive went out; another process claims this node's name (the
                // backend logs it). Keep the cadence: not ready until it is over.
                return Renewed::Retry(Instant::now() + every);
            }
            if last_renewal.elapsed() >= lease.ttl {
                tracing::warn!(
                    node = %node,
                    "no keep-alive for {:?}: the registration may have expired; still trying",
                    last_renewal.elapsed()
                );
            }
            // Retried while the lease has time left, often enough that several tries fit in
            // what is left: an etcd whose apply loop lags refuses keep-alives for a while
            // ("waiting for the applied index took too long", after a second's wait), and
            // the lease lives if one of them comes through before the TTL is gone.
            // Once the TTL is gone, the backoff alone paces them.
            let left = lease.ttl.saturating_sub(last_renewal.elapsed());
            let mut delay = backoff.next_delay().min(every);
            if !left.is_zero() {
                delay = delay.min((left / 4).max(shared.config.backoff_min));
            }
            Renewed::Retry(Instant::now() + delay)
        }
    }
}

/// Writes the registration (what `own` holds now) again under `lease`; `Some` when the
/// registration ended.
async fn rewrite(
    shared: &Shared,
    lease: &Lease,
    own: &mut watch::Receiver<Registration>,
    rewrites: &mut Rewrites,
) -> Option<Ended> {
    let reg = own.borrow_and_update().clone();
    if rewrites.updated {
        tracing::info!(node = %reg.node, "this node's metadata changed; writing its registration again");
    } else {
        tracing::warn!(node = %reg.node, "this node's registration was deleted; writing it again");
    }
    let result = shared
        .call("refresh", shared.backend.refresh(&reg, lease))
        .await;
    rewrites.done();
    match result {
        Ok(()) => {
            rewrites.updated = false;
            None
        }
        Err(e) if e.kind() == ErrorKind::LeaseLost => Some(Ended::Lost),
        Err(e) if !e.is_retryable() => Some(refused(shared, lease, e).await),
        Err(_) => {
            // A deleted registration is tried again when the view notices again; an update
            // nobody else notices is tried again after the backoff.
            if rewrites.updated {
                rewrites.schedule();
            }
            None
        }
    }
}

/// The backend refused the registration for good: the engine fails (not ready, with the
/// reason) and this node leaves.
async fn refused(shared: &Shared, lease: &Lease, e: autocluster_plugin::Error) -> Ended {
    shared.fail(
        format!("the backend refuses this node's registration: {e}"),
        Some(e.kind()),
    );
    deregister(shared, lease).await;
    Ended::Stopped
}

/// When the registration may be written again: at once the first time, then with backoff
/// while the rewrites keep coming.
struct Rewrites {
    /// This node's metadata changed since the registration was last written.
    updated: bool,
    backoff: Backoff,
    /// When the pending rewrite is due.
    due: Option<Instant>,
    /// The earliest a next rewrite may happen.
    earliest: Instant,
    last: Option<Instant>,
}

impl Rewrites {
    fn new(shared: &Shared) -> Self {
        Rewrites {
            updated: false,
            backoff: Backoff::new(shared.config.backoff_min, shared.config.backoff_max),
            due: None,
            earliest: Instant::now(),
            last: None,
        }
    }

    fn schedule(&mut self) {
        self.due = Some(self.earliest.max(Instant::now()));
    }

    fn done(&mut self) {
        let now = Instant::now();
        self.due = None;
        self.last = Some(now);
        self.earliest = now + self.backoff.next_delay();
    }

    /// No rewrite since `t`: the next one may happen at once again.
    fn quiet_since(&mut self, t: Instant) {
        if self.last.is_none_or(|last| last < t) {
            self.backoff.reset();
            self.earliest = Instant::now();
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
        h.incarnation = lease.map(|l| autocluster_plugin::Incarnation(l.id));
    });
}

async fn deregister(shared: &Shared, lease: &Lease) {
    match shared
        .call("deregister", shared.backend.deregister(lease))
        .await
    {
        Ok(()) => tracing::info!(node = %shared.config.registration.node, "deregistered"),
        Err(e) => {
            *shared
                .deregister_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((e.kind(), e.to_string()));
            let e = Escaped::new(&e).max(1024);
            tracing::warn!("could not deregister (the registration expires with its TTL): {e}")
        }
    }
    set_registered(shared, None);
}
