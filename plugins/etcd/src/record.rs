//! Cluster records (`/<prefix>/<cluster>/<name>`, no lease): created only if absent, in one
//! atomic step. v3: a transaction on the key's create revision; v2: `PUT ?prevExist=false`.

use autocluster_plugin::{Error, ErrorKind, Result};

use crate::keys::Layout;
use crate::NAME;

/// The key of record `name`; `name` is one path segment of letters, digits, `_` and `-`.
pub(crate) fn record_key(layout: &Layout, op: &'static str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name != "nodes"
        && name != "lock"
        && name != "clash";
    if !ok {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{name:?} is not a record name (letters, digits, _ and -, not nodes, lock or clash)"),
        )
        .with_backend(NAME)
        .with_operation(op));
    }
    Ok(format!("{}/{name}", layout.cluster_dir()))
}
