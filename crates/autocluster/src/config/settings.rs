//! [`Settings`]: a node's resolved configuration, every value with its origin.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autocluster_plugin::{parse_duration, BackendContext, NodeName, Origin, Section, Setting};

use super::error::{ConfigError, Ordered};
use super::load::{self, Loaded};
use super::schema::{self, known_keys, DefaultValue, COOKIE_BACKENDS};
use super::{suggest, validate, FileFormat};

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

    /// What a backend is built from: this node, the cluster, the cookie and the section
    /// `cluster.<discovery>`.
    pub fn backend_context(&self) -> BackendContext {
        BackendContext {
            node: self.node.clone(),
            cluster: self.cluster_name.clone(),
            cookie: self.cookie.clone(),
            section: self.section(&format!("cluster.{}", self.discovery)),
        }
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

/// A located message about `key`, in the plugin crate's form:
/// `node.conf:4: cluster.etcd.node_ttl = 1x: expected ...` (secret values not shown).
fn located(key: &str, s: &Setting, why: &str) -> String {
    let mut section = Section::new("");
    section.insert(key, s.clone());
    section.error(key, why).message().to_string()
}

fn unknown_key(key: &str, s: &Setting) -> String {
    let hint = match suggest::nearest(key, 3) {
        Some(near) => format!("; did you mean {near}?"),
        None => match suggest::section_keys(key) {
            (section, keys) if !keys.is_empty() => {
                format!("; the {section} keys are {}", keys.join(", "))
            }
            _ => "; see docs/configuration.md for the keys".to_string(),
        },
    };
    format!("{}: unknown key {key}{hint}", s.origin)
}

fn foreign_key(key: &str, s: &Setting) -> String {
    let hint = suggest::nearest(key, 2)
        .map(|near| format!("; did you mean {near}?"))
        .unwrap_or_default();
    format!(
        "{}: {key} is not an autocluster key, left to the application{hint}",
        s.origin
    )
}

fn is_set(values: &BTreeMap<String, Setting>, key: &str) -> bool {
    values.get(key).is_some_and(|s| !s.raw.is_empty())
}

/// Checks every key against the schema, applies aliases and defaults, checks what is
/// required, and builds the typed fields.
fn resolve(loaded: Loaded, name: Option<&str>) -> Result<Settings, ConfigError> {
    let Loaded {
        values: all,
        mut problems,
        mut warnings,
    } = loaded;
    let mut values = BTreeMap::new();
    let mut no_effect = Ordered::default();
    for (key, mut s) in all {
        match schema::lookup(&key) {
            Some(spec) if spec.no_effect => {
                let text = format!(
                    "{}: {key} = {}: accepted for EMQX compatibility, no effect here",
                    s.origin, s.raw
                );
                no_effect.push(&s.origin, text);
            }
            Some(spec) => {
                s.secret = spec.secret;
                match validate::check(spec, &s.raw) {
                    Ok(v) => s.raw = v,
                    Err(why) => problems.push(&s.origin, located(&key, &s, &why)),
                }
                values.insert(key, s);
            }
            None if schema::is_owned(&key) => problems.push(&s.origin, unknown_key(&key, &s)),
            None => warnings.push(&s.origin, foreign_key(&key, &s)),
        }
    }

    // cluster.dns.record_type (EMQX 5) is another spelling of cluster.dns.type.
    if let Some(rt) = values.get("cluster.dns.record_type").cloned() {
        match values.get("cluster.dns.type") {
            Some(t) if !t.raw.is_empty() && !rt.raw.is_empty() && t.raw != rt.raw => {
                let why = format!(
                    "conflicts with cluster.dns.type = {} ({}); set only one of them",
                    t.raw, t.origin
                );
                problems.push(&rt.origin, located("cluster.dns.record_type", &rt, &why));
            }
            Some(t) if !t.raw.is_empty() => {}
            _ => {
                values.insert("cluster.dns.type".into(), rt);
            }
        }
    }

    for spec in known_keys() {
        if spec.is_pattern() || spec.no_effect || is_set(&values, spec.key) {
            continue;
        }
        if let DefaultValue::Value(v) = spec.default {
            let s = Setting {
                raw: v.to_string(),
                origin: Origin::Default,
                secret: spec.secret,
            };
            values.insert(spec.key.to_string(), s);
        }
    }
    let node = values
        .get("node.name")
        .and_then(|s| NodeName::parse(&s.raw).ok());
    if let (Some(node), false) = (&node, is_set(&values, "cluster.dns.app")) {
        let s = Setting {
            raw: node.name().to_string(),
            origin: Origin::Default,
            secret: false,
        };
        values.insert("cluster.dns.app".into(), s);
    }

    if !is_set(&values, "node.name") {
        let at = name.map(|n| format!("{n}: ")).unwrap_or_default();
        problems.push_unlocated(format!(
            "{at}node.name is required: this node's name, name@host, e.g. emqx1@192.168.1.162"
        ));
    }
    if let Some(d) = values.get("cluster.discovery") {
        for spec in known_keys() {
            let needed = matches!(spec.default, DefaultValue::RequiredFor(b) if b == d.raw);
            if needed && !is_set(&values, spec.key) {
                let at = match &d.origin {
                    Origin::Default | Origin::Program => String::new(),
                    o => format!("{o}: "),
                };
                problems.push(
                    &d.origin,
                    format!(
                        "{at}{} is required when cluster.discovery = {}",
                        spec.key, d.raw
                    ),
                );
            }
        }
    }
    let dur = |k: &str| values.get(k).and_then(|s| parse_duration(&s.raw).ok());
    if let (Some(min), Some(max)) = (dur("cluster.backoff_min"), dur("cluster.backoff_max")) {
        if min > max {
            if let Some(s) = values.get("cluster.backoff_min") {
                let why = format!("must not exceed cluster.backoff_max ({})", humanize(max));
                problems.push(&s.origin, located("cluster.backoff_min", s, &why));
            }
        }
    }
    problems.check()?;

    let text = |k: &str| values.get(k).map(|s| s.raw.clone()).unwrap_or_default();
    let need_dur = |k: &str| dur(k).ok_or_else(|| ConfigError::one(format!("{k} is not set")));
    let addr = |k: &str| values.get(k).and_then(|s| s.raw.parse::<SocketAddr>().ok());
    Ok(Settings {
        node: node.ok_or_else(|| ConfigError::one("node.name is not set"))?,
        cookie: text("node.cookie"),
        cluster_name: text("cluster.name"),
        discovery: text("cluster.discovery"),
        admin_listen: addr("node.admin_listen")
            .ok_or_else(|| ConfigError::one("node.admin_listen is not set"))?,
        listen: addr("node.listen"),
        call_timeout: need_dur("cluster.call_timeout")?,
        backoff_min: need_dur("cluster.backoff_min")?,
        backoff_max: need_dur("cluster.backoff_max")?,
        grace: dur("cluster.grace"),
        probe_interval: need_dur("cluster.probe_interval")?,
        warnings: warnings.into_sorted(),
        no_effect: no_effect.into_sorted(),
        source: None,
        values,
    })
}

/// A duration as a config file would write it (`1m30s`, `500ms`).
pub(crate) fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized_durations_parse_back() {
        for ms in [0, 1, 500, 1000, 1500, 60_000, 90_000, 3_600_000, 86_400_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&humanize(d)).unwrap_or_default(), d, "{ms}");
        }
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
    }
}
