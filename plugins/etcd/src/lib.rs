//! The `etcd` discovery backend of autocluster.
//!
//! Each node keeps a key `/<prefix>/<cluster>/nodes/<node>` (JSON metadata as the value) on a
//! lease of `node_ttl`, kept alive on one long-lived keep-alive stream; peers read the
//! prefix once and then follow it with one watch. A clean shutdown revokes the lease, so the
//! key goes at once; a crashed node's key goes when its lease runs out. The cluster lock
//! is etcd's Lock API on the node's lease.
//!
//! With several endpoints, a call goes to the one that answered last and moves on to the next
//! within the same call when that one fails or does not answer within its share of the call
//! time (both APIs share this failover).
//!
//! `api = v2` speaks the HTTP v2 API instead, with EMQX 4.x's key layout, for etcd 3.4/3.5
//! started with `--enable-v2`.
//!
//! ```no_run
//! use autocluster_plugin::{BackendContext, NodeName, Origin, Section};
//! let mut section = Section::new("cluster.etcd");
//! section.set("server", "http://127.0.0.1:2379", Origin::Program);
//! let node = NodeName::parse("emqx1@192.168.1.162").unwrap();
//! let ctx = BackendContext::new(node, "emqxcl", section);
//! let backend = autocluster_etcd::build(&ctx).unwrap(); // no I/O: connects on first use
//! ```
#![deny(missing_docs)]

use std::sync::Arc;

use autocluster_plugin::{BackendContext, Discovery, Result};

mod clash;
mod config;
mod error;
mod failover;
mod keys;
mod record;
mod timeouts;
mod v2;
mod v3;
pub use config::{Api, EtcdConfig, Timeouts, TlsConfig, DEFAULTS, KEYS};
pub use keys::{Layout, MAX_VALUE};
pub use v2::EtcdV2Backend;
pub use v3::EtcdBackend;

/// The name `cluster.discovery` uses for this backend.
pub const NAME: &str = "etcd";

/// Builds the backend from `cluster.etcd.*`; checks every setting (TLS files are read and
/// parsed here) but does no network I/O.
pub fn build(ctx: &BackendContext) -> Result<Arc<dyn Discovery>> {
    let mut cfg = EtcdConfig::from_section(&ctx.section)?;
    cfg.call_timeout = ctx.call_timeout;
    Ok(match cfg.api {
        Api::V3 => Arc::new(EtcdBackend::new(cfg, &ctx.cluster).for_node(ctx.node.clone())),
        Api::V2 => Arc::new(EtcdV2Backend::new(cfg, &ctx.cluster, ctx.node.clone())?),
    })
}
