//! [`ConfigError`]: every problem found in a configuration, each located.

use std::fmt;

use autocluster_plugin::{Error, ErrorKind, Origin};

/// A configuration that cannot be used. It lists every problem found, not just the first,
/// each naming where (`node.conf:4`, or the environment variable), the key, the value and
/// the expected form:
///
/// ```text
/// node.conf:4: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// An error with these problems (one line each).
    pub fn new(problems: Vec<String>) -> Self {
        ConfigError { problems }
    }

    /// A single problem.
    pub fn one(problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![problem.into()],
        }
    }

    /// Every problem, one line each, in file order.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.problems).finish()
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::new(ErrorKind::Config, e.to_string())
    }
}

/// Messages (problems, warnings) collected while loading, put in file order at the end: file
/// lines first, then environment variables, then the rest (a required key that is missing).
#[derive(Debug, Default)]
pub(crate) struct Ordered {
    list: Vec<((u8, usize), String)>,
}

impl Ordered {
    /// A message located at `origin`.
    pub fn push(&mut self, origin: &Origin, text: String) {
        let order = match origin {
            Origin::File { line, .. } => (0, *line),
            Origin::Env { .. } => (1, 0),
            _ => (2, 0),
        };
        self.list.push((order, text));
    }

    /// A message with no single place (a required key that is not set).
    pub fn push_unlocated(&mut self, text: String) {
        self.list.push(((2, 0), text));
    }

    /// `Err` with every message as a problem, in order, if there is any.
    pub fn check(&mut self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        Err(ConfigError::new(std::mem::take(self).into_sorted()))
    }

    /// Every message, in order.
    pub fn into_sorted(mut self) -> Vec<String> {
        self.list.sort_by_key(|(order, _)| *order);
        self.list.into_iter().map(|(_, t)| t).collect()
    }
}
