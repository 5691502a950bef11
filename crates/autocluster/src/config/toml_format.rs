//! TOML as a `config` crate [`Format`] that keeps each value's line (from the `toml` crate's
//! spans), so errors name `node.toml:LINE` as they do for `.conf` files.

use std::error::Error as StdError;

use config::{FileStoredFormat, Format, Map, Value};
use toml::de::{DeTable, DeValue};

use super::tree;

/// The TOML format; each value's origin is `NAME:LINE`, the line of its key.
#[derive(Debug, Clone)]
pub struct TomlFormat {
    name: String,
}

impl TomlFormat {
    /// A format for text read from `name`.
    pub fn new(name: impl Into<String>) -> Self {
        TomlFormat { name: name.into() }
    }
}

/// The line (from 1) of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Format for TomlFormat {
    fn parse(
        &self,
        _uri: Option<&String>,
        text: &str,
    ) -> Result<Map<String, Value>, Box<dyn StdError + Send + Sync>> {
        let doc = DeTable::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            format!("{}:{line}: invalid TOML: {}", self.name, e.message().trim())
        })?;
        let mut root = Map::new();
        self.table(text, doc.into_inner(), &mut root);
        tree::check_depth(&root).map_err(|at| too_deep(at, &self.name))?;
        Ok(root)
    }
}

impl TomlFormat {
    fn table(&self, text: &str, table: DeTable<'_>, out: &mut Map<String, Value>) {
        for (key, value) in table {
            let origin = tree::file_origin(&self.name, line_of(text, key.span().start));
            let k = key.into_inner().into_owned();
            match value.into_inner() {
                DeValue::Table(t) => {
                    let mut sub = Map::new();
                    self.table(text, t, &mut sub);
                    out.insert(k, Value::new(Some(&origin), sub));
                }
                v => {
                    out.insert(k, scalar(&origin, v));
                }
            }
        }
    }
}

fn scalar(origin: &String, v: DeValue<'_>) -> Value {
    let o = Some(origin);
    match v {
        DeValue::String(s) => Value::new(o, s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::new(o, n),
            Err(_) => Value::new(o, i.as_str().to_string()),
        },
        DeValue::Float(f) => Value::new(o, f.as_str().to_string()),
        DeValue::Boolean(b) => Value::new(o, b),
        DeValue::Datetime(d) => Value::new(o, d.to_string()),
        DeValue::Array(items) => Value::new(
            o,
            items
                .into_iter()
                .map(|i| scalar(origin, i.into_inner()))
                .collect::<Vec<_>>(),
        ),
        // An inline table inside an array: not a form we use; kept as empty text.
        DeValue::Table(_) => Value::new(o, String::new()),
    }
}

/// The error for input nested deeper than [`tree::MAX_DEPTH`].
pub(crate) fn too_deep(at: Option<String>, name: &str) -> String {
    format!(
        "{}: nested deeper than {} levels",
        at.unwrap_or_else(|| name.to_string()),
        tree::MAX_DEPTH
    )
}

impl FileStoredFormat for TomlFormat {
    fn file_extensions(&self) -> &'static [&'static str] {
        &["toml"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_key_line() {
        let text = "[node]\nname = \"a@b\"\n\n[cluster.etcd]\nserver = [\n  \"http://x:1\",\n  \"http://y:2\",\n]\nnode_ttl = \"1m\"\n";
        let root = TomlFormat::new("n.toml").parse(None, text).unwrap();
        let flat = tree::flatten(root);
        assert_eq!(flat["node.name"].origin.as_deref(), Some("n.toml:2"));
        assert_eq!(flat["cluster.etcd.server"].raw, "http://x:1, http://y:2");
        assert_eq!(
            flat["cluster.etcd.server"].origin.as_deref(),
            Some("n.toml:5")
        );
        assert_eq!(
            flat["cluster.etcd.node_ttl"].origin.as_deref(),
            Some("n.toml:9")
        );
    }

    #[test]
    fn errors_are_located() {
        let e = TomlFormat::new("n.toml")
            .parse(None, "[node]\nname = \n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("n.toml:2: invalid TOML: "), "{e}");
    }
}
