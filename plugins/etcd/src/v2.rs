//! The etcd v2 backend (`api = v2`): HTTP/JSON `/v2/keys/...`, the layout and TTL refresh
//! EMQX 4.x uses, for etcd 3.4/3.5 started with `--enable-v2`.
//!
//! A registration is a key with a TTL (no lease): `createdIndex` is its incarnation, a
//! keep-alive is `refresh=true&prevExist=true`, the watch is a `?wait=true&recursive=true`
//! long poll from `waitIndex`, and the lock is `PUT .../lock?prevExist=false` with a TTL,
//! refreshed with the node's keep-alives while held.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use autocluster_plugin::{
    async_trait, BoxStream, Capabilities, Change, Discovery, Error, ErrorKind, Incarnation, Lease,
    LockToken, NodeName, Registration, Registrations, Result, Revision, Snapshot, WatchBatch,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

use crate::config::EtcdConfig;
use crate::error::from_http;
use crate::keys::{encode_value, Garbage, Layout};
use crate::NAME;

/// Bound of one ordinary request (long polls have none: the engine bounds the stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// v2 error codes (etcd's `error/error.go`).
const KEY_NOT_FOUND: u64 = 100;
const TEST_FAILED: u64 = 101;
const NODE_EXIST: u64 = 105;
const NOT_A_FILE: u64 = 102;
const EVENT_INDEX_CLEARED: u64 = 401;

/// The etcd v2 discovery backend.
#[derive(Debug)]
pub struct EtcdV2Backend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: EtcdConfig,
    http: reqwest::Client,
    layout: Layout,
    node: NodeName,
    current: AtomicUsize,
    garbage: Garbage,
    /// Whether this node holds the v2 lock (its TTL is refreshed with the keep-alives).
    locked: AtomicBool,
}

/// A v2 answer: the JSON body of a success or of an error.
#[derive(Debug, Default, Deserialize)]
struct Body {
    action: Option<String>,
    node: Option<Node>,
    #[serde(rename = "prevNode")]
    prev_node: Option<Node>,
    #[serde(rename = "errorCode")]
    error_code: Option<u64>,
    message: Option<String>,
    index: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct Node {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    dir: bool,
    #[serde(default)]
    nodes: Vec<Node>,
    ttl: Option<i64>,
    #[serde(rename = "createdIndex", default)]
    created_index: u64,
    #[serde(rename = "modifiedIndex", default)]
    modified_index: u64,
}

/// One answer: HTTP status, `X-Etcd-Index`, body.
struct Reply {
    status: StatusCode,
    index: u64,
    body: Body,
    endpoint: String,
}

impl Reply {
    fn code(&self) -> Option<u64> {
        self.body.error_code
    }
}

impl EtcdV2Backend {
    /// A v2 backend for `node` in `cluster`; builds the HTTP client (TLS files were checked
    /// by the config) but connects only on the first call.
    pub fn new(cfg: EtcdConfig, cluster: &str, node: NodeName) -> Result<EtcdV2Backend> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(10))
            .use_rustls_tls();
        if let Some(tls) = &cfg.tls {
            if let Some(ca) = &tls.ca_pem {
                let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
                    config_error("ssl.cacertfile", format!("cannot use the CA file: {e}"))
                })?;
                b = b.tls_built_in_root_certs(false);
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
            if let Some((cert, key)) = &tls.identity {
                let mut pem = cert.clone();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    config_error(
                        "ssl.certfile",
                        format!("cannot use the certificate and key: {e}"),
                    )
                })?;
                b = b.identity(id);
            }
        }
        let http = b
            .build()
            .map_err(|e| config_error("server", format!("cannot build the HTTP client: {e}")))?;
        let layout = Layout::new(&cfg.prefix, cluster);
        Ok(EtcdV2Backend {
            inner: Arc::new(Inner {
                cfg,
                http,
                layout,
                node,
                current: AtomicUsize::new(0),
                garbage: Garbage::default(),
                locked: AtomicBool::new(false),
            }),
        })
    }
}

fn config_error(key: &str, message: String) -> Error {
    Error::new(ErrorKind::Config, format!("cluster.etcd.{key}: {message}"))
        .with_backend(NAME)
        .with_key(format!("cluster.etcd.{key}"))
}

fn secs(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}

impl Inner {
    fn error(&self, kind: ErrorKind, op: &'static str, endpoint: &str, message: String) -> Error {
        Error::new(kind, message)
            .with_backend(NAME)
            .with_operation(op)
            .with_endpoint(endpoint)
    }

