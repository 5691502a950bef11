//! What the v2 API sends: the JSON body of an answer (a success or an error), etcd's error
//! codes, and the `X-Etcd-Index` header.

use std::time::Duration;

use autocluster_plugin::{Error, ErrorKind};
use reqwest::StatusCode;
use serde::Deserialize;

use super::client::error;

/// v2 error codes (etcd's `error/error.go`).
pub(super) const KEY_NOT_FOUND: u64 = 100;
pub(super) const TEST_FAILED: u64 = 101;
pub(super) const NOT_A_FILE: u64 = 102;
pub(super) const NODE_EXIST: u64 = 105;
pub(super) const EVENT_INDEX_CLEARED: u64 = 401;

/// A v2 answer: the JSON body of a success or of an error.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Body {
    pub(super) action: Option<String>,
    pub(super) node: Option<Node>,
    #[serde(rename = "prevNode")]
    pub(super) prev_node: Option<Node>,
    #[serde(rename = "errorCode")]
    pub(super) error_code: Option<u64>,
    pub(super) message: Option<String>,
    pub(super) index: Option<u64>,
}

/// A key or directory.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Node {
    pub(super) key: Option<String>,
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) dir: bool,
    #[serde(default)]
    pub(super) nodes: Vec<Node>,
    pub(super) ttl: Option<i64>,
    #[serde(rename = "createdIndex", default)]
    pub(super) created_index: u64,
    #[serde(rename = "modifiedIndex", default)]
    pub(super) modified_index: u64,
}

/// One answer: HTTP status, `X-Etcd-Index`, body, and the endpoint that gave it.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) index: u64,
    pub(super) body: Body,
    pub(super) endpoint: String,
}

impl Reply {
    /// etcd's error code, if the answer is an error.
    pub(super) fn code(&self) -> Option<u64> {
        self.body.error_code
    }

    /// An answer operation `op` on `key` did not expect.
    pub(super) fn unexpected(&self, op: &'static str, key: &str) -> Error {
        let kind = match self.code() {
            Some(EVENT_INDEX_CLEARED) => ErrorKind::Compacted,
            _ => ErrorKind::Other,
        };
        error(
            kind,
            op,
            &self.endpoint,
            format!(
                "etcd answered {} (error code {}): {}",
                self.status,
                self.code().map_or("none".to_string(), |c| c.to_string()),
                self.body.message.as_deref().unwrap_or("")
            ),
        )
        .with_key(key)
    }

    /// The node's key is gone, or is another life of it.
    pub(super) fn lease_lost(&self, op: &'static str, key: &str) -> Error {
        error(
            ErrorKind::LeaseLost,
            op,
            &self.endpoint,
            "the registration is gone (its TTL ran out, it was deleted, or etcd was replaced)"
                .into(),
        )
        .with_key(key)
    }
}

/// The `X-Etcd-Index` of an answer (0 when absent).
pub(super) fn etcd_index(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("x-etcd-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A TTL as the v2 API takes it: whole seconds, at least 1.
pub(super) fn secs(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}
