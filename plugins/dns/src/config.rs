//! `cluster.dns.*`: which name, which record type, which servers, how often.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use autocluster_plugin::{NodeName, Origin, Result, Section};

/// How often the name is queried unless `cluster.dns.interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The record type queried (`cluster.dns.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// IPv4 addresses; each becomes `app@address`.
    A,
    /// IPv6 addresses; each becomes `app@address` (`emqx@fd00::1`).
    Aaaa,
    /// Service records; each target becomes `app@target`, probed at the record's port.
    Srv,
}

impl RecordKind {
    fn parse(s: &str) -> Option<RecordKind> {
        match s.to_ascii_lowercase().as_str() {
            "a" => Some(RecordKind::A),
            "aaaa" => Some(RecordKind::Aaaa),
            "srv" => Some(RecordKind::Srv),
            _ => None,
        }
    }

    /// The type as DNS spells it (`A`, `AAAA`, `SRV`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Srv => "SRV",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated settings of the DNS backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The name queried (`cluster.dns.name`), as written.
    pub name: String,
    /// The name part of every discovered node (`cluster.dns.app`; default: this node's).
    pub app: String,
    /// The record type queried.
    pub kind: RecordKind,
    /// The servers asked (`cluster.dns.servers`); empty means the system's resolver
    /// configuration (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How often the engine polls (`cluster.dns.interval`).
    pub interval: Duration,
}

impl DnsConfig {
    /// Reads and checks the section; `node` is this node, whose name part is the default
    /// `app`. Every error names the key and where its value came from.
    pub fn from_section(section: &Section, node: &NodeName) -> Result<Self> {
        let name = section.required("name")?.trim_end_matches('.').to_string();
        if !is_dns_name(&name) {
            return Err(section.error("name", "expected a DNS name such as emqx.example.com"));
        }
        let app = section.str("app").unwrap_or(node.name()).to_string();
        if NodeName::parse(&format!("{app}@localhost")).is_err() {
            return Err(section.error(
                "app",
                "expected the name part of a node name: letters, digits, '_', '-' and '.'",
            ));
        }
        let servers = section
            .list("servers")
            .iter()
            .map(|s| parse_server(s))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                section.error(
                    "servers",
                    "expected a comma separated list of ip:port, e.g. 10.0.0.2:53, [fd00::53]:53",
                )
            })?;
        let interval = section.duration("interval")?.unwrap_or(DEFAULT_INTERVAL);
        if interval.is_zero() {
            return Err(section.error("interval", "expected a duration above zero"));
        }
        Ok(DnsConfig {
            name,
            app,
            kind: record_kind(section)?,
            servers,
            interval,
        })
    }
}

/// `type`, or its EMQX 5 spelling `record_type`; both set and different is an error.
fn record_kind(section: &Section) -> Result<RecordKind> {
    const EXPECTED: &str = "expected a, aaaa or srv";
    let read = |key: &str| -> Result<Option<RecordKind>> {
        match section.str(key) {
            None => Ok(None),
            Some(s) => RecordKind::parse(s)
                .map(Some)
                .ok_or_else(|| section.error(key, EXPECTED)),
        }
    };
    let (ty, record_type) = (read("type")?, read("record_type")?);
    let ty_is_default = section
        .get("type")
        .is_none_or(|s| s.origin == Origin::Default);
    match (ty, record_type) {
        (Some(t), Some(r)) if t != r && !ty_is_default => Err(section.error(
            "record_type",
            format!(
                "conflicts with {} = {}; set only one of them",
                section.full_key("type"),
                t.as_str().to_ascii_lowercase()
            ),
        )),
        (_, Some(r)) => Ok(r),
        (Some(t), None) => Ok(t),
        (None, None) => Ok(RecordKind::A),
    }
}

