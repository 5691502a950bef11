//! Between dotted keys and the `config` crate's nested tables.
//!
//! A full emqx.conf has keys that are both a leaf and a table
//! (`listener.tcp.external = 0.0.0.0:1883` and `listener.tcp.external.acceptors = 8`). Such a
//! key's own value is kept under the empty sub-key `""`, so nothing is lost or refused, and
//! [`flatten`] turns it back into `listener.tcp.external`.
//!
//! A `config` value's origin string only says which source it came from
//! ([`FROM_FILE`](super::source::FROM_FILE) or the environment); where in the file is kept as
//! data by [`FileSource`](super::source::FileSource).

use std::collections::BTreeMap;

use config::{Map, Value, ValueKind};

/// The deepest nesting accepted (parts of a dotted key, tables in tables, lists in lists).
/// Deeper input is refused by the readers, before it reaches the `config` crate, whose merging
/// recurses.
pub const MAX_DEPTH: usize = 32;

/// `key` (dotted, as written) appended to `prefix`: dotted words with no empty part, the
/// form every key takes on its way to the `config` crate, so that [`flatten`] gives it back.
pub fn join(prefix: &str, key: &str) -> String {
    let mut out = prefix.to_string();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

/// Why `key` cannot be a key, if it cannot: a bracket would reach the `config` crate's path
/// syntax, which reads `a[9999999999999]` as an index into a list of that length.
pub fn refuse(key: &str) -> Option<String> {
    key.contains(['[', ']'])
        .then(|| format!("malformed key {key:?}: a key has no brackets"))
}

/// The number of parts of a key made by [`join`].
pub fn depth(key: &str) -> usize {
    if key.is_empty() {
        0
    } else {
        key.split('.').count()
    }
}

/// Inserts `value` at the dotted `key`, nesting tables; a key that is both a leaf and a table
/// keeps its leaf under `""`.
pub fn insert(root: &mut Map<String, Value>, key: &str, value: Value) {
    let mut parts = key.split('.');
    let Some(first) = parts.next() else { return };
    let mut table = root;
    let mut name = first;
    for next in parts {
        let slot = table
            .entry(name.to_string())
            .or_insert_with(|| Value::new(None, Map::<String, Value>::new()));
        if !matches!(slot.kind, ValueKind::Table(_)) {
            let leaf = std::mem::replace(slot, Value::new(None, Map::<String, Value>::new()));
            if let ValueKind::Table(t) = &mut slot.kind {
                t.insert(String::new(), leaf);
            }
        }
        let ValueKind::Table(t) = &mut slot.kind else {
            return;
        };
        table = t;
        name = next;
    }
    match table.get_mut(name) {
        Some(Value {
            kind: ValueKind::Table(t),
            ..
        }) => {
            t.insert(String::new(), value);
        }
        _ => {
            table.insert(name.to_string(), value);
        }
    }
}

/// A flattened value: the text and the source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat {
    /// The value as text (lists joined with `, `).
    pub raw: String,
    /// The `config` origin string: which source the value came from.
    pub source: Option<String>,
}

/// Flattens nested tables into dotted keys.
pub fn flatten(root: Map<String, Value>) -> BTreeMap<String, Flat> {
    let mut out = BTreeMap::new();
    for (k, v) in root {
        walk(k, v, &mut out);
    }
    out
}

fn walk(key: String, value: Value, out: &mut BTreeMap<String, Flat>) {
    let source = value.origin().map(str::to_string);
    match value.kind {
        ValueKind::Table(t) => {
            for (k, v) in t {
                let full = if k.is_empty() {
                    key.clone()
                } else if key.is_empty() {
                    k
                } else {
                    format!("{key}.{k}")
                };
                walk(full, v, out);
            }
        }
        ValueKind::Array(items) => {
            let parts: Vec<String> = items.into_iter().map(text).collect();
            out.insert(
                key,
                Flat {
                    raw: parts.join(", "),
                    source,
                },
            );
        }
        kind => {
            out.insert(
                key,
                Flat {
                    raw: text(Value::new(source.as_ref(), kind)),
                    source,
                },
            );
        }
    }
}

fn text(v: Value) -> String {
    match v.kind {
        ValueKind::Nil => String::new(),
        ValueKind::String(s) => s,
        ValueKind::Array(items) => items.into_iter().map(text).collect::<Vec<_>>().join(", "),
        ValueKind::Table(_) => String::new(),
        other => Value::new(None, other).into_string().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_and_table_both_survive() {
        let mut root = Map::new();
        let tag = "file".to_string();
        insert(
            &mut root,
            "listener.tcp.external",
            Value::new(Some(&tag), "0.0.0.0:1883"),
        );
        insert(
            &mut root,
            "listener.tcp.external.acceptors",
            Value::new(None, "8"),
        );
        insert(&mut root, "a.b.c", Value::new(None, "1"));
        insert(&mut root, "a.b", Value::new(None, "2"));
        let flat = flatten(root);
        assert_eq!(flat["listener.tcp.external"].raw, "0.0.0.0:1883");
        assert_eq!(
            flat["listener.tcp.external"].source.as_deref(),
            Some("file")
        );
        assert_eq!(flat["listener.tcp.external.acceptors"].raw, "8");
        assert_eq!(flat["a.b.c"].raw, "1");
        assert_eq!(flat["a.b"].raw, "2");
    }

    #[test]
    fn joined_keys_have_no_empty_parts() {
        assert_eq!(join("", "a.b"), "a.b");
        assert_eq!(join("a", "..b.c."), "a.b.c");
        assert_eq!(join("", ""), "");
        assert_eq!(depth(""), 0);
        assert_eq!(depth("a.b.c"), 3);
    }

    #[test]
    fn arrays_and_scalars_become_text() {
        let mut root = Map::new();
        root.insert(
            "p".into(),
            Value::new(
                None,
                vec![Value::new(None, 4369_i64), Value::new(None, 4370_i64)],
            ),
        );
        root.insert("b".into(), Value::new(None, true));
        let flat = flatten(root);
        assert_eq!(flat["p"].raw, "4369, 4370");
        assert_eq!(flat["b"].raw, "true");
    }
}
