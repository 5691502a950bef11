//! The table of every key autocluster knows ([`KEYS`]), in documentation order; the types
//! and the lookups are in [`schema`](super::schema).

use super::schema::{DefaultValue, KeySpec, Kind, DISCOVERY};

const fn spec(key: &'static str, kind: Kind, default: DefaultValue, doc: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind,
        default,
        secret: false,
        no_effect: false,
        alias_of: None,
        not_empty: None,
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

const fn not_empty(mut s: KeySpec, form: &'static str) -> KeySpec {
    s.not_empty = Some(form);
    s
}

use DefaultValue::{Derived, Required, RequiredFor, Value};

/// Every key, in documentation order.
pub(super) static KEYS: &[KeySpec] = &[
    // ---- node
    spec(
        "node.name",
        Kind::NodeName,
        Required,
        "This node's name, name@host; the host is a hostname, IPv4 or IPv6 address",
    ),
    not_empty(
        secret(spec(
            "node.cookie",
            Kind::String,
            Value("emqxsecretcookie"),
            "The cluster's shared secret (authenticates probes and multicast announcements); never printed",
        )),
        "a secret shared by every node of the cluster",
    ),
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
    spec(
        "node.labels.*",
        Kind::Label,
        DefaultValue::None,
        "A label this node carries, node.labels.<key> = <value> (node.labels.zone = eu-1), seen by every peer",
    ),
    spec(
        "node.advertise.*",
        Kind::Endpoint,
        DefaultValue::None,
        "A named endpoint this node serves, node.advertise.<name> = <host:port> (node.advertise.mqtt = 10.0.0.5:1883), seen by every peer",
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
    // ---- formation (docs/formation.md)
    spec(
        "cluster.formation.min_members",
        Kind::Int { min: 1, max: 10_000 },
        Value("1"),
        "Formation: how many nodes (this one included) must be seen before a node seeds or joins",
    ),
    spec(
        "cluster.formation.stable_for",
        Kind::Duration,
        Value("5s"),
        "Formation: how long the set of nodes seen must stay unchanged before the decision",
    ),
    spec(
        "cluster.formation.timeout",
        Kind::Duration,
        Value("5m"),
        "Formation: how long to wait for min_members and a stable set before failing with an error",
    ),
    spec(
        "cluster.formation.new_cluster",
        Kind::Bool,
        Value("on"),
        "Formation: whether this node may seed a new cluster; off: only join one already formed",
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
    spec(
        "cluster.etcd.watch_coalesce",
        Kind::Duration,
        Value("1s"),
        "Changes closer together than this are read in batches from etcd's history (0s: each as it comes)",
    ),
    spec(
        "cluster.etcd.watch_coalesce_members",
        Kind::Int { min: 0, max: 1_000_000 },
        Value("200"),
        "Bursts are read in batches only while the cluster has at least this many nodes",
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
