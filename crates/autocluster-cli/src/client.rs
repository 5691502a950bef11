//! The client of the agent's admin endpoint, over reqwest: one `GET` at a time, every wait
//! bounded (the connection, the response head) and every body bounded (a JSON answer as a
//! whole, the event stream line by line), so that whatever answers on the port can neither
//! hang the command nor make it grow without end.

use std::error::Error as _;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::cli::AgentAddr;
use crate::Failure;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the response head may take, from the request's start (the connection included).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest JSON answer read (`/status` of a cluster of thousands is a few MiB).
pub const MAX_BODY: usize = 16 << 20;

/// The longest line of the event stream (one event is well under a KiB).
pub const MAX_LINE: usize = 1 << 20;

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing accepts connections at the address (or not in time).
    NoAgent(String),
    /// Connected, but the answer was not a usable HTTP response.
    Protocol(String),
}

/// Why reading a body failed.
#[derive(Debug)]
pub enum BodyError {
    /// The connection broke off, or the body's framing was invalid.
    Broken(String),
    /// The body (`what` = "a body") or one of its lines ("a line") is longer than `limit` bytes.
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not UTF-8 text.
    NotText,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Broken(why) => f.write_str(why),
            BodyError::TooLong { what, limit } if limit % (1 << 20) == 0 => {
                write!(f, "{what} longer than {} MiB", limit >> 20)
            }
            BodyError::TooLong { what, limit } => write!(f, "{what} longer than {limit} bytes"),
            BodyError::NotText => f.write_str("a body that is not UTF-8 text"),
        }
    }
}

/// A response whose head was read; the body is read on demand, within bounds.
pub struct Response {
    /// The status code.
    pub status: u16,
    body: reqwest::Response,
    /// Bytes read and not returned yet; no newline in the first `scanned` of them.
    pending: Vec<u8>,
    scanned: usize,
}