    /// Sends a request to the current endpoint, moving on to the next one when it cannot
    /// be reached; returns once the headers are in (a long poll's body comes later).
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, String)],
        form: &[(&str, String)],
        long_poll: bool,
    ) -> Result<(reqwest::Response, String)> {
        let n = self.cfg.servers.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let endpoint = &self.cfg.servers[idx];
            let mut req = self
                .http
                .request(method.clone(), format!("{endpoint}/v2/keys{key}"))
                .query(query);
            if !form.is_empty() {
                req = req.form(form);
            }
            if !long_poll {
                req = req.timeout(REQUEST_TIMEOUT);
            }
            if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
                req = req.basic_auth(u, Some(p));
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((resp, endpoint.clone()));
                }
                Err(e) => {
                    let e = from_http(e, op, endpoint);
                    if e.kind() != ErrorKind::Unavailable {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            self.error(ErrorKind::Unavailable, op, "", "no etcd endpoint".into())
        }))
    }

    /// Reads the JSON body of `resp`, and maps the errors every operation shares.
    async fn read(
        &self,
        op: &'static str,
        resp: reqwest::Response,
        endpoint: String,
    ) -> Result<Reply> {
        let status = resp.status();
        let index = etcd_index(&resp);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_http(e, op, &endpoint))?;
        let body: Body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Body::default()
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(b) => b,
                Err(_) if status == StatusCode::NOT_FOUND => {
                    return Err(self.error(
                        ErrorKind::Unsupported,
                        op,
                        &endpoint,
                        format!("etcd at {endpoint} does not serve the v2 API (etcd 3.4 and 3.5 need --enable-v2; 3.6 removed it): use cluster.etcd.api = v3"),
                    ));
                }
                Err(_) => {
                    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                    let kind = if status.is_server_error() {
                        ErrorKind::Unavailable
                    } else {
                        ErrorKind::InvalidData
                    };
                    return Err(self.error(
                        kind,
                        op,
                        &endpoint,
                        format!("etcd answered {status}: {text}"),
                    ));
                }
            }
        };
        let user = self.cfg.username.as_deref().unwrap_or("");
        match status {
            StatusCode::UNAUTHORIZED => Err(self.error(
                ErrorKind::Unauthenticated,
                op,
                &endpoint,
                format!("etcd authentication failed for user {user}"),
            )),
            StatusCode::FORBIDDEN => Err(self.error(
                ErrorKind::PermissionDenied,
                op,
                &endpoint,
                format!("etcd denied the request for user {user}: permission denied"),
            )),
            s if s.is_server_error() && body.error_code.is_none_or(|c| c >= 300) => Err(self
                .error(
                    ErrorKind::Unavailable,
                    op,
                    &endpoint,
                    format!(
                        "etcd answered {s}: {}",
                        body.message.as_deref().unwrap_or("")
                    ),
                )),
            _ => Ok(Reply {
                status,
                index,
                body,
                endpoint,
            }),
        }
    }

    async fn call(
        &self,
        op: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, String)],
        form: &[(&str, String)],
    ) -> Result<Reply> {
        let (resp, endpoint) = self.send(op, method, key, query, form, false).await?;
        self.read(op, resp, endpoint).await
    }

    fn unexpected(&self, op: &'static str, r: &Reply, key: &str) -> Error {
        let kind = match r.code() {
            Some(EVENT_INDEX_CLEARED) => ErrorKind::Compacted,
            _ => ErrorKind::Other,
        };
        self.error(
            kind,
            op,
            &r.endpoint,
            format!(
                "etcd answered {} (error code {}): {}",
                r.status,
                r.code().map_or("none".to_string(), |c| c.to_string()),
                r.body.message.as_deref().unwrap_or("")
            ),
        )
        .with_key(key)
    }

    fn lease_lost(&self, op: &'static str, r: &Reply, key: &str) -> Error {
        self.error(
            ErrorKind::LeaseLost,
            op,
            &r.endpoint,
            "the registration is gone (its TTL ran out, it was deleted, or etcd was replaced)"
                .into(),
        )
        .with_key(key)
    }

    fn member_of(&self, n: &Node) -> Option<autocluster_plugin::Member> {
        let key = n.key.as_deref().unwrap_or("");
        if n.dir {
            self.garbage
                .skip(NAME, key.as_bytes(), "a directory, not a node key");
            return None;
        }
        let value = n.value.as_deref().unwrap_or("");
        match self.layout.member(
            key.as_bytes(),
            value.as_bytes(),
            n.created_index,
            n.created_index as i64,
        ) {
            Ok(m) => Some(m),
            Err(why) => {
                self.garbage.skip(NAME, key.as_bytes(), &why);
                None
            }
        }
    }

    /// Starts a long poll for the next change under `nodes` at or after `index`; returns
    /// once etcd sent the headers (the watch is established), the body comes with a change.
    async fn poll(&self, index: u64, after: Revision) -> Result<(reqwest::Response, String)> {
        let dir = self.layout.nodes_dir();
        let query = [
            ("wait", "true".to_string()),
            ("recursive", "true".to_string()),
            ("waitIndex", index.to_string()),
        ];
        let (resp, endpoint) = self
            .send("watch", Method::GET, dir, &query, &[], true)
            .await?;
        let current = etcd_index(&resp);
        if current > 0 && current < after.0 {
            return Err(self
                .error(
                    ErrorKind::Compacted,
                    "watch",
                    &endpoint,
                    format!("etcd's index {current} is behind the watch's {}: etcd was wiped or replaced", after.0),
                )
                .with_key(dir));
        }
        Ok((resp, endpoint))
    }

    /// The change a long poll answered; `Ok(None)` when it ended without one (poll again).
    async fn finish(
        &self,
        resp: reqwest::Response,
        endpoint: String,
    ) -> Result<Option<WatchBatch>> {
        let dir = self.layout.nodes_dir();
        let r = self.read("watch", resp, endpoint).await?;
        if r.code().is_some() {
            return Err(self.unexpected("watch", &r, dir));
        }
        let Some(node) = &r.body.node else {
            return Ok(None);
        };
        let action = r.body.action.as_deref().unwrap_or("");
        let revision = Revision(node.modified_index);
        let mut changes = Vec::new();
        let key = node.key.as_deref().unwrap_or("");
        match action {
            "set" | "create" | "update" | "compareAndSwap" => {
                if let Some(m) = self.member_of(node) {
                    changes.push(Change::Put(m));
                } else if let Ok(n) = self.layout.node_of(key.as_bytes()) {
                    // A node's key overwritten with garbage registers that node no more, as
                    // a snapshot would say.
                    changes.push(Change::Delete {
                        node: n,
                        incarnation: None,
                    });
                }
            }
            "delete" | "expire" | "compareAndDelete" => {
                if key.trim_end_matches('/') == dir {
                    // The whole directory went: its members with it. Resync.
                    return Err(self
                        .error(
                            ErrorKind::Compacted,
                            "watch",
                            &r.endpoint,
                            format!("the directory {dir} was deleted"),
                        )
                        .with_key(dir));
                }
                if let Ok(n) = self.layout.node_of(key.as_bytes()) {
                    let incarnation = r
                        .body
                        .prev_node
                        .as_ref()
                        .map(|p| Incarnation(p.created_index));
                    changes.push(Change::Delete {
                        node: n,
                        incarnation,
                    });
                }
            }
            _ => {}
        }
        Ok(Some(WatchBatch { revision, changes }))
    }
}

