//! How the demo nodes find each other: UDP multicast on loopback (a random group and port)
//! or an etcd (a random prefix), and the settings each node starts with.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use rand::Rng;

use crate::cli::{DemoArgs, DemoBackend};
use crate::Failure;

pub(super) const MCAST_HEARTBEAT: Duration = Duration::from_millis(300);
pub(super) const MCAST_TTL: Duration = Duration::from_secs(2);
pub(super) const ETCD_TTL: Duration = Duration::from_secs(3);
pub(super) const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";

/// How the demo nodes find each other.
pub(super) enum Backend {
    Mcast { group: Ipv4Addr, port: u16 },
    Etcd { url: String, prefix: String },
}

impl Backend {
    pub(super) fn choose(args: &DemoArgs) -> Result<Backend, Failure> {
        let mut rng = rand::rng();
        match (args.discovery, &args.etcd) {
            (Some(DemoBackend::Mcast), Some(_)) => Err(Failure::config(
                "--etcd is for --discovery etcd; the multicast demo needs no server",
            )),
            (None | Some(DemoBackend::Mcast), None) => {
                let port = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                    .and_then(|s| s.local_addr())
                    .map(|a| a.port())
                    .map_err(|e| Failure::runtime(format!("cannot find a free UDP port: {e}")))?;
                // 239.255.0.0/16 is the local scope; a random group per run.
                let group =
                    Ipv4Addr::new(239, 255, rng.random_range(1..255), rng.random_range(1..255));
                Ok(Backend::Mcast { group, port })
            }
            (_, url) => {
                let url = url.clone().unwrap_or_else(|| DEFAULT_ETCD.to_string());
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Failure::config(format!(
                        "--etcd {url}: expected an http:// or https:// URL, such as {DEFAULT_ETCD}"
                    )));
                }
                Ok(Backend::Etcd {
                    url,
                    prefix: format!("autocluster-demo-{:08x}", rng.random::<u32>()),
                })
            }
        }
    }

    pub(super) fn ttl(&self) -> Duration {
        match self {
            Backend::Mcast { .. } => MCAST_TTL,
            Backend::Etcd { .. } => ETCD_TTL,
        }
    }

    pub(super) fn is_etcd(&self) -> bool {
        matches!(self, Backend::Etcd { .. })
    }

    pub(super) fn settings(
        &self,
        node: &str,
        cluster: &str,
        cookie: &str,
    ) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("node.name", node.to_string()),
            ("node.cookie", cookie.to_string()),
            ("cluster.name", cluster.to_string()),
            ("cluster.call_timeout", "2s".to_string()),
            ("cluster.backoff_min", "100ms".to_string()),
            ("cluster.backoff_max", "1s".to_string()),
        ];
        match self {
            Backend::Mcast { group, port } => pairs.extend([
                ("cluster.discovery", "mcast".to_string()),
                ("cluster.mcast.addr", group.to_string()),
                ("cluster.mcast.ports", port.to_string()),
                ("cluster.mcast.iface", "127.0.0.1".to_string()),
                ("cluster.mcast.ttl", "1".to_string()),
                ("cluster.mcast.loop", "on".to_string()),
                (
                    "cluster.mcast.heartbeat",
                    format!("{}ms", MCAST_HEARTBEAT.as_millis()),
                ),
                (
                    "cluster.mcast.member_ttl",
                    format!("{}s", MCAST_TTL.as_secs()),
                ),
            ]),
            Backend::Etcd { url, prefix } => pairs.extend([
                ("cluster.discovery", "etcd".to_string()),
                ("cluster.etcd.server", url.clone()),
                ("cluster.etcd.prefix", prefix.clone()),
                ("cluster.etcd.node_ttl", format!("{}s", ETCD_TTL.as_secs())),
            ]),
        }
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use autocluster::Settings;

    use super::*;

    #[test]
    fn every_demo_setting_is_valid() {
        for backend in [
            Backend::Mcast {
                group: Ipv4Addr::new(239, 255, 1, 2),
                port: 40000,
            },
            Backend::Etcd {
                url: DEFAULT_ETCD.into(),
                prefix: "p".into(),
            },
        ] {
            let pairs = backend.settings("demo1@127.0.0.21", "demo-1", "c");
            Settings::from_pairs(pairs).expect("valid settings");
        }
    }
}
