//! The backend's state and its sending side: who we are, the key, the registration, the
//! open sockets, and where what the receive loop hears goes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autocluster_plugin::{Change, Error, ErrorKind, Metadata, NodeName, Result};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::McastConfig;
use crate::packet::{encode, Key, Kind, Packet};
use crate::socket;
use crate::stats::Stats;
use crate::NAME;

pub(crate) struct Core {
    pub cfg: McastConfig,
    pub key: Key,
    pub cluster: String,
    pub node: NodeName,
    /// This process's life: start time in ms, shifted left 16 bits, plus 16 random bits.
    pub incarnation: u64,
    seq: AtomicU64,
    /// This node's metadata while it is registered.
    registered: Mutex<Option<Metadata>>,
    pub stats: Stats,
    /// The sending side, once the sockets are open.
    net: Mutex<Option<Arc<Net>>>,
    /// Where observations go: the engine's observation stream, while one is open.
    observer: Mutex<Option<mpsc::Sender<Change>>>,
    /// Observations dropped because the engine fell behind (it expires by TTL what it
    /// missed).
    pub observations_lost: AtomicU64,
    /// Sends one at a time, so sequence numbers leave in order.
    send_lock: tokio::sync::Mutex<()>,
    /// Another process under this node's name: its incarnation, live until the instant.
    clash: Mutex<Option<(u64, Instant)>>,
}

struct Net {
    send: UdpSocket,
    targets: Vec<SocketAddr>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch by our clock.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Core {
    pub fn new(cfg: McastConfig, cookie: &str, cluster: String, node: NodeName) -> Self {
        let incarnation = (unix_ms() << 16) | u64::from(rand::random::<u16>());
        Core {
            cfg,
            key: Key::derive(cookie),
            cluster,
            node,
            incarnation,
            seq: AtomicU64::new(0),
            registered: Mutex::new(None),
            stats: Stats::default(),
            net: Mutex::new(None),
            observer: Mutex::new(None),
            observations_lost: AtomicU64::new(0),
            send_lock: tokio::sync::Mutex::new(()),
            clash: Mutex::new(None),
        }
    }

    /// When this process started, ms since the Unix epoch (the top of its incarnation).
    pub fn started_ms(&self) -> u64 {
        self.incarnation >> 16
    }

    /// Another process under this node's name, incarnation `other`, was heard: it counts as
    /// live until `until`. True when this starts a clash (or another impostor's).
    pub fn set_clash(&self, other: u64, until: Instant) -> bool {
        let mut clash = lock(&self.clash);
        let new = clash.is_none_or(|(o, u)| o != other || u <= Instant::now());
        if new || clash.is_some_and(|(_, u)| u < until) {
            *clash = Some((other, until));
        }
        new
    }

    /// The process of incarnation `other` under this node's name left.
    pub fn end_clash(&self, other: u64) {
        let mut clash = lock(&self.clash);
        if clash.is_some_and(|(o, _)| o == other) {
            *clash = None;
        }
    }

    /// The incarnation of another live process under this node's name, if one is heard.
    pub fn clash(&self, now: Instant) -> Option<u64> {
        lock(&self.clash)
            .filter(|(_, until)| *until > now)
            .map(|(o, _)| o)
    }

    pub fn error(&self, kind: ErrorKind, op: &'static str, msg: impl Into<String>) -> Error {
        Error::new(kind, msg)
            .with_backend(NAME)
            .with_operation(op)
            .with_endpoint(self.endpoint())
    }

    fn endpoint(&self) -> String {
        let ports: Vec<String> = self.cfg.ports.iter().map(u16::to_string).collect();
        match self.cfg.group {
            std::net::IpAddr::V4(g) => format!("{g}:{}", ports.join(",")),
            std::net::IpAddr::V6(g) => format!("[{g}]:{}", ports.join(",")),
        }
    }

    /// Opens both sockets: keeps the sending one, returns the receiving one for a new
    /// receive loop.
    pub fn open(&self, op: &'static str) -> Result<UdpSocket> {
        let s = socket::open(&self.cfg).map_err(|e| {
            let hint = if self.cfg.iface.is_unspecified() {
                "; set cluster.mcast.iface to the address of the interface to use"
            } else {
                ""
            };
            let msg = format!(
                "cannot join the multicast group {} on interface {}{hint}",
                self.cfg.group, self.cfg.iface
            );
            self.error(ErrorKind::Unavailable, op, msg).with_source(e)
        })?;
        tracing::debug!(group = %self.cfg.group, port = s.port, node = %self.node, "mcast: receiving");
        *lock(&self.net) = Some(Arc::new(Net {
            send: s.send,
            targets: s.targets,
        }));
        Ok(s.recv)
    }

    pub fn registered(&self) -> Option<Metadata> {
        lock(&self.registered).clone()
    }

    pub fn set_registered(&self, meta: Option<Metadata>) {
        *lock(&self.registered) = meta;
    }

    /// Where observations go from now on (one observer at a time: the engine).
    pub fn set_observer(&self, tx: mpsc::Sender<Change>) {
        *lock(&self.observer) = Some(tx);
    }

    /// Passes on what was heard. Dropped (and counted) when nobody listens or the listener
    /// fell behind: a heartbeat comes again, and a member whose leave was lost expires.
    pub fn observe(&self, change: Change) {
        let mut observer = lock(&self.observer);
        let Some(tx) = observer.as_ref() else {
            return;
        };
        match tx.try_send(change) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.observations_lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => *observer = None,
        }
    }

    /// Sends one packet to the group on every port, once the sockets are open. Fails when
    /// no port took it.
    pub async fn send(&self, kind: Kind, meta: Option<Metadata>, op: &'static str) -> Result<()> {
        let net = lock(&self.net).clone();
        let Some(net) = net else {
            return Err(self.error(ErrorKind::Unavailable, op, "the sockets are not open"));
        };
        let _order = self.send_lock.lock().await;
        let packet = Packet {
            kind,
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            timestamp_ms: unix_ms(),
            member_ttl: self.cfg.member_ttl,
            meta,
        };
        let bytes = encode(&packet, &self.key)
            .map_err(|e| self.error(ErrorKind::Config, op, e.to_string()))?;
        let mut sent = 0;
        let mut last = None;
        for target in &net.targets {
            match net.send.send_to(&bytes, target).await {
                Ok(_) => sent += 1,
                Err(e) => {
                    tracing::debug!(%target, error = %e, "mcast: send failed");
                    last = Some(e);
                }
            }
        }
        match last {
            Some(e) if sent == 0 => Err(self
                .error(
                    ErrorKind::Unavailable,
                    op,
                    "cannot send to the multicast group",
                )
                .with_source(e)),
            _ => Ok(()),
        }
    }

    /// The TTL this node advertises.
    pub fn member_ttl(&self) -> Duration {
        self.cfg.member_ttl
    }
}
