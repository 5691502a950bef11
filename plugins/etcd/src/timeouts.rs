//! The transport's timeouts, derived from `cluster.call_timeout` (the engine's bound on every
//! backend call) and `node_ttl`, so one setting serves a slow or distant etcd.

use std::time::Duration;

/// How long a TCP (and TLS) connection to one endpoint may take, at least.
const MIN_CONNECT: Duration = Duration::from_secs(3);
/// HTTP/2 pings on open streams (watch, keep-alive) find a dead or paused server. etcd
/// refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a ping's answer may take, at least.
const MIN_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound of one ordinary v2 request, at least (the engine bounds the call anyway).
const MIN_REQUEST: Duration = Duration::from_secs(10);
/// Progress notices of the watch: at most this far apart, at least this close.
const MAX_PROGRESS_EVERY: Duration = Duration::from_secs(5);
const MIN_PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The transport's timeouts; see [`Timeouts::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The engine's bound on one call (`cluster.call_timeout`); failover splits it between
    /// the endpoints.
    pub call: Duration,
    /// Connecting to one endpoint (TCP and TLS): half the call, at least 3 s.
    pub connect: Duration,
    /// HTTP/2 pings while a stream is open: every 10 s.
    pub ping_every: Duration,
    /// A ping unanswered this long closes the connection: the call time, at least 5 s (an
    /// answer that may take the call time is no sign of a dead server).
    pub ping_timeout: Duration,
    /// One ordinary v2 request: the call time, at least 10 s.
    pub request: Duration,
    /// How often the watch asks etcd how far it got, and yields a progress notice: a third of
    /// `node_ttl`, between 0.5 s and 5 s.
    pub progress_every: Duration,
    /// A watch that has not shown it caught up with etcd for this long after it was asked is
    /// stalled: twice `progress_every`, at least the call time.
    pub stall_after: Duration,
}

impl Timeouts {
    /// The timeouts for a call bound of `call` and a registration TTL of `node_ttl`.
    pub fn new(call: Duration, node_ttl: Duration) -> Timeouts {
        let progress_every = (node_ttl / 3).clamp(MIN_PROGRESS_EVERY, MAX_PROGRESS_EVERY);
        Timeouts {
            call,
            connect: (call / 2).max(MIN_CONNECT),
            ping_every: PING_EVERY,
            ping_timeout: call.max(MIN_PING_TIMEOUT),
            request: call.max(MIN_REQUEST),
            progress_every,
            stall_after: (progress_every * 2).max(call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_defaults_keep_todays_bounds() {
        let t = Timeouts::new(S(5), S(60));
        assert_eq!(t.connect, S(3));
        assert_eq!(t.ping_timeout, S(5));
        assert_eq!(t.request, S(10));
        assert_eq!(t.progress_every, S(5));
        assert_eq!(t.stall_after, S(10));
    }

    #[test]
    fn a_long_call_time_stretches_the_transport() {
        let t = Timeouts::new(S(30), S(60));
        assert_eq!(t.connect, S(15));
        assert_eq!(t.ping_timeout, S(30));
        assert_eq!(t.request, S(30));
        assert_eq!(t.stall_after, S(30));
        assert_eq!(Timeouts::new(S(5), S(3)).progress_every, S(1));
        assert_eq!(
            Timeouts::new(S(5), S(1)).progress_every,
            Duration::from_millis(500)
        );
    }
}
