//! autocluster (work in progress).
pub use autocluster_plugin as plugin;
