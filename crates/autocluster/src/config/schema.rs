//! Every configuration key autocluster knows: its kind, default, secrecy and meaning.
//!
//! One static table, [`known_keys`], is the single source of truth: the loader validates
//! against it, `autocluster check` renders from it, and a test checks that
//! `docs/configuration.md` documents every entry.

use super::keys::KEYS;

/// What form a key's value takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    String,
    /// A duration: `500ms`, `30s`, `1m`, `2h`.
    Duration,
    /// `on`/`off` (also `true`/`false`).
    Bool,
    /// An integer within bounds (inclusive).
    Int {
        /// The smallest value accepted.
        min: i64,
        /// The largest value accepted.
        max: i64,
    },
    /// A node name, `name@host`.
    NodeName,
    /// A comma or space separated list of node names.
    NodeNameList,
    /// An IP address and port, `127.0.0.1:8070`.
    SocketAddr,
    /// A comma or space separated list of `ip:port`.
    SocketAddrList,
    /// A comma separated list of `http://` or `https://` URLs.
    UrlList,
    /// A file path.
    Path,
    /// An IP address.
    Ip,
    /// A multicast group address, `239.192.0.1`.
    MulticastGroup,
    /// A comma or space separated list of UDP/TCP ports.
    PortList,
    /// One of a fixed set of words (matched case-insensitively, stored lower-case).
    Enum(&'static [&'static str]),
    /// A label's value: text without control characters, at most 256 bytes.
    Label,
    /// A named endpoint: `host:port`.
    Endpoint,
}

impl Kind {
    /// A short name of the kind, as the documentation's tables show it.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Duration => "duration",
            Kind::Bool => "bool",
            Kind::Int { .. } => "int",
            Kind::NodeName => "node name",
            Kind::NodeNameList => "node name list",
            Kind::SocketAddr => "socket address",
            Kind::SocketAddrList => "socket address list",
            Kind::UrlList => "url list",
            Kind::Path => "path",
            Kind::Ip => "ip address",
            Kind::MulticastGroup => "multicast address",
            Kind::PortList => "port list",
            Kind::Enum(_) => "enum",
            Kind::Label => "label",
            Kind::Endpoint => "host:port",
        }
    }
}

/// A key's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, as it would be written in the file.
    Value(&'static str),
    /// The key must always be set.
    Required,
    /// The key must be set when `cluster.discovery` is this backend.
    RequiredFor(&'static str),
    /// Derived from other settings when unset; the text says how (shown by `check`).
    Derived(&'static str),
    /// Optional, no default.
    None,
}

/// One known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The full key, `cluster.etcd.node_ttl`; a trailing `.*` matches every key under it.
    pub key: &'static str,
    /// The form of its value.
    pub kind: Kind,
    /// Its default.
    pub default: DefaultValue,
    /// Whether the value is a secret, never printed.
    pub secret: bool,
    /// An EMQX key accepted for compatibility that has no effect here.
    pub no_effect: bool,
    /// An alias: the key this one is another spelling of.
    pub alias_of: Option<&'static str>,
    /// For a key whose empty value is an error rather than unset (the cookie: an empty one
    /// would silently be the public default), the form expected.
    pub not_empty: Option<&'static str>,
    /// A one-line description.
    pub doc: &'static str,
}

impl KeySpec {
    /// Whether `key` is this entry (or, for a `prefix.*` entry, under it).
    pub fn matches(&self, key: &str) -> bool {
        match self.key.strip_suffix(".*") {
            Some(prefix) => key
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
            None => self.key == key,
        }
    }

    /// Whether this entry is a `prefix.*` pattern.
    pub fn is_pattern(&self) -> bool {
        self.key.ends_with(".*")
    }
}

/// The discovery backends `cluster.discovery` names.
pub const DISCOVERY: &[&str] = &["etcd", "static", "dns", "mcast", "manual"];

/// The backends that authenticate peers with `node.cookie`: the probe of `static` and `dns`
/// candidates, and `mcast` announcements.
pub(crate) const COOKIE_BACKENDS: &[&str] = &["static", "dns", "mcast"];

/// Every key autocluster knows, in documentation order.
pub fn known_keys() -> &'static [KeySpec] {
    KEYS
}

/// The entry for `key`: an exact key first, then a `prefix.*` pattern.
pub fn lookup(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|s| !s.is_pattern() && s.key == key)
        .or_else(|| KEYS.iter().find(|s| s.is_pattern() && s.matches(key)))
}

/// Whether `key` is in a section autocluster owns (`cluster`, `cluster.*`): unknown keys there
/// are errors. Keys elsewhere belong to the application and are only warned about.
pub fn is_owned(key: &str) -> bool {
    key == "cluster" || key.starts_with("cluster.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_exact_then_pattern() {
        assert_eq!(
            lookup("cluster.etcd.ssl.keyfile").map(|s| s.no_effect),
            Some(false)
        );
        assert_eq!(
            lookup("cluster.etcd.ssl.verify").map(|s| s.no_effect),
            Some(true)
        );
        assert_eq!(
            lookup("cluster.k8s.apiserver").map(|s| s.key),
            Some("cluster.k8s.*")
        );
        assert!(lookup("cluster.k8s").is_none());
        assert!(lookup("cluster.etcd.prefx").is_none());
    }

    #[test]
    fn keys_are_unique_and_defaults_parse() {
        let mut seen = std::collections::HashSet::new();
        for s in known_keys() {
            assert!(seen.insert(s.key), "duplicate {}", s.key);
            if let DefaultValue::Value(v) = s.default {
                assert!(
                    crate::config::validate::check(s, v).is_ok(),
                    "default of {} does not validate",
                    s.key
                );
            }
        }
    }
}
