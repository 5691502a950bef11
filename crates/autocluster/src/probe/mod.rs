//! The peer liveness probe: is a candidate node running, and is it the node we think it is?
//!
//! Static seeds and DNS answers name *candidates*; a node is running when it answers a short
//! handshake on its peer listener (`node.listen`, default port [`DEFAULT_PORT`]) that proves
//! its node name, its cluster name, and that it knows the cluster's cookie (`node.cookie`),
//! without the cookie ever crossing the wire.
//!
//! # The handshake (version 1)
//!
//! Every message is a frame: a type byte, a big-endian `u16` payload length (at most
//! [`MAX_FRAME`] bytes), then the payload. Strings are a `u16` length and UTF-8 bytes; nonces
//! and MACs are 32 bytes.
//!
//! ```text
//! prober                                         listener
//!   HELLO     "ACPB", version, cluster, node, target, nonce_c  ->
//!          <-  CHALLENGE  version, cluster, node, nonce_s
//!   (prober checks node == target and cluster == its own, else stops: WrongNode/WrongCluster)
//!   PROOF     HMAC(cookie, "client" transcript)        ->
//!          <-  WELCOME    HMAC(cookie, "server" transcript)   or   REFUSED reason, detail
//!          <-  METADATA   HMAC(cookie, "metadata" transcript, json), json
//! ```
//!
//! METADATA follows a WELCOME only: it is what the listener's node registers (version,
//! labels, endpoints, start time, cluster id) as JSON of at most [`MAX_METADATA_BYTES`], so
//! static and DNS peers, whose candidate lists name nodes only, see what etcd and multicast
//! peers see. Its MAC binds it to this handshake (no change on the way, no replay). The
//! prober reads it with its own bound (the 1 KiB of [`MAX_FRAME`] holds for everything
//! else, and a listener never reads one), checks it as if it were set locally, and keeps the
//! candidate's name and addresses. A prober of the first release stops reading at WELCOME;
//! a listener of the first release closes after it, which a prober takes as "no metadata".
//!
//! A transcript is a fixed protocol label, a role tag (`client` or `server`), the cluster
//! name, the prober's node name, the listener's node name and both nonces; the MAC is
//! HMAC-SHA256 keyed by the cookie. Fresh nonces on both sides mean a recorded proof is
//! useless later (no replay), and the role tag means a listener's proof is never a valid
//! prober proof (no reflection). The listener proves itself only after the prober did, so an
//! unauthenticated client learns nothing keyed by the cookie.
//!
//! Every read is bounded by [`MAX_FRAME`] (METADATA, read by a proven prober only, by
//! [`MAX_METADATA_BYTES`]); the whole handshake runs under a timeout on both
//! sides. The listener serves each connection in a task it owns, and keeps connections that
//! have not proved the cookie from crowding out real probes: the first message must come
//! within [`FIRST_FRAME_TIMEOUT`]; at most [`MAX_CONCURRENT_HANDSHAKES`] handshakes run at
//! once, at most [`MAX_HANDSHAKES_PER_SOURCE`] from one IP address; when either is full, the
//! oldest connection still waiting (one that sent nothing before one that sent its HELLO)
//! is closed to make room for the new one. It survives any client (garbage, slow, silent, a
//! flood of them), counts how each connection ended ([`ListenerStats`], by
//! [`ConnectionOutcome`]), and logs what a client can repeat at will (refusals, evictions) at
//! most once a minute per kind, with whatever the client sent escaped.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! use autocluster::plugin::NodeName;
//! use autocluster::probe::{probe, Identity, PeerListener, ProbeOutcome};
//!
//! let me = Identity::new(NodeName::parse("emqx1@127.0.0.11").unwrap(), "emqxcl", "secret");
//! let listener = PeerListener::bind("127.0.0.11:4370".parse().unwrap(), me.clone()).await?;
//! let _serving = listener.spawn();
//!
//! let peer = NodeName::parse("emqx2@127.0.0.12").unwrap();
//! let outcome = probe(&me, &peer, "127.0.0.12:4370".parse().unwrap(), Duration::from_secs(2)).await;
//! println!("{peer}: {outcome}");
//! # Ok(()) }
//! ```

