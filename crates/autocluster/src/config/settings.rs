//! [`Settings`]: a node's resolved configuration, every value with its origin.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autocluster_plugin::{BackendContext, NodeName, Origin, Section, Setting};

use super::error::{ConfigError, Ordered};
use super::load::{self, Loaded};
use super::resolve::resolve;
use super::schema::{self, DefaultValue, COOKIE_BACKENDS};
use super::FileFormat;

/// A node's configuration: the file, environment overrides over it, defaults filled in, all
/// checked against the schema ([`known_keys`](super::known_keys)).
///
/// The common settings are fields; a backend's own keys come as a [`Section`] from
/// [`Settings::section`], each value with its origin so the backend can report errors as
/// precisely as the loader does. `Debug` and [`render`](Settings::render) never show the
/// cookie or a password.
#[derive(Clone)]
pub struct Settings {
    /// `node.name`: this node.
    pub node: NodeName,
    /// `node.cookie`: the cluster's shared secret. Never printed.
    pub cookie: String,
    /// `cluster.name`.
    pub cluster_name: String,
    /// `cluster.discovery`: `etcd`, `static`, `dns`, `mcast` or `manual` (checked; whether
    /// the backend is compiled in is checked when the cluster is built).
    pub discovery: String,
    /// `node.admin_listen`: the local admin endpoint.
    pub admin_listen: SocketAddr,
    /// `node.listen`: the peer listener; `None` means the host of `node.name`, port 4370.
    pub listen: Option<SocketAddr>,
    /// `cluster.call_timeout`: bound on every backend call.
    pub call_timeout: Duration,
    /// `cluster.backoff_min`: first retry delay.
    pub backoff_min: Duration,
    /// `cluster.backoff_max`: largest retry delay.
    pub backoff_max: Duration,
    /// `cluster.grace`: how long a member that vanished with its backend is kept; `None`
    /// means the backend's registration TTL.
    pub grace: Option<Duration>,
    /// `cluster.probe_interval`: liveness probe interval of static and dns candidates.
    pub probe_interval: Duration,
    /// `node.labels.<key>`: the labels this node carries, by key.
    pub labels: BTreeMap<String, String>,
    /// `node.advertise.<name>`: the endpoints this node serves (`host:port`), by name.
    pub endpoints: BTreeMap<String, String>,
    /// Keys that are not ours (an application's, in a shared emqx.conf), left alone, and
    /// other harmless oddities (a key set twice), one located line each.
    pub warnings: Vec<String>,
    /// EMQX keys accepted for compatibility that have no effect here, one located line each.
    pub no_effect: Vec<String>,
    /// The file the settings were loaded from, if any.
    pub source: Option<PathBuf>,
    /// Every known key in effect (set, or defaulted), by full key.
    pub(super) values: BTreeMap<String, Setting>,
}

impl Settings {
    /// Loads `path` (`.toml`, `.yaml`/`.yml`, anything else is EMQX `.conf`), with the
    /// process's `AUTOCLUSTER_*` environment variables over it.
    pub fn load(path: impl AsRef<Path>) -> Result<Settings, ConfigError> {
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str().filter(|k| load::env_key(k).is_some()) else {
                continue;
            };
            match v.into_string() {
                Ok(v) => env.push((k.to_string(), v)),
                Err(_) => {
                    return Err(ConfigError::one(format!(
                        "environment variable {k}: the value is not valid UTF-8"
                    )))
                }
            }
        }
        Self::load_with_env(path, env)
    }

    /// Loads `path` with these environment variables (name, value) over it; variables not
    /// starting with `AUTOCLUSTER_` are ignored.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(format!("{name}: cannot read the configuration file: {e}"))
        })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        let loaded = load::load_text(&text, FileFormat::from_path(path), &name, &env)?;
        let mut s = resolve(loaded, Some(&name))?;
        s.source = Some(path.to_path_buf());
        Ok(s)
    }

    /// Parses `text` in `format`, naming it `name` in origins and errors; no environment.
    pub fn from_str(text: &str, format: FileFormat, name: &str) -> Result<Settings, ConfigError> {
        let loaded = load::load_text(text, format, name, &[])?;
        resolve(loaded, Some(name))
    }

    /// Settings given by a program, `(key, value)` pairs, as a file would write them; their
    /// origin is [`Origin::Program`].
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Settings, ConfigError> {
        let values = pairs
            .into_iter()
            .map(|(k, v)| {
                (
                    k.as_ref().trim().to_string(),
                    Setting {
                        raw: v.as_ref().trim().to_string(),
                        origin: Origin::Program,
                        secret: false,
                    },
                )
            })
            .collect();
        let loaded = Loaded {
            values,
            problems: Ordered::default(),
            warnings: Ordered::default(),
        };
        resolve(loaded, None)
    }

    /// The settings under `prefix` (`cluster.etcd`), keys relative to it (`node_ttl`,
    /// `ssl.cacertfile`), defaults filled in, secrets marked.
    pub fn section(&self, prefix: &str) -> Section {
        let mut section = Section::new(prefix);
        let dotted = format!("{prefix}.");
        for (key, setting) in &self.values {
            if let Some(rest) = key.strip_prefix(&dotted) {
                section.insert(rest, setting.clone());
            }
        }
        section
    }

    /// What a backend is built from: this node, the cluster, the cookie, the section
    /// `cluster.<discovery>` and `cluster.call_timeout`.
    pub fn backend_context(&self) -> BackendContext {
        let section = self.section(&format!("cluster.{}", self.discovery));
        BackendContext::new(self.node.clone(), self.cluster_name.clone(), section)
            .with_cookie(self.cookie.clone())
            .with_call_timeout(self.call_timeout)
    }

    /// Whether `node.cookie` is the well-known default (`emqxsecretcookie`, published with
    /// EMQX): unset, or set to it. Anyone can know it, so it authenticates no one.
    pub fn cookie_is_default(&self) -> bool {
        matches!(
            schema::lookup("node.cookie").map(|s| s.default),
            Some(DefaultValue::Value(default)) if default == self.cookie
        )
    }

    /// A warning when `cluster.discovery` names a backend that authenticates peers with the
    /// cookie (the probe of `static` and `dns`, `mcast` announcements) and the cookie is the
    /// default one ([`cookie_is_default`](Self::cookie_is_default)); `None` otherwise. Never
    /// shows the cookie.
    pub fn cookie_warning(&self) -> Option<String> {
        if !self.cookie_is_default() || !COOKIE_BACKENDS.contains(&self.discovery.as_str()) {
            return None;
        }
        let what = match self.values.get("node.cookie").map(|s| &s.origin) {
            None | Some(Origin::Default) => "node.cookie is not set, so it is".to_string(),
            Some(o @ Origin::Program) => format!("node.cookie ({o}) is"),
            Some(o) => format!("{o}: node.cookie is"),
        };
        Some(format!(
            "{what} the public default, and cluster.discovery = {} authenticates peers with it: \
             anyone who can reach this node can pass for a member; set node.cookie to a secret \
             shared by every node of the cluster",
            self.discovery
        ))
    }

    /// The setting for a full key (`cluster.etcd.node_ttl`), set or defaulted.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.values.get(key)
    }

    /// Every known key in effect, by full key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Setting)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("node", &self.node)
            .field("cookie", &"******")
            .field("cluster_name", &self.cluster_name)
            .field("discovery", &self.discovery)
            .field("source", &self.source)
            .field("values", &self.values)
            .field("warnings", &self.warnings)
            .field("no_effect", &self.no_effect)
            .finish_non_exhaustive()
    }
}
