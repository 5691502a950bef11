//! `cluster.mcast.*`: the settings and their checks.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use autocluster_plugin::{Result, Section};

/// The multicast backend's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McastConfig {
    /// `addr`: the multicast group (`239.192.0.1`, or an IPv6 group such as `ff12::1234`).
    pub group: IpAddr,
    /// `ports`: every port packets are sent to; the first one that binds receives.
    pub ports: Vec<u16>,
    /// `iface`: the address of the interface that joins the group and sends (`0.0.0.0`: the
    /// system's choice).
    pub iface: IpAddr,
    /// `ttl`: the IP hop limit of sent packets.
    pub ttl: u8,
    /// `loop`: whether packets loop back to receivers on this host.
    pub loopback: bool,
    /// `heartbeat`: how often this node says it is still here.
    pub heartbeat: Duration,
    /// `member_ttl`: how long a node stays a member without being heard from.
    pub member_ttl: Duration,
}

impl Default for McastConfig {
    fn default() -> Self {
        McastConfig {
            group: IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1)),
            ports: vec![4369],
            iface: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ttl: 255,
            loopback: true,
            heartbeat: Duration::from_secs(1),
            member_ttl: Duration::from_secs(5),
        }
    }
}

impl McastConfig {
    /// Reads and checks `section` (keys relative to `cluster.mcast`); a missing key takes its
    /// default. Errors are of kind `Config` and name the key and where its value came from.
    pub fn from_section(s: &Section) -> Result<Self> {
        let d = McastConfig::default();
        let group: IpAddr = s
            .parse(
                "addr",
                "a multicast group address such as 239.192.0.1 or ff12::1234",
            )?
            .unwrap_or(d.group);
        if !group.is_multicast() {
            return Err(s.error(
                "addr",
                "expected a multicast group address (224.0.0.0/4 or ff00::/8), such as 239.192.0.1",
            ));
        }

        let mut ports = Vec::new();
        for p in s.list("ports") {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => {
                    if !ports.contains(&n) {
                        ports.push(n);
                    }
                }
                _ => {
                    return Err(s.error(
                        "ports",
                        format!(
                        "expected UDP ports from 1 to 65535, comma separated ({p:?} is not one)"
                    ),
                    ))
                }
            }
        }
        if ports.is_empty() {
            ports = d.ports;
        }

        let iface: IpAddr = s
            .parse(
                "iface",
                "an interface address such as 0.0.0.0 or 192.168.1.10",
            )?
            .unwrap_or(d.iface);
        let family_ok = match (group, iface) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => true,
            (IpAddr::V6(_), IpAddr::V4(v4)) => v4.is_unspecified(),
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        };
        if !family_ok {
            return Err(s.error(
                "iface",
                format!("expected an address of the same family as the group {group}"),
            ));
        }

        let ttl = s
            .parse::<u8>("ttl", "a hop limit from 0 to 255")?
            .unwrap_or(d.ttl);
        let loopback = s.bool("loop")?.unwrap_or(d.loopback);

        let heartbeat = s.duration("heartbeat")?.unwrap_or(d.heartbeat);
        if heartbeat.is_zero() {
            return Err(s.error("heartbeat", "expected a duration above zero, such as 1s"));
        }
        let member_ttl = s.duration("member_ttl")?.unwrap_or(d.member_ttl);
        if member_ttl <= heartbeat {
            return Err(s.error(
                "member_ttl",
                format!(
                    "expected a duration longer than heartbeat ({heartbeat:?}), \
                     such as 5 heartbeats"
                ),
            ));
        }
        if u32::try_from(member_ttl.as_millis()).is_err() {
            return Err(s.error("member_ttl", "expected a duration of at most 49 days"));
        }

        Ok(McastConfig {
            group,
            ports,
            iface,
            ttl,
            loopback,
            heartbeat,
            member_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocluster_plugin::{ErrorKind, Origin};

    fn section(pairs: &[(&str, &str)]) -> Section {
        let mut s = Section::new("cluster.mcast");
        for (k, v) in pairs {
            s.set(
                *k,
                *v,
                Origin::File {
                    path: "node.conf".into(),
                    line: 7,
                },
            );
        }
        s
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        assert_eq!(
            McastConfig::from_section(&section(&[])).unwrap(),
            McastConfig::default()
        );
    }

    #[test]
    fn reads_every_key() {
        let c = McastConfig::from_section(&section(&[
            ("addr", "ff12::1234"),
            ("ports", "4369, 4370 4369"),
            ("iface", "::1"),
            ("ttl", "1"),
            ("loop", "off"),
            ("heartbeat", "200ms"),
            ("member_ttl", "1s"),
        ]))
        .unwrap();
        assert_eq!(c.group, "ff12::1234".parse::<IpAddr>().unwrap());
        assert_eq!(c.ports, vec![4369, 4370]);
        assert_eq!(c.ttl, 1);
        assert!(!c.loopback);
        assert_eq!(c.heartbeat, Duration::from_millis(200));
        assert_eq!(c.member_ttl, Duration::from_secs(1));
    }

    #[test]
    fn refuses_bad_values_naming_the_key() {
        for (key, value, expect) in [
            ("addr", "10.0.0.1", "cluster.mcast.addr = 10.0.0.1"),
            ("addr", "nope", "cluster.mcast.addr"),
            ("ports", "0", "cluster.mcast.ports"),
            ("ports", "4369,http", "\"http\" is not one"),
            ("iface", "::1", "same family"),
            ("ttl", "256", "hop limit"),
            ("loop", "maybe", "on or off"),
            ("heartbeat", "0s", "above zero"),
            ("member_ttl", "1s", "longer than heartbeat"),
        ] {
            let e = McastConfig::from_section(&section(&[(key, value)])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            let text = e.to_string();
            assert!(text.contains(expect), "{key} = {value}: {text}");
            assert!(text.starts_with("node.conf:7: "), "{text}");
        }
    }
}
