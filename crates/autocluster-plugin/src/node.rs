//! Node names: `name@host`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind};

/// A node's name, `name@host`, as EMQX and Erlang spell it (`emqx1@192.168.1.162`).
///
/// The name part is letters, digits, `_`, `-` and `.`; the host is a hostname, an IPv4
/// address or an IPv6 address (`emqx@::1`, or bracketed, `emqx@[::1]`, which is kept as
/// written). Cloning is cheap.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName {
    full: Arc<str>,
    at: usize,
}

impl NodeName {
    /// Parses `name@host`; see the type's documentation for what is accepted.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "invalid node name {s:?}: {why}; expected name@host, e.g. emqx1@192.168.1.162"
                ),
            )
        };
        let at = s.find('@').ok_or_else(|| bad("no '@'"))?;
        let (name, host) = (&s[..at], &s[at + 1..]);
        if name.is_empty() {
            return Err(bad("the name before '@' is empty"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(bad(&format!("{c:?} is not allowed in the name part")));
        }
        if host.is_empty() {
            return Err(bad("the host after '@' is empty"));
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if bare.parse::<IpAddr>().is_err() && !is_hostname(host) {
            return Err(bad(&format!(
                "{host:?} is neither a hostname nor an IP address"
            )));
        }
        Ok(NodeName {
            full: Arc::from(s),
            at,
        })
    }

    /// The whole name, `name@host`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The part before `@`.
    pub fn name(&self) -> &str {
        &self.full[..self.at]
    }

    /// The part after `@`, as written.
    pub fn host(&self) -> &str {
        &self.full[self.at + 1..]
    }

    /// The host as an IP address, when it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        let h = self.host();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
            .parse()
            .ok()
    }
}

fn is_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl FromStr for NodeName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        NodeName::parse(s)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.full)
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_emqx_forms() {
        for ok in [
            "emqx1@192.168.1.162",
            "emqx@node1.example.com",
            "emqx@::1",
            "emqx@[fd00::1]",
            "a_b-c.d@host",
        ] {
            let n = NodeName::parse(ok).unwrap();
            assert_eq!(n.as_str(), ok);
        }
        let n = NodeName::parse("emqx1@192.168.1.162").unwrap();
        assert_eq!(n.name(), "emqx1");
        assert_eq!(n.host(), "192.168.1.162");
        assert_eq!(n.host_ip(), Some("192.168.1.162".parse().unwrap()));
        assert_eq!(
            NodeName::parse("e@[::1]").unwrap().host_ip(),
            Some("::1".parse().unwrap())
        );
    }

    #[test]
    fn refuses_bad_names_with_the_expected_form() {
        for bad in [
            "emqx",
            "@host",
            "emqx@",
            "em qx@host",
            "emqx@ho st",
            "emqx@-a.b",
        ] {
            let e = NodeName::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected name@host"), "{e}");
        }
    }
}
