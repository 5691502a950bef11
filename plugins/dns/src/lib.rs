//! The `dns` discovery backend of autocluster (work in progress).
#![deny(missing_docs)]

/// The name `cluster.discovery` uses for this backend.
pub const NAME: &str = "dns";