/// Sends `GET path` to `addr` and reads the response head.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, ClientError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .http1_only()
        .user_agent(concat!("autocluster/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Protocol(format!("cannot make an HTTP client: {}", chain(&e))))?;
    let request = client.get(format!("http://{addr}{path}")).send();
    // A connection takes at most `CONNECT_TIMEOUT`, so past `RESPONSE_TIMEOUT` one was made.
    match tokio::time::timeout(RESPONSE_TIMEOUT, request).await {
        Ok(Ok(body)) => Ok(Response {
            status: body.status().as_u16(),
            body,
            pending: Vec::new(),
            scanned: 0,
        }),
        Ok(Err(e)) if e.is_connect() && e.is_timeout() => Err(ClientError::NoAgent(format!(
            "no answer within {CONNECT_TIMEOUT:?}"
        ))),
        Ok(Err(e)) if e.is_connect() => Err(ClientError::NoAgent(root_cause(&e))),
        Ok(Err(e)) => Err(ClientError::Protocol(format!("{addr}: {}", chain(&e)))),
        Err(_) => Err(ClientError::Protocol(format!(
            "{addr} accepted the connection but sent no response within {RESPONSE_TIMEOUT:?}"
        ))),
    }
}

/// The innermost cause of `e` (`Connection refused (os error 111)`).
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `e` and its causes, without the request's URL (the caller names the address).
fn chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

impl Response {
    async fn chunk(&mut self) -> Result<Option<Vec<u8>>, BodyError> {
        match self.body.chunk().await {
            Ok(chunk) => Ok(chunk.map(|c| c.to_vec())),
            Err(e) => Err(BodyError::Broken(chain(&e))),
        }
    }

    /// The whole body as text, at most [`MAX_BODY`] bytes.
    pub async fn text(self) -> Result<String, BodyError> {
        self.text_within(MAX_BODY).await
    }

    async fn text_within(mut self, limit: usize) -> Result<String, BodyError> {
        let too_long = BodyError::TooLong {
            what: "a body",
            limit,
        };
        if self.body.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_long);
        }
        let mut body = std::mem::take(&mut self.pending);
        while let Some(chunk) = self.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(too_long);
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| BodyError::NotText)
    }

    /// The next line of the body, without its newline, at most [`MAX_LINE`] bytes; `None` at
    /// the body's end.
    pub async fn next_line(&mut self) -> Result<Option<String>, BodyError> {
        self.line_within(MAX_LINE).await
    }

    async fn line_within(&mut self, limit: usize) -> Result<Option<String>, BodyError> {
        let too_long = || BodyError::TooLong {
            what: "a line",
            limit,
        };
        loop {
            let newline = self.pending[self.scanned..]
                .iter()
                .position(|b| *b == b'\n');
            if let Some(at) = newline.map(|i| self.scanned + i) {
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > limit {
                    return Err(too_long());
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            self.scanned = self.pending.len();
            if self.pending.len() > limit {
                return Err(too_long());
            }
            match self.chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None if self.pending.is_empty() => return Ok(None),
                None => {
                    let line = std::mem::take(&mut self.pending);
                    self.scanned = 0;
                    return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
                }
            }
        }
    }
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

    /// `GET path`, which must answer 200; the failures worded for the user: a 1 exit naming
    /// the address.
    pub async fn get(&self, path: &str) -> Result<Response, Failure> {
        let response = get(self.addr, path).await.map_err(|e| match e {
            ClientError::NoAgent(why) => Failure::runtime(format!(
                "no agent answers on {} ({why}): is `{}` running?",
                self.addr, self.start_hint
            )),
            ClientError::Protocol(why) => Failure::runtime(why),
        })?;
        if response.status == 200 {
            return Ok(response);
        }
        let status = response.status;
        let body = response.text().await.unwrap_or_default();
        Err(Failure::runtime(format!(
            "the agent on {} answered {status} to {path}: {}",
            self.addr,
            body.trim()
        )))
    }

    /// `GET path`, which must answer 200 with JSON of a `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let body = self
            .get(path)
            .await?
            .text()
            .await
            .map_err(|e| self.body_failure(path, e))?;
        serde_json::from_str(&body).map_err(|e| {
            Failure::runtime(format!(
                "the agent on {} sent invalid JSON for {path}: {e}",
                self.addr
            ))
        })
    }

    /// A body that could not be read: the connection broke (`went away`), or the agent sent
    /// what the client refuses.
    pub fn body_failure(&self, path: &str, e: BodyError) -> Failure {
        match e {
            BodyError::Broken(why) => {
                Failure::runtime(format!("the agent on {} went away: {why}", self.addr))
            }
            e => Failure::runtime(format!("the agent on {} sent {e} for {path}", self.addr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers one request with `head`, then writes `body` and closes.
    async fn serve_once(head: &'static str, body: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(head.as_bytes()).await.unwrap();
            let _ = s.write_all(&body).await;
        });
        addr
    }

    #[tokio::test]
    async fn reads_a_body_with_a_length() {
        let addr = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            b"hello".into(),
        )
        .await;
        let r = get(addr, "/x").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text().await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn reads_chunked_lines() {
        let body = "4\r\n{\"a\"\r\n3\r\n:1}\r\n5\r\n\n{}\n\n\r\n0\r\n\r\n";
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut r = get(serve_once(head, body.into()).await, "/events")
            .await
            .unwrap();
        assert_eq!(r.next_line().await.unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(r.next_line().await.unwrap().as_deref(), Some("{}"));
        assert_eq!(r.next_line().await.unwrap().as_deref(), Some(""));
        assert_eq!(r.next_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_refused() {
        let head = "HTTP/1.1 200 OK\r\n\r\n";
        let mut body = b"short\n".to_vec();
        body.extend(vec![b'x'; 100_000]);
        body.extend(b"\nnever read\n");
        let mut r = get(serve_once(head, body).await, "/events").await.unwrap();
        assert_eq!(r.line_within(1000).await.unwrap().as_deref(), Some("short"));
        let err = r.line_within(1000).await.unwrap_err();
        assert!(matches!(
            err,
            BodyError::TooLong {
                what: "a line",
                limit: 1000
            }
        ));
        assert_eq!(err.to_string(), "a line longer than 1000 bytes");
        // Refused as soon as the limit is passed, not after the whole line was buffered.
        assert!(r.pending.len() < 100_000, "{} bytes held", r.pending.len());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_or_without_a_length() {
        let long = vec![b'x'; 4096];
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n";
        let r = get(serve_once(head, long.clone()).await, "/status")
            .await
            .unwrap();
        let err = r.text_within(1024).await.unwrap_err();
        assert_eq!(err.to_string(), "a body longer than 1024 bytes");
        let head = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
        let r = get(serve_once(head, long).await, "/status").await.unwrap();
        assert!(matches!(
            r.text_within(1024).await,
            Err(BodyError::TooLong { what: "a body", .. })
        ));
        let r = get(serve_once(head, vec![b'y'; 1024]).await, "/status")
            .await
            .unwrap();
        assert_eq!(r.text_within(1024).await.unwrap().len(), 1024);
    }

    #[tokio::test]
    async fn nobody_listening_is_no_agent_and_garbage_is_a_protocol_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        match get(addr, "/status").await {
            Err(ClientError::NoAgent(why)) => assert!(why.contains("refused"), "{why}"),
            other => panic!("not NoAgent: {:?}", other.err()),
        }
        let addr = serve_once("garbage\r\n\r\n", Vec::new()).await;
        assert!(matches!(
            get(addr, "/status").await,
            Err(ClientError::Protocol(_))
        ));
    }
}
