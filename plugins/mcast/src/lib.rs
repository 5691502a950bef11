//! The `mcast` discovery backend of autocluster: nodes announce themselves to a UDP multicast
//! group in authenticated packets, and learn about each other from what they hear.
//!
//! - `register` sends an announce; every node that hears it answers at once (rate limited),
//!   so a group converges in a round trip, not at the next heartbeat.
//! - `keep_alive` sends a heartbeat; `deregister` sends a leave (twice).
//! - `observe` passes on a `Change::Put` with the sender's TTL for every accepted announce,
//!   reply or heartbeat, and a `Change::Delete` of that incarnation for every accepted leave;
//!   the engine's member table applies them and expires members that stop sending. The
//!   backend keeps no member table of its own: only what replay protection needs, and which
//!   incarnation of each node it passes on (`peers.rs` has the rules, restarts and name
//!   clashes included).
//! - Another live process under this node's name makes `keep_alive` fail with a retryable
//!   `Conflict` error (after its heartbeat went out), so the node is not ready until it is
//!   over.
//! - Every packet carries an HMAC-SHA256 tag keyed from `node.cookie`, a per-process
//!   incarnation and a sequence number: packets of another cookie or cluster, altered,
//!   replayed or malformed ones are dropped and counted ([`McastDiscovery::drops`]).
//!
//! The wire format is documented in [`packet`]; the settings in [`McastConfig`].
#![deny(missing_docs)]

mod backend;
mod config;
mod core;
mod listen;
mod observe;
pub mod packet;
mod peers;
mod receiver;
mod socket;
mod stats;

pub use backend::{build, McastDiscovery};
pub use config::McastConfig;
pub use packet::{decode, encode, seal, DecodeError, Key, Kind, Packet, MAX_DATAGRAM};
pub use peers::MAX_CLOCK_SKEW;
pub use stats::DropCounts;

/// The name `cluster.discovery` uses for this backend.
pub const NAME: &str = "mcast";
