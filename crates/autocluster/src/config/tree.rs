//! Between dotted keys and the `config` crate's nested tables.
//!
//! A full emqx.conf has keys that are both a leaf and a table
//! (`listener.tcp.external = 0.0.0.0:1883` and `listener.tcp.external.acceptors = 8`). Such a
//! key's own value is kept under the empty sub-key `""`, so nothing is lost or refused, and
//! [`flatten`] turns it back into `listener.tcp.external`.
//!
//! Each value's origin travels in the `config` value's origin string: `NAME:LINE` for files,
//! `the environment` for environment variables (the `config` crate's own spelling).

use std::collections::BTreeMap;

use config::{Map, Value, ValueKind};

/// The deepest nesting accepted (parts of a dotted key, tables in tables). Deeper input is
/// refused before it reaches the `config` crate, whose merging recurses.
pub const MAX_DEPTH: usize = 32;

/// Checks that no key in `root` is nested deeper than [`MAX_DEPTH`] (counting each part of
/// a dotted key, each table and each array); returns the origin of an offending value.
pub fn check_depth(root: &Map<String, Value>) -> Result<(), Option<String>> {
    fn value(v: &Value, depth: usize) -> Result<(), Option<String>> {
        if depth > MAX_DEPTH {
            return Err(v.origin().map(str::to_string));
        }
        match &v.kind {
            ValueKind::Table(t) => table(t, depth),
            ValueKind::Array(items) => items.iter().try_for_each(|i| value(i, depth + 1)),
            _ => Ok(()),
        }
    }
    fn table(t: &Map<String, Value>, depth: usize) -> Result<(), Option<String>> {
        t.iter()
            .try_for_each(|(k, v)| value(v, depth + k.split('.').count()))
    }
    table(root, 0)
}

/// The origin string of a value read from line `line` of `name`.
pub fn file_origin(name: &str, line: usize) -> String {
    format!("{name}:{line}")
}

/// The line in an origin string made by [`file_origin`] for `name`.
pub fn origin_line(origin: &str, name: &str) -> Option<usize> {
    origin.strip_prefix(name)?.strip_prefix(':')?.parse().ok()
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

/// A flattened value: the text and the origin string, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat {
    /// The value as text (lists joined with `, `).
    pub raw: String,
    /// The `config` origin string.
    pub origin: Option<String>,
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
    let origin = value.origin().map(str::to_string);
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
                    origin,
                },
            );
        }
        kind => {
            out.insert(
                key,
                Flat {
                    raw: text(Value::new(origin.as_ref(), kind)),
                    origin,
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
        let o = file_origin("e.conf", 3);
        insert(
            &mut root,
            "listener.tcp.external",
            Value::new(Some(&o), "0.0.0.0:1883"),
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
            flat["listener.tcp.external"].origin.as_deref(),
            Some("e.conf:3")
        );
        assert_eq!(flat["listener.tcp.external.acceptors"].raw, "8");
        assert_eq!(flat["a.b.c"].raw, "1");
        assert_eq!(flat["a.b"].raw, "2");
        assert_eq!(origin_line("e.conf:3", "e.conf"), Some(3));
        assert_eq!(origin_line("the environment", "e.conf"), None);
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
