//! Native errors (gRPC statuses, transport and TLS failures, HTTP errors) mapped into
//! `autocluster_plugin::Error` with a kind the engine acts on and the context a user needs.

use autocluster_plugin::{Error, ErrorKind};
use etcd_client::Error as EtcdError;
use tonic_code::{Code, UNAVAILABLE, UNKNOWN};

use crate::config::EtcdConfig;
use crate::NAME;

/// `tonic` is not a direct dependency; its status code is reached through etcd-client.
mod tonic_code {
    pub type Code = i32;
    pub const UNKNOWN: Code = 2;
    pub const CANCELLED: Code = 1;
    pub const INVALID_ARGUMENT: Code = 3;
    pub const DEADLINE_EXCEEDED: Code = 4;
    pub const NOT_FOUND: Code = 5;
    pub const PERMISSION_DENIED: Code = 7;
    pub const FAILED_PRECONDITION: Code = 9;
    pub const OUT_OF_RANGE: Code = 11;
    pub const UNAVAILABLE: Code = 14;
    pub const UNAUTHENTICATED: Code = 16;
}

/// The text of an error and all its sources, joined.
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = s.source();
    }
    text
}

/// What a TLS failure was, from the error text rustls and tonic produce; `None` when the
/// text is not about TLS.
pub(crate) fn tls_failure(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if says(&["unknownissuer", "unknown issuer", "unknown ca"]) && !t.contains("alert") {
        Some("the server's certificate is not signed by a trusted CA (check cluster.etcd.ssl.cacertfile)")
    } else if says(&[
        "notvalidforname",
        "not valid for name",
        "certificate is not valid for",
    ]) {
        Some("the server's certificate does not name this host")
    } else if (says(&["expired", "notvalidyet", "not valid yet"])) && !t.contains("alert") {
        Some("the server's certificate has expired or is not valid yet")
    } else if says(&["alert"]) && says(&["certificate", "unknownca", "unknown ca", "handshake"]) {
        Some("the server refused our client certificate (check cluster.etcd.ssl.certfile, keyfile, and the server's CA)")
    } else if says(&[
        "invalid peer certificate",
        "tls",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
        "certificate",
    ]) {
        Some("the TLS handshake failed")
    } else {
        None
    }
}

/// Maps an etcd-client error of operation `op`.
///
/// `fresh_tls`: the endpoint speaks TLS and never answered this client yet. A server that
/// refuses our client certificate under TLS 1.3 does so after the client finished its side
/// of the handshake, so the client only sees the connection close; on a connection that
/// never worked, that is what it means.
pub(crate) fn from_etcd(
    e: EtcdError,
    op: &'static str,
    cfg: &EtcdConfig,
    endpoint: &str,
    fresh_tls: bool,
) -> Error {
    let text = chain_text(&e);
    let endpoints = endpoint.to_string();
    let user = cfg.username.as_deref().unwrap_or("");
    let (kind, message) = match &e {
        EtcdError::GRpcStatus(status) => {
            let msg = status.message();
            let code = status.code() as Code;
            // A transport failure surfaces as a status (often `Unknown`) with a source.
            let code = if code == UNKNOWN && std::error::Error::source(status).is_some() {
                UNAVAILABLE
            } else {
                code
            };
            status_kind(code, msg, &text, user, &endpoints)
        }
        EtcdError::TransportError(_) | EtcdError::IoError(_) => match tls_failure(&text) {
            Some(why) => (
                ErrorKind::Tls,
                format!("TLS with {endpoints} failed: {why}"),
            ),
            None => (
                ErrorKind::Unavailable,
                format!("cannot reach etcd at {endpoints}"),
            ),
        },
        EtcdError::LeaseKeepAliveError(m) if m.contains("not found") => (
            ErrorKind::LeaseLost,
            "the lease is gone (expired or revoked)".to_string(),
        ),
        EtcdError::LeaseKeepAliveError(_) | EtcdError::WatchError(_) => (
            ErrorKind::Unavailable,
            format!("the stream to etcd at {endpoints} broke"),
        ),
        EtcdError::InvalidArgs(_) | EtcdError::InvalidUri(_) | EtcdError::EndpointError(_) => (
            ErrorKind::Config,
            "the etcd client refused its settings".to_string(),
        ),
        _ => (ErrorKind::Other, "etcd client error".to_string()),
    };
    let (kind, message) = if kind == ErrorKind::Unavailable
        && fresh_tls
        && ["connection closed", "broken pipe", "connection reset"]
            .iter()
            .any(|w| text.to_ascii_lowercase().contains(w))
    {
        (
            ErrorKind::Tls,
            format!("TLS with {endpoints} failed: the server closed the connection right after the handshake; it most likely refused our client certificate (check cluster.etcd.ssl.certfile and keyfile, and the CA the server trusts)"),
        )
    } else {
        (kind, message)
    };
    // The source's text never holds the password: etcd and tonic do not echo credentials.
    Error::new(kind, message)
        .with_backend(NAME)
        .with_operation(op)
        .with_endpoint(endpoints)
        .with_source(e)
}

