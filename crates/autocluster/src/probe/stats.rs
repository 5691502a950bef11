//! What became of the listener's connections: a counter per outcome for `/metrics`, and the
//! log line each outcome writes, rate-limited where a peer could repeat it at will.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use autocluster_plugin::log::RateLimit;

/// A warning the network can cause is logged at most this often per kind; the next one says
/// how many were held back meanwhile (every one is counted in [`ListenerStats`]).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How one connection to the peer listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionOutcome {
    /// The prober proved it knows the cookie and got our proof.
    Proven,
    /// Refused: the prober's proof does not verify with our cookie.
    BadCookie,
    /// Refused: the prober is in another cluster.
    WrongCluster,
    /// Refused: the prober asked for another node.
    WrongNode,
    /// Refused: the prober speaks a probe version we do not.
    Version,
    /// Closed: not this protocol (garbage, an oversized frame, an invalid node name).
    Malformed,
    /// Closed: no first message within the first-frame deadline, or no complete handshake
    /// within the handshake timeout.
    Timeout,
    /// The client hung up mid-handshake (also a prober that stopped on seeing a wrong node
    /// or cluster), or the socket failed.
    Closed,
    /// Closed unfinished to make room: the listener or the client's source address held as
    /// many unproven connections as allowed, and this was the oldest (or, when none could
    /// give way, the newest).
    Evicted,
    /// `accept` itself failed (out of file descriptors, say).
    AcceptFailed,
}

impl ConnectionOutcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [ConnectionOutcome; 10] = [
        ConnectionOutcome::Proven,
        ConnectionOutcome::BadCookie,
        ConnectionOutcome::WrongCluster,
        ConnectionOutcome::WrongNode,
        ConnectionOutcome::Version,
        ConnectionOutcome::Malformed,
        ConnectionOutcome::Timeout,
        ConnectionOutcome::Closed,
        ConnectionOutcome::Evicted,
        ConnectionOutcome::AcceptFailed,
    ];

    /// Its name as a metric label: `proven`, `bad_cookie`, `wrong_cluster`, `wrong_node`,
    /// `version`, `malformed`, `timeout`, `closed`, `evicted`, `accept_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionOutcome::Proven => "proven",
            ConnectionOutcome::BadCookie => "bad_cookie",
            ConnectionOutcome::WrongCluster => "wrong_cluster",
            ConnectionOutcome::WrongNode => "wrong_node",
            ConnectionOutcome::Version => "version",
            ConnectionOutcome::Malformed => "malformed",
            ConnectionOutcome::Timeout => "timeout",
            ConnectionOutcome::Closed => "closed",
            ConnectionOutcome::Evicted => "evicted",
            ConnectionOutcome::AcceptFailed => "accept_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn is_refusal(self) -> bool {
        matches!(
            self,
            ConnectionOutcome::BadCookie
                | ConnectionOutcome::WrongCluster
                | ConnectionOutcome::WrongNode
                | ConnectionOutcome::Version
        )
    }

    /// Logged at `warn` (rate-limited) rather than `debug`: refusals (a misconfigured peer,
    /// or someone guessing), evictions (a flood), failed accepts.
    fn warns(self) -> bool {
        self.is_refusal()
            || matches!(
                self,
                ConnectionOutcome::Evicted | ConnectionOutcome::AcceptFailed
            )
    }
}

impl fmt::Display for ConnectionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of what the listener did, readable while it serves; and the rate limits of the
/// warnings it logs.
#[derive(Debug)]
pub struct ListenerStats {
    counts: [AtomicU64; ConnectionOutcome::ALL.len()],
    warnings: [RateLimit; ConnectionOutcome::ALL.len()],
}

impl Default for ListenerStats {
    fn default() -> Self {
        ListenerStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            warnings: std::array::from_fn(|_| RateLimit::new(WARN_EVERY)),
        }
    }
}

impl ListenerStats {
    /// How many connections ended with `outcome`.
    pub fn get(&self, outcome: ConnectionOutcome) -> u64 {
        self.counts[outcome.index()].load(Ordering::Relaxed)
    }

    /// Every outcome with its count, in the order of [`ConnectionOutcome::ALL`].
    pub fn all(&self) -> Vec<(ConnectionOutcome, u64)> {
        ConnectionOutcome::ALL
            .iter()
            .map(|o| (*o, self.get(*o)))
            .collect()
    }

    /// Handshakes completed: the prober proved it knows the cookie and got our proof.
    pub fn proven(&self) -> u64 {
        self.get(ConnectionOutcome::Proven)
    }

    /// Probers refused: a wrong cookie, another cluster, another target node, a version we
    /// do not speak.
    pub fn refused(&self) -> u64 {
        self.sum(ConnectionOutcome::is_refusal)
    }

    /// Connections that ended without a verdict: garbage, a timeout, a client that hung up,
    /// or one that gave way to a newer connection.
    pub fn failed(&self) -> u64 {
        self.sum(|o| {
            matches!(
                o,
                ConnectionOutcome::Malformed
                    | ConnectionOutcome::Timeout
                    | ConnectionOutcome::Closed
                    | ConnectionOutcome::Evicted
            )
        })
    }

    fn sum(&self, which: impl Fn(ConnectionOutcome) -> bool) -> u64 {
        ConnectionOutcome::ALL
            .iter()
            .filter(|o| which(**o))
            .map(|o| self.get(*o))
            .sum()
    }

    /// Counts one connection that ended with `outcome` and logs it: refusals, evictions
    /// and failed accepts at `warn`, at most once per kind a minute with the number held
    /// back; the rest at `debug`. `detail` holds nothing from the network unescaped.
    pub(crate) fn record(&self, outcome: ConnectionOutcome, peer: &dyn fmt::Display, detail: &str) {
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if !outcome.warns() {
            tracing::debug!(%peer, %outcome, "peer listener: {detail}");
            return;
        }
        let Some(held_back) = self.warnings[outcome.index()].allow() else {
            return;
        };
        let what = if outcome.is_refusal() {
            "refused a probe: "
        } else {
            ""
        };
        if held_back == 0 {
            tracing::warn!(%peer, %outcome, "peer listener: {what}{detail}");
        } else {
            tracing::warn!(
                %peer, %outcome, held_back,
                "peer listener: {what}{detail} ({held_back} more of this kind since the last such warning, not logged)"
            );
        }
    }
}
