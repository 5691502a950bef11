//! Plain HTTP/1.0 requests to an agent's admin endpoint (the body ends with the connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path`: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `GET path`: the status code, `None` while nothing answers.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).ok().map(|(status, _)| status)
}
