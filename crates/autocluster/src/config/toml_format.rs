//! TOML read into located [`Entry`]s: each value with the line of its key (from the `toml`
//! crate's spans), so errors name `node.toml:LINE` as they do for `.conf` files.

use toml::de::{DeTable, DeValue};

use super::source::Entry;
use super::tree;

/// Reads TOML text from `name`: every value at its dotted key (`[cluster.etcd]` then
/// `server = ...` is `cluster.etcd.server`), arrays as comma separated text. A syntax error,
/// or nesting deeper than [`tree::MAX_DEPTH`], is one located message.
pub fn parse(text: &str, name: &str) -> Result<Vec<Entry>, String> {
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        format!("{name}:{line}: invalid TOML: {}", e.message().trim())
    })?;
    let mut reader = Reader {
        text,
        name,
        entries: Vec::new(),
    };
    reader.table("", doc.into_inner())?;
    Ok(reader.entries)
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The error for input nested deeper than [`tree::MAX_DEPTH`], at line `line` of `name`.
pub(crate) fn too_deep(name: &str, line: usize) -> String {
    format!(
        "{name}:{line}: nested deeper than {} levels",
        tree::MAX_DEPTH
    )
}

struct Reader<'a> {
    text: &'a str,
    name: &'a str,
    entries: Vec<Entry>,
}

impl Reader<'_> {
    fn table(&mut self, prefix: &str, table: DeTable<'_>) -> Result<(), String> {
        for (key, value) in table {
            let line = line_of(self.text, key.span().start);
            let full = tree::join(prefix, key.get_ref());
            let depth = tree::depth(&full);
            if depth > tree::MAX_DEPTH {
                return Err(too_deep(self.name, line));
            }
            if let Some(why) = tree::refuse(&full) {
                return Err(format!("{}:{line}: {why}", self.name));
            }
            match value.into_inner() {
                DeValue::Table(t) => self.table(&full, t)?,
                v => {
                    let text = self.scalar(v, depth, line)?;
                    self.entries.push(Entry::new(full, text, self.name, line));
                }
            }
        }
        Ok(())
    }

    /// A value as text; `depth` is its key's, for arrays in arrays.
    fn scalar(&self, v: DeValue<'_>, depth: usize, line: usize) -> Result<String, String> {
        Ok(match v {
            DeValue::String(s) => s.into_owned(),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => i.as_str().to_string(),
            },
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            DeValue::Array(items) => {
                if depth + 1 > tree::MAX_DEPTH {
                    return Err(too_deep(self.name, line));
                }
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    parts.push(self.scalar(item.into_inner(), depth + 1, line)?);
                }
                parts.join(", ")
            }
            // An inline table inside an array: not a form we use; kept as empty text.
            DeValue::Table(_) => String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(entries: &'a [Entry], key: &str) -> (&'a str, String) {
        let e = entries.iter().find(|e| e.key == key).unwrap();
        (&e.value, e.origin.to_string())
    }

    #[test]
    fn values_carry_their_key_line() {
        let text = "[node]\nname = \"a@b\"\n\n[cluster.etcd]\nserver = [\n  \"http://x:1\",\n  \"http://y:2\",\n]\nnode_ttl = \"1m\"\nttl = 0x10\nloop = true\n";
        let entries = parse(text, "n.toml").unwrap();
        assert_eq!(get(&entries, "node.name"), ("a@b", "n.toml:2".into()));
        assert_eq!(
            get(&entries, "cluster.etcd.server"),
            ("http://x:1, http://y:2", "n.toml:5".into())
        );
        assert_eq!(get(&entries, "cluster.etcd.node_ttl").1, "n.toml:9");
        assert_eq!(get(&entries, "cluster.etcd.ttl").0, "16");
        assert_eq!(get(&entries, "cluster.etcd.loop").0, "true");
    }

    #[test]
    fn errors_are_located() {
        let e = parse("[node]\nname = \n", "n.toml").unwrap_err();
        assert!(e.starts_with("n.toml:2: invalid TOML: "), "{e}");
        assert_eq!(
            parse("[x]\n\"a[9999999999999]\" = 1\n", "n.toml").unwrap_err(),
            "n.toml:2: malformed key \"x.a[9999999999999]\": a key has no brackets"
        );
        let deep = format!("a = {}1{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            parse(&deep, "n.toml").unwrap_err(),
            "n.toml:1: nested deeper than 32 levels"
        );
    }
}