mod addr;
mod admission;
mod answer;
mod client;
mod listener;
mod proof;
mod stats;
mod wire;

use std::fmt;
use std::time::Duration;

use crate::plugin::log::Escaped;
use crate::plugin::{BackendContext, NodeName};

pub use addr::probe_addr;
pub use client::{probe, probe_with_metadata};
pub use listener::PeerListener;
pub use stats::{ConnectionOutcome, ListenerStats};
pub use wire::{MAX_FRAME, MAX_METADATA_BYTES, VERSION};

/// The peer listener's default port, when `node.listen` does not name one.
pub const DEFAULT_PORT: u16 = 4370;

/// How long the listener gives one client to complete the handshake, unless
/// [`PeerListener::with_handshake_timeout`] says otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client may take to send its first message (its HELLO) after connecting,
/// unless [`PeerListener::with_first_frame_timeout`] says otherwise. A prober sends it at
/// once.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

/// How many handshakes the listener serves at once; a connection beyond that makes the
/// oldest unproven one give way (a flood of idle clients cannot starve the listener of
/// memory, tasks or room for real probes).
pub const MAX_CONCURRENT_HANDSHAKES: usize = 128;

/// How many of those handshakes may come from one IP address; one more makes that
/// address's oldest unproven connection give way.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 8;

/// Who this node is, for the handshake: its name, its cluster, and the cluster's cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// This node's name (`node.name`).
    pub node: NodeName,
    /// The cluster's name (`cluster.name`).
    pub cluster: String,
    /// The shared secret (`node.cookie`); never sent, never printed.
    pub cookie: String,
}

impl Identity {
    /// An identity from its parts.
    pub fn new(node: NodeName, cluster: impl Into<String>, cookie: impl Into<String>) -> Self {
        Identity {
            node,
            cluster: cluster.into(),
            cookie: cookie.into(),
        }
    }

    /// The identity a backend was built for.
    pub fn from_context(ctx: &BackendContext) -> Self {
        Identity::new(ctx.node.clone(), ctx.cluster.clone(), ctx.cookie.clone())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.node)
            .field("cluster", &self.cluster)
            .field("cookie", &"******")
            .finish()
    }
}

/// What a probe found out about a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The node answered as itself, in our cluster, and proved it knows the cookie.
    Running,
    /// Something answered at the address, but as another node.
    WrongNode {
        /// The node name it answered with, as it came (shown escaped).
        answered: String,
    },
    /// The node answered, but belongs to another cluster.
    WrongCluster {
        /// The cluster name it answered with, as it came (shown escaped).
        answered: String,
    },
    /// The node does not share our cookie (either side's proof failed).
    BadCookie,
    /// Nothing answered: connection refused, no route, or no complete answer in time.
    Unreachable(String),
    /// Something answered, but not with this protocol (or with an unsupported version).
    Protocol(String),
}

impl ProbeOutcome {
    /// Whether the candidate is a running member of our cluster.
    pub fn is_running(&self) -> bool {
        matches!(self, ProbeOutcome::Running)
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Running => f.write_str("running"),
            ProbeOutcome::WrongNode { answered } => {
                write!(f, "another node answered: {}", Escaped::new(answered))
            }
            ProbeOutcome::WrongCluster { answered } => {
                let answered = Escaped::new(answered);
                write!(f, "the node belongs to another cluster: {answered}")
            }
            ProbeOutcome::BadCookie => f.write_str("the node does not share our cookie"),
            ProbeOutcome::Unreachable(why) => write!(f, "unreachable: {why}"),
            ProbeOutcome::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_cookie() {
        let me = Identity::new(NodeName::parse("a@h").unwrap(), "c", "s3cr3t-cookie");
        let text = format!("{me:?}");
        assert!(!text.contains("s3cr3t-cookie"), "{text}");
        assert!(text.contains("a@h"), "{text}");
    }
}
