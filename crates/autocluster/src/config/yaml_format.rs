//! YAML as a `config` crate [`Format`] that keeps each value's line (from the parser's
//! markers). Mapping keys may be dotted (`cluster.etcd.server: ...`) or nested.

use std::error::Error as StdError;

use config::{FileStoredFormat, Format, Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::tree;

/// The YAML format; each value's origin is `NAME:LINE`, the line of its key.
#[derive(Debug, Clone)]
pub struct YamlFormat {
    name: String,
}

impl YamlFormat {
    /// A format for text read from `name`.
    pub fn new(name: impl Into<String>) -> Self {
        YamlFormat { name: name.into() }
    }
}

/// Where a finished node goes: the key it was read under (with the key's line), or `None`
/// for a value that is dropped (under a non-text key).
type Pending = Option<(String, usize)>;

enum Frame {
    Map {
        table: Map<String, Value>,
        /// `None`: expecting a key; `Some(p)`: expecting the value for `p`.
        key: Option<Pending>,
    },
    Seq {
        items: Vec<Value>,
    },
}

struct Builder<'a> {
    name: &'a str,
    stack: Vec<Frame>,
    root: Option<Map<String, Value>>,
    /// Line of the innermost key, the origin of values under it.
    line: usize,
}

impl Builder<'_> {
    fn origin(&self) -> String {
        tree::file_origin(self.name, self.line)
    }

    /// A finished node: goes into the frame below.
    fn finish(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => {
                if let config::ValueKind::Table(t) = value.kind {
                    self.root.get_or_insert(t);
                }
            }
            Some(Frame::Seq { items }) => items.push(value),
            Some(Frame::Map { table, key }) => match key.take() {
                Some(Some((k, _))) => tree::insert(table, &k, value),
                Some(None) => {}
                // A container used as a key: not supported; its value is dropped.
                None => *key = Some(None),
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, _, _) => {
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    if key.is_none() {
                        self.line = mark.line();
                        *key = Some(Some((text, mark.line())));
                        return;
                    }
                }
                let null = style == TScalarStyle::Plain && matches!(text.as_str(), "~" | "null");
                let text = if null { String::new() } else { text };
                let v = Value::new(Some(&self.origin()), text);
                self.finish(v);
            }
            Event::Alias(_) => {
                let v = Value::new(Some(&self.origin()), String::new());
                self.finish(v);
            }
            Event::MappingStart(..) => self.stack.push(Frame::Map {
                table: Map::new(),
                key: None,
            }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq { items: Vec::new() }),
            Event::MappingEnd | Event::SequenceEnd => {
                let o = self.origin();
                let v = match self.stack.pop() {
                    Some(Frame::Map { table, .. }) => Value::new(Some(&o), table),
                    Some(Frame::Seq { items }) => Value::new(Some(&o), items),
                    None => return,
                };
                if let Some(Frame::Map {
                    key: Some(Some((_, line))),
                    ..
                }) = self.stack.last()
                {
                    self.line = *line;
                }
                self.finish(v);
            }
            _ => {}
        }
    }
}

impl Format for YamlFormat {
    fn parse(
        &self,
        _uri: Option<&String>,
        text: &str,
    ) -> Result<Map<String, Value>, Box<dyn StdError + Send + Sync>> {
        let mut b = Builder {
            name: &self.name,
            stack: Vec::new(),
            root: None,
            line: 1,
        };
        Parser::new_from_str(text)
            .load(&mut b, false)
            .map_err(|e| {
                format!(
                    "{}:{}: invalid YAML: {}",
                    self.name,
                    e.marker().line(),
                    e.info()
                )
            })?;
        let root = b.root.unwrap_or_default();
        tree::check_depth(&root).map_err(|at| super::toml_format::too_deep(at, &self.name))?;
        Ok(root)
    }
}

impl FileStoredFormat for YamlFormat {
    fn file_extensions(&self) -> &'static [&'static str] {
        &["yaml", "yml"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_key_line() {
        let text = "node:\n  name: a@b\ncluster:\n  discovery: etcd\n  etcd:\n    server:\n      - http://x:1\n      - http://y:2\n    node_ttl: 1m\ncluster.mcast.ttl: 3\n";
        let root = YamlFormat::new("n.yaml").parse(None, text).unwrap();
        let flat = tree::flatten(root);
        assert_eq!(flat["node.name"].origin.as_deref(), Some("n.yaml:2"));
        assert_eq!(flat["cluster.discovery"].raw, "etcd");
        assert_eq!(flat["cluster.etcd.server"].raw, "http://x:1, http://y:2");
        assert_eq!(
            flat["cluster.etcd.server"].origin.as_deref(),
            Some("n.yaml:6")
        );
        assert_eq!(
            flat["cluster.etcd.node_ttl"].origin.as_deref(),
            Some("n.yaml:9")
        );
        assert_eq!(flat["cluster.mcast.ttl"].raw, "3");
    }

    #[test]
    fn errors_are_located_and_garbage_is_no_panic() {
        let e = YamlFormat::new("n.yaml")
            .parse(None, "node:\n  name: [a\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("n.yaml:"), "{e}");
        for junk in [
            "",
            "- a\n- b",
            "just text",
            "? [a]\n: b\nc: d",
            "a: &x 1\nb: *x",
        ] {
            let _ = YamlFormat::new("n.yaml").parse(None, junk);
        }
    }
}
