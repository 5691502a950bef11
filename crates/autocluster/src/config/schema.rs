//! Every configuration key autocluster knows: its kind, default, secrecy and meaning.
//!
//! One static table, [`known_keys`], is the single source of truth: the loader validates
//! against it, `autocluster check` renders from it, and a test checks that
//! `docs/configuration.md` documents every entry.

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

const fn spec(key: &'static str, kind: Kind, default: DefaultValue, doc: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind,
        default,
        secret: false,
        no_effect: false,
        alias_of: None,
        doc,
    }
}

const fn secret(mut s: KeySpec) -> KeySpec {
    s.secret = true;
    s
}

const fn ignored(key: &'static str, doc: &'static str) -> KeySpec {
    let mut s = spec(key, Kind::String, DefaultValue::None, doc);
    s.no_effect = true;
    s
}

const fn alias(mut s: KeySpec, of: &'static str) -> KeySpec {
    s.alias_of = Some(of);
    s
}

use DefaultValue::{Derived, Required, RequiredFor, Value};

static KEYS: &[KeySpec] = &[
    // ---- node
    spec(
        "node.name",
        Kind::NodeName,
        Required,
        "This node's name, name@host; the host is a hostname, IPv4 or IPv6 address",
    ),
    secret(spec(
        "node.cookie",
        Kind::String,
        Value("emqxsecretcookie"),
        "The cluster's shared secret (authenticates multicast announcements); never printed",
    )),
    spec(
        "node.admin_listen",
        Kind::SocketAddr,
        Value("127.0.0.1:8070"),
        "Address of the local admin endpoint (status, members, metrics)",
    ),
    spec(
        "node.listen",
        Kind::SocketAddr,
        Derived("the host of node.name, port 4370"),
        "Address of this node's peer listener, probed by static and dns peers",
    ),
    // ---- cluster
    spec(
        "cluster.name",
        Kind::String,
        Value("emqxcl"),
        "The cluster's name, part of every key a backend writes",
    ),
    spec(
        "cluster.discovery",
        Kind::Enum(DISCOVERY),
        Value("manual"),
        "The discovery backend: etcd, static, dns, mcast, or manual (no discovery)",
    ),
    spec(
        "cluster.call_timeout",
        Kind::Duration,
        Value("5s"),
        "Bound on every single backend call",
    ),
    spec(
        "cluster.backoff_min",
        Kind::Duration,
        Value("500ms"),
        "First delay before retrying a failed backend call",
    ),
    spec(
        "cluster.backoff_max",
        Kind::Duration,
        Value("30s"),
        "Largest delay between retries (the delay doubles, with jitter, up to this)",
    ),
    spec(
        "cluster.grace",
        Kind::Duration,
        Derived("the backend's registration TTL"),
        "How long a member that vanished with its backend (an etcd wipe) or from a DNS answer is kept before it is declared left",
    ),
    spec(
        "cluster.probe_interval",
        Kind::Duration,
        Value("5s"),
        "Interval of the liveness probe of static and dns candidates",
    ),
    // ---- etcd
    spec(
        "cluster.etcd.server",
        Kind::UrlList,
        RequiredFor("etcd"),
        "etcd endpoints, comma separated http:// or https:// URLs, tried in turn",
    ),
    spec(
        "cluster.etcd.prefix",
        Kind::String,
        Value("emqxcl"),
        "Key prefix: nodes live under /<prefix>/<cluster.name>/nodes/",
    ),
    spec(
        "cluster.etcd.node_ttl",
        Kind::Duration,
        Value("1m"),
        "TTL of the lease holding this node's key; a crashed node is gone after it",
    ),
    spec(
        "cluster.etcd.api",
        Kind::Enum(&["v3", "v2"]),
        Value("v3"),
        "etcd API: v3 (gRPC), or v2 (HTTP, EMQX 4.x's layout; etcd 3.4 with --enable-v2)",
    ),
    spec(
        "cluster.etcd.ssl.keyfile",
        Kind::Path,
        DefaultValue::None,
        "Client private key (PEM) for TLS to etcd",
    ),
    spec(
        "cluster.etcd.ssl.certfile",
        Kind::Path,
        DefaultValue::None,
        "Client certificate (PEM) for TLS to etcd",
    ),
    spec(
        "cluster.etcd.ssl.cacertfile",
        Kind::Path,
        DefaultValue::None,
        "CA certificate (PEM) that signed etcd's server certificate",
    ),
    spec(
        "cluster.etcd.username",
        Kind::String,
        DefaultValue::None,
        "etcd user name (etcd auth)",
    ),
    secret(spec(
        "cluster.etcd.password",
        Kind::String,
        DefaultValue::None,
        "etcd password; never printed",
    )),
    spec(
        "cluster.etcd.lock_timeout",
        Kind::Duration,
        Value("30s"),
        "Longest wait for the cluster lock",
    ),
    // ---- static
    spec(
        "cluster.static.seeds",
        Kind::NodeNameList,
        RequiredFor("static"),
        "The cluster's nodes, comma separated names (name@host)",
    ),
    // ---- dns
    spec(
        "cluster.dns.name",
        Kind::String,
        RequiredFor("dns"),
        "The DNS name whose records list the cluster's hosts",
    ),
    spec(
        "cluster.dns.app",
        Kind::String,
        Derived("the name part of node.name"),
        "Name part given to discovered hosts (app@host)",
    ),
    spec(
        "cluster.dns.type",
        Kind::Enum(&["a", "aaaa", "srv"]),
        Value("a"),
        "Record type queried: a, aaaa or srv",
    ),
    alias(
        spec(
            "cluster.dns.record_type",
            Kind::Enum(&["a", "aaaa", "srv"]),
            DefaultValue::None,
            "EMQX 5 spelling of cluster.dns.type",
        ),
        "cluster.dns.type",
    ),
    spec(
        "cluster.dns.servers",
        Kind::SocketAddrList,
        Derived("the system resolver"),
        "DNS servers to ask, ip:port, comma separated",
    ),
    spec(
        "cluster.dns.interval",
        Kind::Duration,
        Value("10s"),
        "Interval between DNS queries",
    ),
    // ---- mcast
    spec(
        "cluster.mcast.addr",
        Kind::MulticastGroup,
        Value("239.192.0.1"),
        "Multicast group address",
    ),
    spec(
        "cluster.mcast.ports",
        Kind::PortList,
        Value("4369"),
        "UDP ports announcements are sent to, comma separated",
    ),
    spec(
        "cluster.mcast.iface",
        Kind::Ip,
        Value("0.0.0.0"),
        "Address of the interface that joins the group",
    ),
    spec(
        "cluster.mcast.ttl",
        Kind::Int { min: 0, max: 255 },
        Value("255"),
        "Multicast hop limit (IP TTL)",
    ),
    spec(
        "cluster.mcast.loop",
        Kind::Bool,
        Value("on"),
        "Whether announcements loop back to this host",
    ),
    spec(
        "cluster.mcast.heartbeat",
        Kind::Duration,
        Value("1s"),
        "Interval between announcements",
    ),
    spec(
        "cluster.mcast.member_ttl",
        Kind::Duration,
        Value("5s"),
        "A member not heard from for this long has left",
    ),
    // ---- EMQX keys accepted with no effect
    ignored(
        "cluster.autoheal",
        "EMQX network partition healing; no effect here",
    ),
    ignored(
        "cluster.autoclean",
        "EMQX removal of down nodes; no effect here (crashed nodes leave after their TTL)",
    ),
    ignored(
        "cluster.proto_dist",
        "EMQX Erlang distribution protocol; no effect here",
    ),
    ignored(
        "cluster.mcast.sndbuf",
        "EMQX socket buffer size; no effect here",
    ),
    ignored(
        "cluster.mcast.recbuf",
        "EMQX socket buffer size; no effect here",
    ),
    ignored(
        "cluster.mcast.buffer",
        "EMQX socket buffer size; no effect here",
    ),
    ignored(
        "cluster.k8s.*",
        "EMQX Kubernetes discovery; no effect here (use dns with a headless service)",
    ),
    ignored(
        "cluster.etcd.ssl.*",
        "Other EMQX TLS options (verify, versions, ciphers); no effect here: TLS is always verified",
    ),
];

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
