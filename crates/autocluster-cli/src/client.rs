//! A tiny HTTP/1.1 client for the agent's admin endpoint: one `GET` per connection, bodies
//! with a length, chunked (the event stream) or up to the end of the connection.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cli::AgentAddr;
use crate::Failure;

/// How long connecting and reading the response head may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing accepts connections at the address (or not in time).
    NoAgent(String),
    /// Connected, but the answer was not a usable HTTP response.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoAgent(why) | ClientError::Protocol(why) => f.write_str(why),
        }
    }
}

/// How the body is delimited.
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    UntilClose,
}

/// A response whose head was read; the body is read on demand.
pub struct Response {
    /// The status code.
    pub status: u16,
    reader: BufReader<TcpStream>,
    framing: Framing,
    pending: Vec<u8>,
}

/// Sends `GET path` to `addr` and reads the response head.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, ClientError> {
    let stream = match tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ClientError::NoAgent(e.to_string())),
        Err(_) => {
            return Err(ClientError::NoAgent(format!(
                "no answer within {TIMEOUT:?}"
            )))
        }
    };
    tokio::time::timeout(TIMEOUT, exchange(stream, addr, path))
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Protocol(format!(
                "{addr} accepted the connection but sent no response within {TIMEOUT:?}"
            )))
        })
}

async fn exchange(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
) -> Result<Response, ClientError> {
    let bad = |why: String| ClientError::Protocol(format!("{addr}: {why}"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: autocluster/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| bad(format!("cannot send the request: {e}")))?;
    let mut reader = BufReader::new(stream);

    let mut line = String::new();
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| bad(format!("cannot read the response: {e}")))?;
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("not an HTTP response: {:?}", line.trim_end())))?;

    let mut framing = Framing::UntilClose;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| bad(format!("cannot read the response headers: {e}")))?;
        let header = line.trim_end();
        if n == 0 || header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            framing = Framing::Length(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked {
                left: 0,
                done: false,
            };
        }
    }
    Ok(Response {
        status,
        reader,
        framing,
        pending: Vec::new(),
    })
}

impl Response {
    /// The next piece of the body as it arrives; `None` at its end.
    pub async fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 8192];
        match &mut self.framing {
            Framing::Length(0) => Ok(None),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                buf.truncate(n);
                Ok(Some(buf))
            }
            Framing::UntilClose => {
                let n = self.reader.read(&mut buf).await?;
                buf.truncate(n);
                Ok((n > 0).then_some(buf))
            }
            Framing::Chunked { done: true, .. } => Ok(None),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    *left = read_chunk_size(&mut self.reader).await?;
                    if *left == 0 {
                        // The trailers, up to the empty line.
                        let mut line = String::new();
                        while self.reader.read_line(&mut line).await? > 2 {
                            line.clear();
                        }
                        *done = true;
                        return Ok(None);
                    }
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    self.reader.read_exact(&mut crlf).await?;
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
        }
    }

    /// The whole body as text.
    pub async fn text(mut self) -> io::Result<String> {
        let mut body = std::mem::take(&mut self.pending);
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The next line of the body, without its newline; `None` at the body's end.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
                let rest = self.pending.split_off(at + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            match self.chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None if self.pending.is_empty() => return Ok(None),
                None => {
                    let line = std::mem::take(&mut self.pending);
                    return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
                }
            }
        }
    }
}

async fn read_chunk_size(reader: &mut BufReader<TcpStream>) -> io::Result<u64> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let size = line.trim_end().split(';').next().unwrap_or("").trim();
    u64::from_str_radix(size, 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad chunk size {size:?}"),
        )
    })
}

/// A running agent's admin endpoint, as `status` and `members` find it.
pub struct Agent {
    /// Its address.
    pub addr: SocketAddr,
    /// How the user would start it, for the message when it does not answer.
    start_hint: String,
}

impl Agent {
    /// The agent at `--admin`, else at `node.admin_listen` of the configuration file (which
    /// must then load: a configuration error exits 2).
    pub fn locate(args: &AgentAddr) -> Result<Agent, Failure> {
        let file = args.config.as_ref().map(|p| p.display().to_string());
        let start_hint = format!("autocluster agent -c {}", file.as_deref().unwrap_or("FILE"));
        let addr = match (args.admin, &args.config) {
            (Some(addr), _) => addr,
            (None, Some(path)) => {
                autocluster::Settings::load(path)
                    .map_err(Failure::config)?
                    .admin_listen
            }
            (None, None) => return Err(Failure::config("pass -c FILE or --admin ADDR")),
        };
        Ok(Agent { addr, start_hint })
    }

    /// `GET path`, the failures worded for the user: a 1 exit naming the address.
    pub async fn get(&self, path: &str) -> Result<Response, Failure> {
        get(self.addr, path).await.map_err(|e| match e {
            ClientError::NoAgent(why) => Failure::runtime(format!(
                "no agent answers on {} ({why}): is `{}` running?",
                self.addr, self.start_hint
            )),
            ClientError::Protocol(why) => Failure::runtime(why),
        })
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, Failure> {
        let response = self.get(path).await?;
        let status = response.status;
        let body = response
            .text()
            .await
            .map_err(|e| Failure::runtime(format!("the agent on {} broke off: {e}", self.addr)))?;
        if status != 200 {
            return Err(Failure::runtime(format!(
                "the agent on {} answered {status} to {path}: {}",
                self.addr,
                body.trim()
            )));
        }
        serde_json::from_str(&body).map_err(|e| {
            Failure::runtime(format!(
                "the agent on {} sent invalid JSON for {path}: {e}",
                self.addr
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(reply.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn reads_a_body_with_a_length() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let r = get(addr, "/x").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text().await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn reads_chunked_lines() {
        let addr = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             4\r\n{\"a\"\r\n3\r\n:1}\r\n5\r\n\n{}\n\n\r\n0\r\n\r\n",
        )
        .await;
        let mut r = get(addr, "/events").await.unwrap();
        assert_eq!(r.next_line().await.unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(r.next_line().await.unwrap().as_deref(), Some("{}"));
        assert_eq!(r.next_line().await.unwrap().as_deref(), Some(""));
        assert_eq!(r.next_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn nobody_listening_is_no_agent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(matches!(
            get(addr, "/status").await,
            Err(ClientError::NoAgent(_))
        ));
    }
}
