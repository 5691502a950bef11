//! The `static` discovery backend of autocluster: a fixed list of seed nodes.
//!
//! `cluster.static.seeds` names the nodes (`emqx1@192.168.1.10, emqx2@192.168.1.11`); every
//! snapshot returns all of them. The seeds are *candidates*: whether each one runs is decided
//! by the engine, which probes every candidate (see `autocluster::probe`). There is nothing
//! to register: a node joins by being listed in its peers' seed lists.
//!
//! ```
//! use autocluster_plugin::{BackendContext, NodeName, Origin, Section};
//!
//! let mut section = Section::new("cluster.static");
//! section.set("seeds", "emqx1@127.0.0.11, emqx2@127.0.0.12", Origin::Program);
//! let node = NodeName::parse("emqx1@127.0.0.11").unwrap();
//! let ctx = BackendContext::new(node, "emqxcl", section).with_cookie("secret");
//! let backend = autocluster_static::build(&ctx).unwrap();
//! assert_eq!(backend.name(), "static");
//! ```
#![deny(missing_docs)]

mod backend;
mod config;

use std::sync::Arc;

use autocluster_plugin::{BackendContext, Discovery, Result};

pub use backend::StaticDiscovery;
pub use config::{StaticConfig, DEFAULT_INTERVAL};

/// The name `cluster.discovery` uses for this backend.
pub const NAME: &str = "static";

/// Builds the backend from `cluster.static.*`: validates the seeds, without any I/O.
pub fn build(ctx: &BackendContext) -> Result<Arc<dyn Discovery>> {
    let config = StaticConfig::from_section(&ctx.section)?;
    Ok(Arc::new(StaticDiscovery::new(config)))
}