fn status_kind(
    code: Code,
    msg: &str,
    text: &str,
    user: &str,
    endpoints: &str,
) -> (ErrorKind, String) {
    use tonic_code::*;
    let lower = msg.to_ascii_lowercase();
    if lower.contains("authentication failed")
        || lower.contains("invalid auth token")
        || lower.contains("user name not found")
        || lower.contains("user name is empty")
        || lower.contains("authentication is not enabled")
        || code == UNAUTHENTICATED
    {
        let why = if lower.contains("not enabled") {
            " (authentication is not enabled on the server, but cluster.etcd.username is set)"
        } else {
            ""
        };
        return (
            ErrorKind::Unauthenticated,
            format!("etcd authentication failed for user {user}{why}"),
        );
    }
    match code {
        PERMISSION_DENIED => (
            ErrorKind::PermissionDenied,
            format!("etcd denied the request for user {user}: permission denied"),
        ),
        NOT_FOUND if lower.contains("lease") => (
            ErrorKind::LeaseLost,
            "the lease is gone (expired, revoked, or etcd was replaced)".to_string(),
        ),
        OUT_OF_RANGE if lower.contains("compacted") => (
            ErrorKind::Compacted,
            "the requested revision has been compacted".to_string(),
        ),
        DEADLINE_EXCEEDED => (
            ErrorKind::Timeout,
            "etcd did not answer in time".to_string(),
        ),
        UNAVAILABLE | CANCELLED => match tls_failure(text) {
            Some(why) => (
                ErrorKind::Tls,
                format!("TLS with {endpoints} failed: {why}"),
            ),
            None if lower.contains("no leader") => {
                (ErrorKind::Unavailable, "etcd has no leader".to_string())
            }
            None => (
                ErrorKind::Unavailable,
                format!("cannot reach etcd at {endpoints}"),
            ),
        },
        INVALID_ARGUMENT | FAILED_PRECONDITION => {
            (ErrorKind::Other, format!("etcd refused the request: {msg}"))
        }
        _ => (ErrorKind::Other, format!("etcd error: {msg}")),
    }
}

/// Maps a reqwest error of the v2 API.
pub(crate) fn from_http(e: reqwest::Error, op: &'static str, endpoint: &str) -> Error {
    let text = chain_text(&e);
    let (kind, message) = if e.is_timeout() {
        (
            ErrorKind::Timeout,
            "etcd did not answer in time".to_string(),
        )
    } else if let Some(why) = tls_failure(&text).filter(|_| e.is_connect() || e.is_request()) {
        (ErrorKind::Tls, format!("TLS with {endpoint} failed: {why}"))
    } else if e.is_connect() || e.is_request() || e.is_body() {
        (
            ErrorKind::Unavailable,
            format!("cannot reach etcd at {endpoint}"),
        )
    } else if e.is_decode() {
        // The body is read as bytes (the JSON is parsed apart, `parse_body`): reqwest calls
        // a body that broke off (etcd stopped, the connection closed) a decode error.
        (
            ErrorKind::Unavailable,
            format!("etcd at {endpoint} stopped in the middle of its answer"),
        )
    } else {
        (ErrorKind::Other, "HTTP error".to_string())
    };
    // reqwest puts the URL in its text; ours never carries credentials.
    Error::new(kind, message)
        .with_backend(NAME)
        .with_operation(op)
        .with_endpoint(endpoint)
        .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_texts() {
        assert!(tls_failure("invalid peer certificate: UnknownIssuer")
            .unwrap()
            .contains("trusted CA"));
        assert!(tls_failure("invalid peer certificate: Expired")
            .unwrap()
            .contains("expired"));
        assert!(tls_failure("received fatal alert: BadCertificate")
            .unwrap()
            .contains("client certificate"));
        assert_eq!(tls_failure("tcp connect error: Connection refused"), None);
    }
}
