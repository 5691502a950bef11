//! Configuration: EMQX 4.x `.conf` files loaded verbatim, TOML and YAML, and
//! `AUTOCLUSTER_*` environment overrides.
//!
//! A file is read once, by our own readers, into located entries (key, value, file and line);
//! the `config` crate merges the environment over them. Neither the readers nor `config`'s
//! types are part of this API: text comes in through [`Settings::load`] or
//! [`Settings::from_str`] with a [`FileFormat`], and goes out as [`Settings`] or a
//! [`ConfigError`].
//!
//! ```no_run
//! # fn main() -> Result<(), autocluster::ConfigError> {
//! let settings = autocluster::Settings::load("node.conf")?;
//! let etcd = settings.section("cluster.etcd"); // keys relative, defaults filled in
//! println!("{}", settings.render()); // what `autocluster check` prints
//! # Ok(()) }
//! ```
//!
//! Every value keeps its origin (`node.conf:4`, `node.toml:7`, or the environment variable),
//! and every error names it, the key, the value and the expected form:
//!
//! ```text
//! node.conf:4: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h
//! node.conf:3: unknown key cluster.etcd.prefx; did you mean cluster.etcd.prefix?
//! ```
//!
//! Keys under `cluster.` must be known ([`known_keys`]); other keys (an application's own,
//! in an emqx.conf shared with it) are left alone with a warning. The keys, their defaults
//! and the precedence are documented in `docs/configuration.md`.

use std::path::Path;

mod conf_format;
mod error;
mod keys;
mod load;
mod render;
mod resolve;
mod schema;
mod settings;
mod source;
mod suggest;
mod toml_format;
mod tree;
mod validate;
mod yaml_format;

pub use error::ConfigError;
pub use load::{env_key, env_var, ENV_PREFIX};
pub use schema::{known_keys, lookup, DefaultValue, KeySpec, Kind, DISCOVERY};
pub use settings::Settings;

/// The format of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// EMQX 4.x `key = value` lines.
    Conf,
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl FileFormat {
    /// The format by the file's extension: `.toml`, `.yaml`/`.yml`, anything else `.conf`.
    pub fn from_path(path: impl AsRef<Path>) -> FileFormat {
        let ext = path
            .as_ref()
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => FileFormat::Toml,
            Some("yaml" | "yml") => FileFormat::Yaml,
            _ => FileFormat::Conf,
        }
    }
}
