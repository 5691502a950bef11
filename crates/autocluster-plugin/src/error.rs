//! One error type for every backend: a kind, a retryable flag and context.

use std::fmt;

/// What went wrong, broadly; the engine decides what to do by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is wrong; retrying will not help.
    Config,
    /// The backend could not be reached or did not answer (connection refused, no leader).
    Unavailable,
    /// A call did not finish within its bound.
    Timeout,
    /// The backend refused our credentials (wrong password, bad client certificate).
    Unauthenticated,
    /// The backend accepted our credentials but refused the operation.
    PermissionDenied,
    /// TLS failed: an unknown CA, an expired certificate, a handshake error.
    Tls,
    /// The registration's lease is gone (expired, revoked, or the backend was wiped); the
    /// engine registers again.
    LeaseLost,
    /// The history a watch asked for is gone (compacted, or the backend's revision went
    /// backwards): the engine resyncs from a fresh snapshot.
    Compacted,
    /// The backend does not do this (a lock on a backend without one).
    Unsupported,
    /// Data under our keys or on the wire that we cannot read (garbage is counted and
    /// skipped); as a call's error, an answer that could not be read (a body cut short), worth
    /// another try.
    InvalidData,
    /// A lock was not acquired in time.
    LockTimeout,
    /// Another process claims this node's name (a copied configuration, a second agent):
    /// the registration is contested. Retryable by default: the clash ends when the other one
    /// leaves or stops, and this node keeps its registration alive meanwhile (multicast). A
    /// backend that refuses the registration outright, because another live registration
    /// holds the name (etcd), marks its error not retryable: this node must not start.
    Conflict,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether an error of this kind is, by default, worth retrying.
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::LeaseLost
                | ErrorKind::Compacted
                | ErrorKind::Tls
                | ErrorKind::Unauthenticated
                | ErrorKind::PermissionDenied
                | ErrorKind::LockTimeout
                | ErrorKind::Conflict
                | ErrorKind::InvalidData
                | ErrorKind::Other
        )
    }

    /// A short lower-case name, used in logs and metric labels (`unavailable`, `lease_lost`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Tls => "tls",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::Compacted => "compacted",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidData => "invalid_data",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Other => "other",
        }
    }
}

/// Every kind, for reading one back from its name.
const ALL: [ErrorKind; 13] = [
    ErrorKind::Conflict,
    ErrorKind::Config,
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::Unauthenticated,
    ErrorKind::PermissionDenied,
    ErrorKind::Tls,
    ErrorKind::LeaseLost,
    ErrorKind::Compacted,
    ErrorKind::Unsupported,
    ErrorKind::InvalidData,
    ErrorKind::LockTimeout,
    ErrorKind::Other,
];

impl std::str::FromStr for ErrorKind {
    type Err = std::convert::Infallible;

    /// The kind named as [`ErrorKind::as_str`] names it; a name this version does not know
    /// is [`ErrorKind::Other`].
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(ErrorKind::Other))
    }
}

/// In JSON, the kind's name (`"lease_lost"`).
impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(name.parse().unwrap_or(ErrorKind::Other))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an error happened: the backend, the operation, the key or endpoint involved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The backend's name (`etcd`, `dns`).
    pub backend: Option<&'static str>,
    /// The operation (`register`, `keep_alive`, `snapshot`, `watch`, `lock`).
    pub operation: Option<&'static str>,
    /// The key, file or record involved (`/emqxcl/emqxcl/nodes/emqx1@host`,
    /// `cluster.etcd.ssl.cacertfile`).
    pub key: Option<String>,
    /// The endpoint involved (`http://127.0.0.1:2379`).
    pub endpoint: Option<String>,
}

/// The error every backend returns and the engine acts on. One pointer wide.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    retryable: bool,
    message: String,
    context: Context,
    clears_in: Option<std::time::Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; retryable as the kind is by default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            retryable: kind.default_retryable(),
            message: message.into(),
            context: Context::default(),
            clears_in: None,
            source: None,
        }))
    }

    /// Sets the backend in the context.
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.0.context.backend = Some(backend);
        self
    }

    /// Sets the operation in the context.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.0.context.operation = Some(operation);
        self
    }

    /// Sets the key (or file, or record) in the context.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.0.context.key = Some(key.into());
        self
    }

    /// Sets the endpoint in the context.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.0.context.endpoint = Some(endpoint.into());
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// For a [`ErrorKind::Conflict`]: the holder's registration runs out within `d` unless its
    /// holder renews it (as the backend read it). A crashed holder's lease can outlive one TTL
    /// from the first refusal: etcd extends every lease at a leader election.
    pub fn with_clears_in(mut self, d: std::time::Duration) -> Self {
        self.0.clears_in = Some(d);
        self
    }

    /// See [`Error::with_clears_in`].
    pub fn clears_in(&self) -> Option<std::time::Duration> {
        self.0.clears_in
    }

    /// Overrides whether the engine should retry.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.0.retryable = retryable;
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether retrying may help.
    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.0.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0.context;
        match (c.backend, c.operation) {
            (Some(b), Some(o)) => write!(f, "{b} {o}: ")?,
            (Some(b), None) => write!(f, "{b}: ")?,
            (None, Some(o)) => write!(f, "{o}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.0.message)?;
        if let Some(e) = c
            .endpoint
            .as_ref()
            .filter(|e| !self.0.message.contains(e.as_str()))
        {
            write!(f, " (endpoint {e})")?;
        }
        if let Some(k) = c
            .key
            .as_ref()
            .filter(|k| !self.0.message.contains(k.as_str()))
        {
            write!(f, " (key {k})")?;
        }
        if let Some(s) = &self.0.source {
            let s = s.to_string();
            if !s.is_empty() && !self.0.message.contains(&s) {
                write!(f, ": {s}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("retryable", &self.0.retryable)
            .field("message", &self.0.message)
            .field("context", &self.0.context)
            .field("clears_in", &self.0.clears_in)
            .field("source", &self.0.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        // A kind added later stops this match compiling until it has a place in `ALL`.
        let position = |k: ErrorKind| match k {
            ErrorKind::Conflict => 0,
            ErrorKind::Config => 1,
            ErrorKind::Unavailable => 2,
            ErrorKind::Timeout => 3,
            ErrorKind::Unauthenticated => 4,
            ErrorKind::PermissionDenied => 5,
            ErrorKind::Tls => 6,
            ErrorKind::LeaseLost => 7,
            ErrorKind::Compacted => 8,
            ErrorKind::Unsupported => 9,
            ErrorKind::InvalidData => 10,
            ErrorKind::LockTimeout => 11,
            ErrorKind::Other => 12,
        };
        assert_eq!(ALL.len(), position(ErrorKind::Other) + 1);
        for (i, k) in ALL.into_iter().enumerate() {
            assert_eq!(position(k), i);
            assert_eq!(k.as_str().parse::<ErrorKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), k);
        }
        assert_eq!(
            "from_a_later_version".parse::<ErrorKind>().unwrap(),
            ErrorKind::Other
        );
    }

    #[test]
    fn display_carries_context() {
        let e = Error::new(ErrorKind::Unavailable, "connection refused")
            .with_backend("etcd")
            .with_operation("register")
            .with_endpoint("http://127.0.0.1:2379");
        assert_eq!(
            e.to_string(),
            "etcd register: connection refused (endpoint http://127.0.0.1:2379)"
        );
        assert!(e.is_retryable());
        assert!(!Error::new(ErrorKind::Config, "x").is_retryable());
    }
}
