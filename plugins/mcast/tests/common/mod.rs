//! Helpers shared by the integration tests: backends on loopback multicast, and a reader of
//! the observation stream that remembers what it heard.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use autocluster_mcast::McastDiscovery;
use autocluster_plugin::{
    BackendContext, BoxStream, Change, Discovery, Member, Metadata, NodeName, Origin, Registration,
    Result, Section, WatchBatch,
};
use futures::StreamExt;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;

/// Generous bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where a test's nodes meet: its own group and port, so tests run in parallel.
#[derive(Clone, Copy)]
pub struct Net {
    pub group: Ipv4Addr,
    pub port: u16,
}

impl Net {
    /// Group `239.192.77.<last>` on `port` moved by this run's offset (see [`port`]).
    pub fn new(last: u8, port: u16) -> Self {
        Net {
            group: Ipv4Addr::new(239, 192, 77, last),
            port: self::port(port),
        }
    }
}

/// `base` moved by an offset drawn once per test process (a multiple of 100 below 4,000):
/// two test runs at once on one machine (two checkouts) then meet on different ports
/// rather than hearing each other's nodes, which carry the same names and cookies.
pub fn port(base: u16) -> u16 {
    static OFFSET: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    base + *OFFSET.get_or_init(|| 100 * (rand::random::<u16>() % 40))
}

pub struct Node<'a> {
    pub name: &'a str,
    pub cookie: &'a str,
    pub cluster: &'a str,
    pub heartbeat: &'a str,
    pub member_ttl: &'a str,
}

impl<'a> Node<'a> {
    /// A node of cluster `test` with cookie `secret`; heartbeats are left to the test, so
    /// the defaults make them rare.
    pub fn new(name: &'a str) -> Self {
        Node {
            name,
            cookie: "secret",
            cluster: "test",
            heartbeat: "10s",
            member_ttl: "30s",
        }
    }

    pub fn context(&self, net: Net) -> BackendContext {
        let mut s = Section::new("cluster.mcast");
        for (k, v) in [
            ("addr", net.group.to_string()),
            ("ports", net.port.to_string()),
            ("iface", "127.0.0.1".to_string()),
            ("heartbeat", self.heartbeat.to_string()),
            ("member_ttl", self.member_ttl.to_string()),
        ] {
            s.set(k, v, Origin::Program);
        }
        BackendContext {
            node: name(self.name),
            cluster: self.cluster.into(),
            cookie: self.cookie.into(),
            section: s,
        }
    }

    pub fn build(&self, net: Net) -> McastDiscovery {
        McastDiscovery::new(&self.context(net)).expect("valid settings")
    }
}

pub fn name(s: &str) -> NodeName {
    NodeName::parse(s).expect("valid node name")
}

pub fn registration(node: &str) -> Registration {
    Registration {
        node: name(node),
        meta: Metadata::of(name(node)).with_version("test"),
    }
}

/// Reads the observation stream and keeps every change it heard; `members` is who was
/// heard and has not left (expiry by TTL is the engine's, not tested here).
pub struct Watcher {
    stream: BoxStream<Result<WatchBatch>>,
    pub members: BTreeMap<NodeName, Member>,
    pub changes: Vec<Change>,
}

impl Watcher {
    pub async fn start(d: &impl Discovery) -> Self {
        let mut w = Watcher {
            stream: d.observe(),
            members: BTreeMap::new(),
            changes: Vec::new(),
        };
        // The first batch comes as soon as the node listens.
        let first = w.next(WAIT).await.expect("the first batch");
        assert!(first.is_empty(), "the first batch says only: listening");
        w
    }

    /// The next batch, or `None` when `within` passes first.
    pub async fn next(&mut self, within: Duration) -> Option<Vec<Change>> {
        let batch = match tokio::time::timeout(within, self.stream.next()).await {
            Err(_) => return None,
            Ok(None) => panic!("the observation stream ended"),
            Ok(Some(Err(e))) => panic!("the observation stream failed: {e}"),
            Ok(Some(Ok(b))) => b,
        };
        for c in &batch.changes {
            match c {
                Change::Put(m) => {
                    self.members.insert(m.node.clone(), m.clone());
                }
                Change::Delete { node, incarnation } => {
                    if self
                        .members
                        .get(node)
                        .is_some_and(|m| Some(m.incarnation) == *incarnation)
                    {
                        self.members.remove(node);
                    }
                }
            }
        }
        self.changes.extend(batch.changes.iter().cloned());
        Some(batch.changes)
    }

    /// Reads until `cond` holds; panics after [`WAIT`].
    pub async fn until(&mut self, what: &str, mut cond: impl FnMut(&Watcher) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next(left).await.is_none() {
                let last = &self.changes[self.changes.len().saturating_sub(5)..];
                panic!(
                    "timed out waiting for {what}; members {:?}, last changes {last:?}",
                    self.members.keys().collect::<Vec<_>>()
                );
            }
        }
    }

    /// Reads until every node in `names` is a member.
    pub async fn until_members(&mut self, names: &[&str]) {
        let want: Vec<NodeName> = names.iter().map(|n| name(n)).collect();
        self.until(&format!("members {names:?}"), |w| {
            want.iter().all(|n| w.members.contains_key(n))
        })
        .await;
    }

    /// How many `Put`s for `node` were seen.
    pub fn puts(&self, node: &str) -> usize {
        let node = name(node);
        self.changes
            .iter()
            .filter(|c| matches!(c, Change::Put(m) if m.node == node))
            .count()
    }
}

/// Waits until `cond` holds, checking every 20 ms; panics after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A socket of the test's own on the group port: hears what the nodes send, and sends raw
/// datagrams to them.
pub struct Tap {
    pub recv: UdpSocket,
    pub send: UdpSocket,
    pub to: SocketAddrV4,
}

impl Tap {
    pub fn open(net: Net) -> Self {
        let lo = Ipv4Addr::LOCALHOST;
        let r = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        r.set_reuse_address(true).unwrap();
        r.set_nonblocking(true).unwrap();
        r.bind(&SockAddr::from(SocketAddrV4::new(net.group, net.port)))
            .unwrap();
        r.join_multicast_v4(&net.group, &lo).unwrap();
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_multicast_if_v4(&lo).unwrap();
        s.set_multicast_loop_v4(true).unwrap();
        s.set_nonblocking(true).unwrap();
        s.bind(&SockAddr::from(SocketAddrV4::new(lo, 0))).unwrap();
        Tap {
            recv: UdpSocket::from_std(r.into()).unwrap(),
            send: UdpSocket::from_std(s.into()).unwrap(),
            to: SocketAddrV4::new(net.group, net.port),
        }
    }

    /// Every datagram waiting now.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = self.recv.try_recv_from(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    pub async fn send(&self, datagram: &[u8]) {
        self.send.send_to(datagram, self.to).await.unwrap();
    }
}
