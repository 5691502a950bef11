//! Two processes with the same `node.name`: the one that finds the node's key held by another
//! live registration refuses to take it over (a `Conflict` error, not retried), and leaves a
//! short-lived marker under `/<prefix>/<cluster>/clash/<node>`; the holder's watch sees the
//! marker and logs the attempt, keeping its key. v3 and v2 share the words.

use std::time::Duration;

use autocluster_plugin::log::{Escaped, RateLimit};
use autocluster_plugin::{Error, ErrorKind, NodeName};

use crate::keys::decode_value;
use crate::NAME;

/// The error of a process that found `node`'s key (`key`) held by `holder` (`lease 1a2b`,
/// `createdIndex 42`), with `left` seconds to live when known.
pub(crate) fn conflict(
    op: &'static str,
    node: &NodeName,
    key: &str,
    holder: &str,
    left: Option<i64>,
) -> Error {
    let clears_in = left
        .filter(|&s| s > 0)
        .map(|s| std::time::Duration::from_secs(s as u64));
    let left = match left {
        Some(s) if s > 0 => format!(", which expires in {s} s unless its holder renews it"),
        _ => String::new(),
    };
    let e = Error::new(
        ErrorKind::Conflict,
        format!(
            "node {node} is already registered by another process: {key} is held by {holder} \
             (another incarnation){left}. Two processes must not share node.name: stop the other \
             one, or give this one another name (a node that crashed releases its name when its \
             registration expires, within node_ttl)"
        ),
    )
    // Not retried: this node must not start while the other holds the name.
    .with_retryable(false)
    .with_backend(NAME)
    .with_operation(op)
    .with_key(key);
    match clears_in {
        Some(d) => e.with_clears_in(d),
        None => e,
    }
}

/// The holder's log of the attempts it sees, at most one line per [`Attempts::EVERY`] (a
/// refused process restarted in a loop writes a marker each time); the count of the others
/// goes with the next line.
#[derive(Debug)]
pub(crate) struct Attempts {
    limit: RateLimit,
    /// The markers this process left itself (`lease 1a2b`): a refused process's own watch
    /// sees its marker, which is not another process's attempt.
    own: std::sync::Mutex<Vec<String>>,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            limit: RateLimit::new(Attempts::EVERY),
            own: Default::default(),
        }
    }
}

impl Attempts {
    const EVERY: Duration = Duration::from_secs(10);
    /// How many of its own markers a process remembers (one per refused attempt).
    const OWN: usize = 8;

    /// Records that this process leaves a marker under `other` (`lease 1a2b`).
    pub(crate) fn left_own(&self, other: &str) {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        if own.len() == Self::OWN {
            own.remove(0);
        }
        own.push(other.to_string());
    }

    fn is_own(&self, other: &str) -> bool {
        let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.iter().any(|o| o == other)
    }

    /// Logs a marker another process left for `node`: who tried, as it described itself
    /// (its registration metadata, `value`, from outside: escaped), under `other`
    /// (`lease 1a2b`).
    pub(crate) fn log(&self, node: &NodeName, key: &[u8], value: &[u8], other: &str) {
        if self.is_own(other) {
            return;
        }
        let Some(suppressed) = self.limit.allow() else {
            return;
        };
        let addrs = match decode_value(node, value) {
            Ok(Some(meta)) if !meta.addrs.is_empty() => {
                format!(" at {}", Escaped::new(meta.addrs.join(",")))
            }
            _ => String::new(),
        };
        let more = match suppressed {
            0 => String::new(),
            n => format!(" ({n} more attempts not logged)"),
        };
        tracing::error!(
            backend = NAME,
            node = %node,
            key = %Escaped::new(String::from_utf8_lossy(key)),
            "another process tried to register this node's name ({other}{addrs}) and was \
             refused: this node keeps its registration. Two processes must not share \
             node.name{more}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflict_names_the_holder_and_is_not_retried() {
        let node = NodeName::parse("emqx1@h").unwrap();
        let e = conflict(
            "register",
            &node,
            "/emqxcl/emqxcl/nodes/emqx1@h",
            "lease 1a2b",
            Some(42),
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(!e.is_retryable());
        let text = e.to_string();
        for part in ["emqx1@h", "lease 1a2b", "42 s", "node.name"] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn a_marker_this_process_left_is_not_another_attempt() {
        let a = Attempts::default();
        a.left_own("lease 1a2b");
        assert!(a.is_own("lease 1a2b"));
        assert!(!a.is_own("lease 3c4d"));
        for i in 0..Attempts::OWN {
            a.left_own(&format!("lease {i:x}0"));
        }
        assert!(!a.is_own("lease 1a2b"), "only the last ones are kept");
    }
}
