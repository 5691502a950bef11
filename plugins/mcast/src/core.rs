//! The backend's state and its sending side: who we are, the key, the registration, and the
//! sockets, opened on first use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autocluster_plugin::{Error, ErrorKind, Metadata, NodeName, Result};
use tokio::net::UdpSocket;
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

use crate::config::McastConfig;
use crate::packet::{encode, Key, Kind, Packet};
use crate::stats::Stats;
use crate::view::View;
use crate::{receiver, socket, NAME};

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
    pub view: View,
    pub stats: Stats,
    net: OnceCell<Net>,
    /// Sends one at a time, so sequence numbers leave in order.
    send_lock: tokio::sync::Mutex<()>,
}

struct Net {
    send: UdpSocket,
    targets: Vec<SocketAddr>,
    /// The receive socket until the loop takes it, then the loop's handle.
    recv: Mutex<Option<UdpSocket>>,
    receiver: Mutex<Option<AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
            view: View::new(),
            stats: Stats::default(),
            net: OnceCell::new(),
            send_lock: tokio::sync::Mutex::new(()),
        }
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

    /// Opens the sockets and starts the receive loop, once.
    pub async fn start(self: &Arc<Self>, op: &'static str) -> Result<()> {
        let net = self
            .net
            .get_or_try_init(|| async {
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
                tracing::debug!(
                    group = %self.cfg.group, port = s.port, node = %self.node,
                    "mcast: receiving"
                );
                Ok::<_, Error>(Net {
                    send: s.send,
                    targets: s.targets,
                    recv: Mutex::new(Some(s.recv)),
                    receiver: Mutex::new(None),
                })
            })
            .await?;
        // Started here, once the sockets are in place, so the loop can always send replies.
        if let Some(sock) = lock(&net.recv).take() {
            let handle = tokio::spawn(receiver::run(self.clone(), sock)).abort_handle();
            *lock(&net.receiver) = Some(handle);
        }
        Ok(())
    }

    /// Stops the receive loop (the backend is being dropped).
    pub fn stop(&self) {
        if let Some(handle) = self.net.get().and_then(|n| lock(&n.receiver).take()) {
            handle.abort();
        }
    }

    pub fn registered(&self) -> Option<Metadata> {
        lock(&self.registered).clone()
    }

    pub fn set_registered(&self, meta: Option<Metadata>) {
        *lock(&self.registered) = meta;
    }

    /// Opens the sockets if needed, then sends.
    pub async fn start_and_send(
        self: &Arc<Self>,
        kind: Kind,
        meta: Option<Metadata>,
        op: &'static str,
    ) -> Result<()> {
        self.start(op).await?;
        self.send(kind, meta, op).await
    }

    /// Sends one packet to the group on every port, once the sockets are open. Fails when
    /// no port took it.
    pub async fn send(&self, kind: Kind, meta: Option<Metadata>, op: &'static str) -> Result<()> {
        let Some(net) = self.net.get() else {
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
