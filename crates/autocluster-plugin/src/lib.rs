//! The contract between autocluster's engine and its discovery backends.
//!
//! A backend (etcd, static seeds, DNS, multicast, or your own) implements [`Discovery`]: a
//! handful of primitives (register, keep alive, deregister, snapshot, watch, lock). Everything
//! stateful (retries, backoff, diffing, expiry, fan-out) lives once, in the engine of the
//! `autocluster` crate; a backend that re-implements one of those is a bug.
//!
//! This crate is small on purpose: plugins depend on it alone, so there is no cycle between
//! the core crate and the plugins it dispatches to.
#![deny(missing_docs)]

mod backend;
mod error;
pub mod log;
mod member;
mod node;
mod record;
mod settings;

pub use async_trait::async_trait;
pub use backend::{
    BackendContext, Capabilities, Discovery, Lease, LockToken, Registration, Registrations,
    ViewMode, DEFAULT_MAX_METADATA_BYTES,
};
pub use error::{Context, Error, ErrorKind, Result};
pub use member::{Change, Incarnation, Member, Metadata, Revision, Snapshot, WatchBatch};
pub use node::NodeName;
pub use record::Record;
pub use settings::{
    parse_bool, parse_duration, parse_list, Origin, Section, Setting, MAX_DURATION,
};

/// A boxed, sendable stream, as returned by [`Discovery::watch`].
pub type BoxStream<T> = futures::stream::BoxStream<'static, T>;
