//! Checks one value against its key's [`Kind`], with the forms the plugin crate's parsers use,
//! so the loader and the backends describe a bad value the same way.

use std::net::{IpAddr, SocketAddr};

use autocluster_plugin::{parse_bool, parse_duration, parse_list, NodeName};

use super::schema::{KeySpec, Kind};

/// Checks `raw` for `spec`; returns the value as stored (enums lower-cased) or what was
/// expected. An empty value counts as unset and is not checked, unless the key refuses it.
pub fn check(spec: &KeySpec, raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return match spec.not_empty {
            Some(form) => Err(format!("empty; expected {form}")),
            None => Ok(String::new()),
        };
    }
    match spec.kind {
        Kind::String | Kind::Path => {}
        Kind::Duration => {
            parse_duration(raw)?;
        }
        Kind::Bool => {
            parse_bool(raw)?;
        }
        Kind::Int { min, max } => match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => {}
            _ => return Err(format!("expected an integer from {min} to {max}")),
        },
        Kind::NodeName => {
            NodeName::parse(raw).map_err(|e| e.message().to_string())?;
        }
        Kind::NodeNameList => {
            for item in parse_list(raw) {
                NodeName::parse(&item).map_err(|e| e.message().to_string())?;
            }
        }
        Kind::SocketAddr => {
            raw.parse::<SocketAddr>()
                .map_err(|_| "expected an IP address and port such as 127.0.0.1:8070")?;
        }
        Kind::SocketAddrList => {
            for item in parse_list(raw) {
                item.parse::<SocketAddr>().map_err(|_| {
                    format!(
                        "{item:?} is not ip:port; expected a list of IP addresses and ports such as 127.0.0.1:53, 10.0.0.2:53"
                    )
                })?;
            }
        }
        Kind::UrlList => {
            let items = parse_list(raw);
            if items.is_empty() {
                return Err(URLS.into());
            }
            for item in items {
                check_url(&item).map_err(|why| format!("{item:?} {why}; {URLS}"))?;
            }
        }
        Kind::Ip => {
            raw.parse::<IpAddr>()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 192.168.1.10")?;
        }
        Kind::MulticastGroup => match raw.parse::<IpAddr>() {
            Ok(ip) if ip.is_multicast() => {}
            _ => return Err("expected a multicast group address such as 239.192.0.1".into()),
        },
        Kind::PortList => {
            let items = parse_list(raw);
            if items.is_empty() || items.iter().any(|p| !matches!(p.parse::<u16>(), Ok(1..))) {
                return Err("expected a list of ports from 1 to 65535 such as 4369, 4370".into());
            }
        }
        Kind::Label => crate::metadata::check_label_value(raw)?,
        Kind::Endpoint => crate::metadata::check_endpoint(raw)?,
        Kind::Enum(values) => {
            let lower = raw.to_ascii_lowercase();
            if !values.contains(&lower.as_str()) {
                return Err(format!("expected one of {}", values.join(", ")));
            }
            return Ok(lower);
        }
    }
    Ok(raw.to_string())
}

/// For a key under a `prefix.*` entry that names something of the user's (a label key, an
/// endpoint name), checks the name; `Err` says what was expected.
pub fn check_key(spec: &KeySpec, key: &str) -> Result<(), String> {
    if !matches!(spec.kind, Kind::Label | Kind::Endpoint) {
        return Ok(());
    }
    let prefix = spec.key.strip_suffix('*').unwrap_or(spec.key);
    let name = key.strip_prefix(prefix).unwrap_or(key);
    crate::metadata::check_name(name).map_err(|why| {
        let what = if spec.kind == Kind::Label {
            "label key"
        } else {
            "endpoint name"
        };
        format!("the {what} {name:?}: {why}")
    })
}

const URLS: &str =
    "expected a comma separated list of http:// or https:// URLs such as http://127.0.0.1:2379";

fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("does not start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host");
    }
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let port = if let Some(v6) = host_port.strip_prefix('[') {
        let (_, after) = v6.split_once(']').ok_or("has an unclosed '['")?;
        after.strip_prefix(':')
    } else {
        host_port.split_once(':').map(|(_, p)| p)
    };
    match port {
        Some(p) if p.parse::<u16>().is_err() => Err("has a bad port"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::lookup;
    use super::*;

    fn c(key: &str, raw: &str) -> Result<String, String> {
        check(lookup(key).unwrap(), raw)
    }

    #[test]
    fn kinds() {
        assert!(c("cluster.etcd.node_ttl", "1m").is_ok());
        assert!(c("cluster.etcd.node_ttl", "1x").is_err());
        assert!(c("cluster.mcast.ttl", "255").is_ok());
        assert!(c("cluster.mcast.ttl", "256").is_err());
        assert!(c("cluster.mcast.loop", "off").is_ok());
        assert!(c("cluster.mcast.loop", "maybe").is_err());
        assert!(c("cluster.mcast.addr", "239.192.0.1").is_ok());
        assert!(c("cluster.mcast.addr", "10.0.0.1").is_err());
        assert!(c("cluster.mcast.ports", "4369, 4370").is_ok());
        assert!(c("cluster.mcast.ports", "0").is_err());
        assert!(c("cluster.mcast.ports", "http").is_err());
        assert!(c("node.admin_listen", "127.0.0.1:8070").is_ok());
        assert!(c("node.admin_listen", "localhost").is_err());
        assert!(c("cluster.dns.servers", "127.0.0.1:53,[::1]:53").is_ok());
        assert!(c("cluster.dns.servers", "127.0.0.1").is_err());
        assert_eq!(c("cluster.discovery", "ETCD"), Ok("etcd".into()));
        assert_eq!(
            c("cluster.discovery", "k8s"),
            Err("expected one of etcd, static, dns, mcast, manual".into())
        );
        assert!(c("cluster.static.seeds", "a@h1, b@h2").is_ok());
        assert!(c("cluster.static.seeds", "a@h1, b").is_err());
        assert_eq!(
            c("node.cookie", " "),
            Err("empty; expected a secret shared by every node of the cluster".into())
        );
        assert_eq!(c("cluster.etcd.prefix", ""), Ok(String::new()));
    }

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:2379",
            "https://etcd.example.com",
            "http://a:1,https://b:2/",
            "http://[::1]:2379",
            "http://u:p@h:2379",
        ] {
            assert!(c("cluster.etcd.server", ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1:2379", "http://", "http://h:port", "ftp://h"] {
            assert!(c("cluster.etcd.server", bad).is_err(), "{bad}");
        }
    }
}