/// `ip:port`, `[ipv6]:port`, or a bare IP address (port 53).
fn parse_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use autocluster_plugin::ErrorKind;

    use super::*;

    fn at(line: usize) -> Origin {
        Origin::File {
            path: "node.conf".into(),
            line,
        }
    }

    fn section(pairs: &[(&str, &str)]) -> Section {
        let mut s = Section::new("cluster.dns");
        for (i, (k, v)) in pairs.iter().enumerate() {
            s.set(*k, *v, at(i + 1));
        }
        s
    }

    fn node() -> NodeName {
        NodeName::parse("emqx@127.0.0.11").unwrap()
    }

    #[test]
    fn defaults() {
        let c = DnsConfig::from_section(&section(&[("name", "emqx.test.")]), &node()).unwrap();
        assert_eq!(
            c,
            DnsConfig {
                name: "emqx.test".into(),
                app: "emqx".into(),
                kind: RecordKind::A,
                servers: vec![],
                interval: DEFAULT_INTERVAL,
            }
        );
    }

    #[test]
    fn every_key() {
        let c = DnsConfig::from_section(
            &section(&[
                ("name", "_emqx._tcp.emqx.test"),
                ("app", "broker"),
                ("type", "SRV"),
                ("servers", "127.0.0.1:5353, [::1]:53 10.0.0.2"),
                ("interval", "2s"),
            ]),
            &node(),
        )
        .unwrap();
        assert_eq!(c.app, "broker");
        assert_eq!(c.kind, RecordKind::Srv);
        let servers: Vec<String> = c.servers.iter().map(|s| s.to_string()).collect();
        assert_eq!(servers, ["127.0.0.1:5353", "[::1]:53", "10.0.0.2:53"]);
        assert_eq!(c.interval, Duration::from_secs(2));
    }

    #[test]
    fn record_type_is_the_emqx5_spelling_of_type() {
        let c = DnsConfig::from_section(
            &section(&[("name", "emqx.test"), ("record_type", "aaaa")]),
            &node(),
        )
        .unwrap();
        assert_eq!(c.kind, RecordKind::Aaaa);
        // The loader's default for `type` does not conflict with an explicit `record_type`.
        let mut s = section(&[("name", "emqx.test"), ("record_type", "srv")]);
        s.set("type", "a", Origin::Default);
        assert_eq!(
            DnsConfig::from_section(&s, &node()).unwrap().kind,
            RecordKind::Srv
        );
        // Both written, the same: fine; different: refused.
        let same = section(&[("name", "x.test"), ("type", "srv"), ("record_type", "SRV")]);
        assert!(DnsConfig::from_section(&same, &node()).is_ok());
        let both = section(&[("name", "x.test"), ("type", "a"), ("record_type", "srv")]);
        let e = DnsConfig::from_section(&both, &node()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(
            e.to_string(),
            "node.conf:3: cluster.dns.record_type = srv: conflicts with cluster.dns.type = a; set only one of them"
        );
    }

    #[test]
    fn garbage_is_refused_with_located_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "cluster.dns.name: is required but not set"),
            (
                &[("name", "emqx test")],
                "node.conf:1: cluster.dns.name = emqx test: expected a DNS name",
            ),
            (
                &[("name", "emqx.test"), ("type", "mx")],
                "node.conf:2: cluster.dns.type = mx: expected a, aaaa or srv",
            ),
            (
                &[("name", "emqx.test"), ("app", "em qx")],
                "node.conf:2: cluster.dns.app = em qx: expected the name part",
            ),
            (
                &[
                    ("name", "emqx.test"),
                    ("servers", "127.0.0.1:53,dns.google"),
                ],
                "node.conf:2: cluster.dns.servers = 127.0.0.1:53,dns.google: expected",
            ),
            (
                &[("name", "emqx.test"), ("interval", "10")],
                "node.conf:2: cluster.dns.interval = 10: expected a duration",
            ),
            (
                &[("name", "emqx.test"), ("interval", "0s")],
                "node.conf:2: cluster.dns.interval = 0s: expected a duration above zero",
            ),
        ];
        for (pairs, expected) in cases {
            let e = DnsConfig::from_section(&section(pairs), &node()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(
                e.to_string().starts_with(expected),
                "{e}\nexpected: {expected}"
            );
        }
    }
}
