//! The `dns` discovery backend of autocluster: the hosts a DNS name resolves to are the
//! cluster's candidates.
//!
//! `cluster.dns.name` is queried for `cluster.dns.type` records every `cluster.dns.interval`:
//! - `a` / `aaaa`: every address becomes a node `app@address` (`emqx@10.0.0.5`,
//!   `emqx@fd00::5`);
//! - `srv`: every target becomes `app@target` (`emqx@n1.emqx.example.com`), and the record's
//!   port goes into the member's `meta.addrs` at the target's address (`10.0.0.5:4370`: from
//!   the answer, or asked from the same servers; `n1.emqx.example.com:4370` only when they
//!   know no address for it): that is where the engine probes the candidate.
//!
//! `app` defaults to the name part of this node's name. Nothing is cached between polls. A
//! lookup that fails (timeout, SERVFAIL, REFUSED, network error) is an error of a retryable
//! kind, so the engine keeps the last candidates and marks the view stale; NXDOMAIN or an
//! empty answer is an empty snapshot. Every outcome is logged with the name, the type and
//! the servers asked.
#![deny(missing_docs)]

mod backend;
mod config;
mod error;
mod resolver;

use std::sync::Arc;

use autocluster_plugin::{BackendContext, Discovery, Result};

pub use backend::DnsDiscovery;
pub use config::{DnsConfig, RecordKind, DEFAULT_INTERVAL};

/// The name `cluster.discovery` uses for this backend.
pub const NAME: &str = "dns";

/// Builds the backend from `cluster.dns.*`: validates the settings and reads the system
/// resolver configuration when `cluster.dns.servers` is not set; no network I/O.
pub fn build(ctx: &BackendContext) -> Result<Arc<dyn Discovery>> {
    let config = DnsConfig::from_section(&ctx.section, &ctx.node)?;
    Ok(Arc::new(DnsDiscovery::new(config)?))
}
