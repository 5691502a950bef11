//! Opening the sockets: a receiver that shares the group port with every other node on the
//! host, and a sender with the configured interface, hop limit and loopback.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;

use crate::config::McastConfig;

/// The open sockets.
pub(crate) struct Sockets {
    /// Joined to the group, bound to the first port of `ports` that would bind.
    pub recv: UdpSocket,
    /// The port `recv` is bound to.
    pub port: u16,
    /// Sends to `targets`.
    pub send: UdpSocket,
    /// The group on every port of `ports`.
    pub targets: Vec<SocketAddr>,
}

/// Opens both sockets; must run inside a tokio runtime.
pub(crate) fn open(cfg: &McastConfig) -> io::Result<Sockets> {
    let ifindex = match cfg.iface {
        IpAddr::V6(a) if cfg.group.is_ipv6() => ipv6_ifindex(a)?,
        _ => 0,
    };
    let mut last = None;
    let mut recv = None;
    for &port in &cfg.ports {
        match receiver(cfg, port, ifindex) {
            Ok(s) => {
                recv = Some((s, port));
                break;
            }
            Err(e) => {
                tracing::warn!(port, error = %e, "mcast: cannot receive on this port, trying the next");
                last = Some(e);
            }
        }
    }
    let Some((recv, port)) = recv else {
        return Err(last.unwrap_or_else(|| io::Error::other("no ports configured")));
    };
    let send = sender(cfg, ifindex)?;
    let targets = cfg
        .ports
        .iter()
        .map(|&p| match cfg.group {
            IpAddr::V4(g) => SocketAddr::V4(SocketAddrV4::new(g, p)),
            IpAddr::V6(g) => SocketAddr::V6(SocketAddrV6::new(g, p, 0, ifindex)),
        })
        .collect();
    Ok(Sockets {
        recv: UdpSocket::from_std(recv.into())?,
        port,
        send: UdpSocket::from_std(send.into())?,
        targets,
    })
}

fn udp(domain: Domain) -> io::Result<Socket> {
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Several nodes on one host all receive on the same port: every socket sets `SO_REUSEADDR`
/// (and `SO_REUSEPORT` where it exists) before binding, and each gets every datagram.
fn receiver(cfg: &McastConfig, port: u16, ifindex: u32) -> io::Result<Socket> {
    let s = udp(Domain::for_address(SocketAddr::new(cfg.group, port)))?;
    s.set_reuse_address(true)?;
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd"
    ))]
    s.set_reuse_port(true)?;
    match cfg.group {
        IpAddr::V4(group) => {
            let iface = match cfg.iface {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            // Only this group's datagrams, not those of every group some socket joined.
            #[cfg(target_os = "linux")]
            s.set_multicast_all_v4(false)?;
            let bind = if cfg!(unix) {
                group
            } else {
                Ipv4Addr::UNSPECIFIED
            };
            s.bind(&SockAddr::from(SocketAddrV4::new(bind, port)))?;
            s.join_multicast_v4(&group, &iface)?;
        }
        IpAddr::V6(group) => {
            s.set_only_v6(true)?;
            #[cfg(target_os = "linux")]
            s.set_multicast_all_v6(false)?;
            let bind = if cfg!(unix) {
                group
            } else {
                Ipv6Addr::UNSPECIFIED
            };
            s.bind(&SockAddr::from(SocketAddrV6::new(bind, port, 0, ifindex)))?;
            s.join_multicast_v6(&group, ifindex)?;
        }
    }
    Ok(s)
}

fn sender(cfg: &McastConfig, ifindex: u32) -> io::Result<Socket> {
    let s = udp(Domain::for_address(SocketAddr::new(cfg.group, 0)))?;
    match cfg.iface {
        IpAddr::V4(iface) if cfg.group.is_ipv4() => {
            if !iface.is_unspecified() {
                s.set_multicast_if_v4(&iface)?;
            }
            s.set_multicast_ttl_v4(u32::from(cfg.ttl))?;
            s.set_multicast_loop_v4(cfg.loopback)?;
            s.bind(&SockAddr::from(SocketAddrV4::new(iface, 0)))?;
        }
        _ => {
            s.set_only_v6(true)?;
            if ifindex != 0 {
                s.set_multicast_if_v6(ifindex)?;
            }
            s.set_multicast_hops_v6(u32::from(cfg.ttl))?;
            s.set_multicast_loop_v6(cfg.loopback)?;
            s.bind(&SockAddr::from(SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                0,
                0,
                0,
            )))?;
        }
    }
    Ok(s)
}

/// IPv6 multicast names interfaces by index: finds the one holding `addr` (`::` is 0, the
/// system's choice) in `/proc/net/if_inet6`.
fn ipv6_ifindex(addr: Ipv6Addr) -> io::Result<u32> {
    if addr.is_unspecified() {
        return Ok(0);
    }
    let table = std::fs::read_to_string("/proc/net/if_inet6").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot map {addr} to an interface (/proc/net/if_inet6: {e}); use iface = ::"),
        )
    })?;
    let want: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    table
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let a = f.next()?;
            let idx = u32::from_str_radix(f.next()?, 16).ok()?;
            (a == want).then_some(idx)
        })
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no interface has the address {addr}"),
            )
        })
}
