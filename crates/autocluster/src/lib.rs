//! # autocluster
//!
//! Nodes of a distributed service find each other and keep a live, correct membership view,
//! through etcd, static seeds, DNS or UDP multicast, chosen by one configuration line
//! (`cluster.discovery = etcd`), in the configuration format of EMQX 4.x.
//!
//! ```no_run
//! # async fn demo() -> Result<(), autocluster::plugin::Error> {
//! let cluster = autocluster::Cluster::from_file("node.conf").await?;
//! cluster.ready(std::time::Duration::from_secs(10)).await;
//! for entry in cluster.view().members() {
//!     println!("{} {:?}", entry.member.node, entry.status);
//! }
//! # Ok(()) }
//! ```
//!
//! The crates: `autocluster-plugin` (the contract every backend implements), this crate (the
//! configuration, the dispatch of `cluster.discovery`, the engine, [`Cluster`]), one crate per
//! backend under `plugins/`, enabled by this crate's cargo features `etcd` (default),
//! `static`, `dns` and `mcast`. The feature `tower` adds the module `tower` (the live
//! members as a `tower::discover::Discover`), `tonic` its feeder of a tonic balance channel;
//! [`metrics`] registers the engine's series in a `prometheus-client` registry.
#![deny(missing_docs)]

#[cfg(feature = "bench-support")]
#[doc(hidden)]
pub mod bench_support;
mod builder;
mod changes;
mod cluster;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod formation;
pub mod metadata;
pub mod metrics;
pub mod probe;
mod report;
#[cfg(feature = "tower")]
pub mod tower;
mod view;

pub use autocluster_plugin as plugin;
pub use autocluster_plugin::{Error, ErrorKind, Member, Metadata, NodeName};
pub use builder::ClusterBuilder;
pub use changes::ViewChange;
pub use cluster::{Cluster, ClusterLock};
pub use config::{ConfigError, Settings};
pub use engine::EngineConfig;
pub use formation::{ForeignMember, Formation, FormationConfig, Role};
pub use prometheus_client;
pub use report::StatusReport;
pub use view::{Event, EventKind, Health, LeftReason, MemberEntry, Status, View};
