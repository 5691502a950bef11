//! What the formation harness starts once per run (etcd, dnsmasq) and the settings of node
//! `i` of trial `t` on each backend.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use autocluster_testkit::fixtures::dnsmasq::Dnsmasq;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::proxy::Proxy;

use crate::probes::BoxError;

/// The backend a run forms clusters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Discovery {
    Etcd,
    Static,
    Dns,
    Mcast,
}

/// The servers of a run and the fixed parts of every node's settings.
pub struct Env {
    pub discovery: Discovery,
    pub etcd: Option<EtcdServer>,
    pub dns: Option<Dnsmasq>,
    /// The probe port every static / dns node listens on (on its own loopback address).
    pub port: u16,
    pub stable_for: Duration,
    pub timeout: Duration,
    pub nodes: usize,
}

/// The loopback address of node `i` of trial `t` (static, dns): 127.<20+t/250>.<t%250>.<i+1>.
pub fn host(t: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 20 + (t / 250) as u8, (t % 250) as u8, (i + 1) as u8)
}

/// The DNS name of trial `t`.
fn dns_name(t: usize) -> String {
    format!("t{t}.formation.test")
}

impl Env {
    pub async fn start(
        discovery: Discovery,
        trials: usize,
        nodes: usize,
        stable_for: Duration,
        timeout: Duration,
        etcd_bin: Option<&std::path::Path>,
    ) -> Result<Env, BoxError> {
        let etcd = match discovery {
            Discovery::Etcd => {
                let mut b = EtcdServer::builder();
                if let Some(p) = etcd_bin {
                    b = b.binary(p);
                }
                Some(b.start().await?)
            }
            _ => None,
        };
        let dns = match discovery {
            Discovery::Dns => {
                let mut b = Dnsmasq::builder();
                for t in 0..trials + 1 {
                    for i in 0..nodes + 1 {
                        b = b.host_record(&dns_name(t), &host(t, i).to_string());
                    }
                }
                Some(b.start().await?)
            }
            _ => None,
        };
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        Ok(Env {
            discovery,
            etcd,
            dns,
            port,
            stable_for,
            timeout,
            nodes,
        })
    }

    /// The name of node `i` of trial `t` (`i == nodes`: the late node).
    pub fn node_name(&self, t: usize, i: usize) -> String {
        match self.discovery {
            Discovery::Etcd | Discovery::Mcast => format!("t{t}n{i}@127.0.0.1"),
            Discovery::Static => format!("n{i}@{}", host(t, i)),
            Discovery::Dns => format!("emqx@{}", host(t, i)),
        }
    }

    /// The settings of node `i` of trial `t`; `proxy`: its etcd connection goes through it.
    pub fn settings(&self, t: usize, i: usize, proxy: Option<&Proxy>) -> Vec<(String, String)> {
        let mut p: Vec<(&str, String)> = vec![
            ("node.name", self.node_name(t, i)),
            ("node.cookie", "formation-bench-cookie".into()),
            ("cluster.name", format!("formation{t}")),
            ("cluster.call_timeout", "2s".into()),
            ("cluster.backoff_min", "50ms".into()),
            ("cluster.backoff_max", "500ms".into()),
            ("cluster.formation.min_members", self.nodes.to_string()),
            (
                "cluster.formation.stable_for",
                format!("{}ms", self.stable_for.as_millis()),
            ),
            (
                "cluster.formation.timeout",
                format!("{}ms", self.timeout.as_millis()),
            ),
        ];
        match self.discovery {
            Discovery::Etcd => {
                let etcd = self.etcd.as_ref().map(|e| e.endpoint()).unwrap_or_default();
                let server = proxy.map_or(etcd, |p| p.endpoint());
                p.extend([
                    ("cluster.discovery", "etcd".into()),
                    ("cluster.etcd.server", server),
                    ("cluster.etcd.prefix", "formation".into()),
                    ("cluster.etcd.node_ttl", "10s".into()),
                ]);
            }
            Discovery::Static => {
                let seeds: Vec<String> = (0..=self.nodes).map(|j| self.node_name(t, j)).collect();
                p.extend([
                    ("cluster.discovery", "static".into()),
                    ("cluster.static.seeds", seeds.join(",")),
                    ("node.listen", format!("{}:{}", host(t, i), self.port)),
                    ("cluster.probe_interval", "100ms".into()),
                ]);
            }
            Discovery::Dns => {
                let server = self.dns.as_ref().map(|d| d.server_addr().to_string());
                p.extend([
                    ("cluster.discovery", "dns".into()),
                    ("cluster.dns.name", dns_name(t)),
                    ("cluster.dns.app", "emqx".into()),
                    ("cluster.dns.servers", server.unwrap_or_default()),
                    ("cluster.dns.interval", "100ms".into()),
                    ("node.listen", format!("{}:{}", host(t, i), self.port)),
                    ("cluster.probe_interval", "100ms".into()),
                ]);
            }
            Discovery::Mcast => p.extend([
                ("cluster.discovery", "mcast".into()),
                ("cluster.mcast.addr", "239.255.7.7".into()),
                ("cluster.mcast.ports", (42000 + t % 2000).to_string()),
                ("cluster.mcast.iface", "127.0.0.1".into()),
                ("cluster.mcast.ttl", "1".into()),
                ("cluster.mcast.loop", "on".into()),
                ("cluster.mcast.heartbeat", "100ms".into()),
                ("cluster.mcast.member_ttl", "2s".into()),
            ]),
        }
        p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}
