//! Where to probe a candidate.

use std::net::SocketAddr;
use std::time::Duration;

use crate::plugin::log::Escaped;
use crate::plugin::Member;

/// How long resolving one hostname may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to probe a candidate: the first `Member::meta.addrs` entry that is a socket address
/// (`127.0.0.11:4370`, `[::1]:4370`) or resolves to one (`n1.emqx.test:4370`, as the DNS
/// backend writes an SRV target and port); else the node's host (an IP address, or a
/// hostname resolved by the system resolver) with `default_port`. `None` when nothing
/// resolves (within 5 s per name).
pub async fn probe_addr(member: &Member, default_port: u16) -> Option<SocketAddr> {
    let addrs = member
        .meta
        .as_ref()
        .map(|m| m.addrs.as_slice())
        .unwrap_or_default();
    if let Some(a) = addrs.iter().find_map(|a| a.parse::<SocketAddr>().ok()) {
        return Some(a);
    }
    for a in addrs {
        if let Some(found) = resolve(a).await {
            return Some(found);
        }
    }
    if let Some(ip) = member.node.host_ip() {
        return Some(SocketAddr::new(ip, default_port));
    }
    resolve(&format!("{}:{default_port}", member.node.host())).await
}

async fn resolve(host_port: &str) -> Option<SocketAddr> {
    // Only `host:port` with a numeric port is worth asking the resolver about.
    let (host, port) = host_port.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(host_port)).await {
        Ok(Ok(mut found)) => found.next(),
        Ok(Err(e)) => {
            let name = Escaped::new(host_port);
            tracing::debug!(%name, error = %e, "probe: cannot resolve");
            None
        }
        Err(_) => {
            let name = Escaped::new(host_port);
            tracing::debug!(%name, "probe: resolving timed out");
            None
        }
    }
}
