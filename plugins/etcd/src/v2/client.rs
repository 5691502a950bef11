//! The v2 HTTP client: one reqwest client (TLS, basic authentication) over the configured
//! endpoints, with the failover shared with v3, and the errors every v2 answer can carry.

use std::time::Duration;

use autocluster_plugin::{Error, ErrorKind, Result};
use reqwest::{Method, StatusCode};

use super::wire::{etcd_index, Body, Reply};
use crate::config::EtcdConfig;
use crate::error::from_http;
use crate::failover::{Bound, Endpoints};
use crate::NAME;

/// A request: method, key (below `/v2/keys`), query and form.
pub(super) struct Request<'a> {
    pub(super) method: Method,
    pub(super) key: &'a str,
    pub(super) query: &'a [(&'a str, String)],
    pub(super) form: &'a [(&'a str, String)],
}

impl<'a> Request<'a> {
    /// `method` on `key`, without query or form.
    pub(super) fn new(method: Method, key: &'a str) -> Request<'a> {
        Request {
            method,
            key,
            query: &[],
            form: &[],
        }
    }

    /// With a query.
    pub(super) fn query(self, query: &'a [(&'a str, String)]) -> Request<'a> {
        Request { query, ..self }
    }

    /// With a form body.
    pub(super) fn form(self, form: &'a [(&'a str, String)]) -> Request<'a> {
        Request { form, ..self }
    }
}

/// The HTTP client of the v2 API.
#[derive(Debug)]
pub(super) struct Client {
    cfg: EtcdConfig,
    http: reqwest::Client,
    endpoints: Endpoints,
}

impl Client {
    /// Builds the HTTP client (TLS files were checked by the config); connects on first use.
    pub(super) fn new(cfg: EtcdConfig) -> Result<Client> {
        let timeouts = cfg.timeouts();
        let mut b = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
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
        let endpoints = Endpoints::new(cfg.servers.clone(), timeouts.call);
        Ok(Client {
            cfg,
            http,
            endpoints,
        })
    }

    /// The configuration.
    pub(super) fn cfg(&self) -> &EtcdConfig {
        &self.cfg
    }

    /// The endpoint calls go to now.
    pub(super) fn current_endpoint(&self) -> &str {
        self.endpoints.current()
    }

    /// An ordinary request and its answer, failing over between endpoints.
    pub(super) async fn call(&self, op: &'static str, req: Request<'_>) -> Result<Reply> {
        let req = &req;
        self.endpoints
            .call(op, Bound::Share, |idx| async move {
                let resp = self.send(op, idx, req, false).await?;
                self.read(op, resp, self.endpoints.url(idx).to_string())
                    .await
            })
            .await
    }

    /// Starts a long poll (`wait=true`), failing over between endpoints until one sent the
    /// headers; the body, read with [`Client::read`], comes with the change.
    pub(super) async fn open(
        &self,
        op: &'static str,
        req: Request<'_>,
    ) -> Result<(reqwest::Response, String)> {
        let req = &req;
        self.endpoints
            .call(op, Bound::Share, |idx| async move {
                let resp = self.send(op, idx, req, true).await?;
                Ok((resp, self.endpoints.url(idx).to_string()))
            })
            .await
    }

    /// Sends `req` to endpoint `idx`; returns once the headers are in.
    async fn send(
        &self,
        op: &'static str,
        idx: usize,
        req: &Request<'_>,
        long_poll: bool,
    ) -> Result<reqwest::Response> {
        let endpoint = self.endpoints.url(idx);
        let mut r = self
            .http
            .request(req.method.clone(), format!("{endpoint}/v2/keys{}", req.key))
            .query(req.query);
        if !req.form.is_empty() {
            r = r.form(req.form);
        }
        // Long polls have no bound of their own: the engine bounds the stream.
        if !long_poll {
            r = r.timeout(self.cfg.timeouts().request);
        }
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            r = r.basic_auth(u, Some(p));
        }
        r.send().await.map_err(|e| from_http(e, op, endpoint))
    }

    /// Reads the JSON body of `resp`, and maps the errors every operation shares.
    pub(super) async fn read(
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
        let body = parse_body(op, status, &bytes, &endpoint)?;
        let user = self.cfg.username.as_deref().unwrap_or("");
        match status {
            StatusCode::UNAUTHORIZED => Err(error(
                ErrorKind::Unauthenticated,
                op,
                &endpoint,
                format!("etcd authentication failed for user {user}"),
            )),
            StatusCode::FORBIDDEN => Err(error(
                ErrorKind::PermissionDenied,
                op,
                &endpoint,
                format!("etcd denied the request for user {user}: permission denied"),
            )),
            s if s.is_server_error() && body.error_code.is_none_or(|c| c >= 300) => Err(error(
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
}

/// The JSON body of an answer; an answer that is not JSON is an error that says what it was.
fn parse_body(op: &'static str, status: StatusCode, bytes: &[u8], endpoint: &str) -> Result<Body> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default());
    }
    match serde_json::from_slice(bytes) {
        Ok(b) => Ok(b),
        Err(_) if status == StatusCode::NOT_FOUND => Err(error(
            ErrorKind::Unsupported,
            op,
            endpoint,
            format!("etcd at {endpoint} does not serve the v2 API (etcd 3.4 and 3.5 need --enable-v2; 3.6 removed it): use cluster.etcd.api = v3"),
        )),
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            let kind = if status.is_server_error() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::InvalidData
            };
            Err(error(
                kind,
                op,
                endpoint,
                format!("etcd answered {status}: {text}"),
            ))
        }
    }
}

/// An error of operation `op` at `endpoint`.
pub(super) fn error(kind: ErrorKind, op: &'static str, endpoint: &str, message: String) -> Error {
    Error::new(kind, message)
        .with_backend(NAME)
        .with_operation(op)
        .with_endpoint(endpoint)
}

fn config_error(key: &str, message: String) -> Error {
    Error::new(ErrorKind::Config, format!("cluster.etcd.{key}: {message}"))
        .with_backend(NAME)
        .with_key(format!("cluster.etcd.{key}"))
}