/// Where a v2 watch stands.
enum Poll {
    /// Poll next from this index.
    Next(u64),
    /// A long poll from this index is established; its body is awaited.
    Pending(u64, Box<reqwest::Response>, String),
    /// The watch broke.
    Done,
}

fn etcd_index(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("x-etcd-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[async_trait]
impl Discovery for EtcdV2Backend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let ttl = self.inner.cfg.node_ttl;
        Capabilities::push()
            .with_registration(
                Registrations::ServerLease,
                ttl,
                (ttl / 3).max(Duration::from_millis(100)),
            )
            .with_lock()
    }

    async fn register(&self, reg: &Registration) -> Result<Lease> {
        let s = &self.inner;
        let key = s.layout.node_key(&reg.node);
        let value = String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned();
        let form = [("value", value), ("ttl", secs(s.cfg.node_ttl))];
        let r = s.call("register", Method::PUT, &key, &[], &form).await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) => Ok(Lease {
                id: n.created_index,
                ttl: Duration::from_secs(n.ttl.unwrap_or(0).max(1) as u64),
            }),
            _ => Err(s.unexpected("register", &r, &key)),
        }
    }

    async fn keep_alive(&self, lease: &Lease) -> Result<Duration> {
        let s = &self.inner;
        let key = s.layout.node_key(&s.node);
        let form = [
            ("refresh", "true".to_string()),
            ("prevExist", "true".to_string()),
            ("ttl", secs(s.cfg.node_ttl)),
        ];
        let r = s.call("keep_alive", Method::PUT, &key, &[], &form).await?;
        let ttl = match (&r.body.node, r.code()) {
            (Some(n), None) if n.created_index == lease.id => n.ttl.unwrap_or(0),
            // Another life of the key (someone deleted and wrote it again).
            (Some(_), None) => return Err(s.lease_lost("keep_alive", &r, &key)),
            (_, Some(KEY_NOT_FOUND)) => return Err(s.lease_lost("keep_alive", &r, &key)),
            _ => return Err(s.unexpected("keep_alive", &r, &key)),
        };
        if s.locked.load(Ordering::Relaxed) {
            // The lock lives as long as the node: refresh it while we hold it.
            let lock = [
                ("refresh", "true".to_string()),
                ("prevExist", "true".to_string()),
                ("prevValue", s.node.to_string()),
                ("ttl", secs(s.cfg.node_ttl)),
            ];
            let name = s.layout.lock_name();
            match s.call("keep_alive", Method::PUT, name, &[], &lock).await {
                Ok(r) if r.code().is_some() => {
                    s.locked.store(false, Ordering::Relaxed);
                    tracing::warn!(
                        backend = NAME,
                        key = name,
                        "the cluster lock is no longer held"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    backend = NAME,
                    key = name,
                    "refreshing the cluster lock: {e}"
                ),
            }
        }
        Ok(Duration::from_secs(ttl.max(0) as u64))
    }

    async fn refresh(&self, reg: &Registration, lease: &Lease) -> Result<()> {
        let s = &self.inner;
        let key = s.layout.node_key(&reg.node);
        let value = String::from_utf8_lossy(&encode_value(&reg.meta)).into_owned();
        // An update (prevExist=true) keeps the key's createdIndex, our incarnation; a key
        // that is gone must be registered anew.
        let form = [
            ("value", value),
            ("ttl", secs(s.cfg.node_ttl)),
            ("prevExist", "true".to_string()),
        ];
        let r = s.call("refresh", Method::PUT, &key, &[], &form).await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) if n.created_index == lease.id => Ok(()),
            (Some(_), None) | (_, Some(KEY_NOT_FOUND)) => Err(s.lease_lost("refresh", &r, &key)),
            _ => Err(s.unexpected("refresh", &r, &key)),
        }
    }

    async fn deregister(&self, lease: &Lease) -> Result<()> {
        let s = &self.inner;
        let key = s.layout.node_key(&s.node);
        let _ = lease; // v2 keys carry no lease: the key is the registration
        if s.locked.swap(false, Ordering::Relaxed) {
            // As a revoked v3 lease releases its lock, so does a clean leave here.
            let query = [("prevValue", s.node.to_string())];
            s.call(
                "deregister",
                Method::DELETE,
                s.layout.lock_name(),
                &query,
                &[],
            )
            .await?;
        }
        let r = s.call("deregister", Method::DELETE, &key, &[], &[]).await?;
        match r.code() {
            None | Some(KEY_NOT_FOUND) => Ok(()),
            _ => Err(s.unexpected("deregister", &r, &key)),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let s = &self.inner;
        let dir = s.layout.nodes_dir();
        let query = [
            ("recursive", "true".to_string()),
            ("quorum", "true".to_string()),
        ];
        let r = s.call("snapshot", Method::GET, dir, &query, &[]).await?;
        match (&r.body.node, r.code()) {
            (Some(n), None) => {
                let mut members = Vec::new();
                if n.dir {
                    members.extend(n.nodes.iter().filter_map(|c| s.member_of(c)));
                } else {
                    s.garbage.skip(
                        NAME,
                        dir.as_bytes(),
                        "a key where the nodes directory belongs",
                    );
                }
                Ok(Snapshot {
                    members,
                    revision: Revision(r.index),
                })
            }
            (_, Some(KEY_NOT_FOUND)) => {
                // No directory yet (EMQX's fix for emqx#1402): create it, then it is empty.
                let form = [("dir", "true".to_string())];
                let c = s.call("snapshot", Method::PUT, dir, &[], &form).await?;
                match c.code() {
                    None | Some(NODE_EXIST) | Some(NOT_A_FILE) => Ok(Snapshot {
                        members: Vec::new(),
                        revision: Revision(c.index.max(r.index)),
                    }),
                    _ => Err(s.unexpected("snapshot", &c, dir)),
                }
            }
            _ => Err(s.unexpected("snapshot", &r, dir)),
        }
    }

    fn watch(&self, after: Revision) -> BoxStream<Result<WatchBatch>> {
        let inner = self.inner.clone();
        let start = (Poll::Next(after.0 + 1), false);
        let stream = futures::stream::unfold(start, move |(mut state, announced)| {
            let inner = inner.clone();
            async move {
                loop {
                    state = match state {
                        Poll::Done => return None,
                        Poll::Next(index) => match inner.poll(index, after).await {
                            // The first established poll is announced at once (claiming no
                            // progress beyond `after`), so the engine knows the watch is up.
                            Ok((resp, ep)) if !announced && resp.status().is_success() => {
                                let up = WatchBatch {
                                    revision: after,
                                    changes: Vec::new(),
                                };
                                let next = Poll::Pending(index, Box::new(resp), ep);
                                return Some((Ok(up), (next, true)));
                            }
                            Ok((resp, ep)) => Poll::Pending(index, Box::new(resp), ep),
                            Err(e) => return Some((Err(e), (Poll::Done, announced))),
                        },
                        Poll::Pending(index, resp, ep) => match inner.finish(*resp, ep).await {
                            Ok(None) => Poll::Next(index),
                            Ok(Some(b)) => {
                                let next = Poll::Next(b.revision.0 + 1);
                                return Some((Ok(b), (next, announced)));
                            }
                            Err(e) => return Some((Err(e), (Poll::Done, announced))),
                        },
                    };
                }
            }
        });
        Box::pin(stream)
    }

    async fn lock(&self, lease: &Lease, timeout: Duration) -> Result<LockToken> {
        let s = &self.inner;
        let timeout = if timeout.is_zero() {
            s.cfg.lock_timeout
        } else {
            timeout
        };
        let name = s.layout.lock_name();
        let me = s.node.to_string();
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || {
            s.error(
                ErrorKind::LockTimeout,
                "lock",
                s.cfg.servers.first().map_or("", |x| x.as_str()),
                format!("the cluster lock {name} was not acquired within {timeout:?}"),
            )
            .with_key(name)
        };
        loop {
            let form = [
                ("value", me.clone()),
                ("prevExist", "false".to_string()),
                ("ttl", secs(s.cfg.node_ttl)),
            ];
            let put = s.call("lock", Method::PUT, name, &[], &form);
            let r = tokio::time::timeout_at(deadline, put)
                .await
                .map_err(|_| timed_out())??;
            let held_by_me = |n: &Node| n.value.as_deref() == Some(me.as_str());
            match (&r.body.node, r.code()) {
                (Some(n), None) => {
                    s.locked.store(true, Ordering::Relaxed);
                    return Ok(LockToken {
                        key: name.to_string(),
                        lease: lease.id,
                        fence: Revision(n.modified_index),
                    });
                }
                (_, Some(NODE_EXIST)) => {
                    // Taken: ours already (a second call), or wait until it changes.
                    let get = s.call("lock", Method::GET, name, &[], &[]);
                    let cur = tokio::time::timeout_at(deadline, get)
                        .await
                        .map_err(|_| timed_out())??;
                    if let (Some(n), None) = (&cur.body.node, cur.code()) {
                        if held_by_me(n) {
                            s.locked.store(true, Ordering::Relaxed);
                            return Ok(LockToken {
                                key: name.to_string(),
                                lease: lease.id,
                                fence: Revision(n.modified_index),
                            });
                        }
                    }
                    let wait_index = cur.index.max(r.body.index.unwrap_or(0)) + 1;
                    let query = [
                        ("wait", "true".to_string()),
                        ("waitIndex", wait_index.to_string()),
                    ];
                    let wait = async {
                        let (resp, ep) =
                            s.send("lock", Method::GET, name, &query, &[], true).await?;
                        s.read("lock", resp, ep).await
                    };
                    tokio::time::timeout_at(deadline, wait)
                        .await
                        .map_err(|_| timed_out())??;
                }
                _ => return Err(s.unexpected("lock", &r, name)),
            }
        }
    }

    async fn unlock(&self, token: &LockToken) -> Result<()> {
        let s = &self.inner;
        s.locked.store(false, Ordering::Relaxed);
        // Compare-and-delete: only our own lock.
        let query = [("prevValue", s.node.to_string())];
        let r = s
            .call("unlock", Method::DELETE, &token.key, &query, &[])
            .await?;
        match r.code() {
            None | Some(KEY_NOT_FOUND) | Some(TEST_FAILED) => Ok(()),
            _ => Err(s.unexpected("unlock", &r, &token.key)),
        }
    }

    fn invalid_entries(&self) -> u64 {
        self.inner.garbage.count()
    }
}
