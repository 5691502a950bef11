//! YAML read into located [`Entry`]s: each value with the line of its key (from the parser's
//! markers). Mapping keys may be dotted (`cluster.etcd.server: ...`) or nested.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::source::Entry;
use super::toml_format::too_deep;
use super::tree;

/// Reads YAML text from `name` (its first document): every value at its dotted key, sequences
/// as comma separated text. A syntax error, or nesting deeper than [`tree::MAX_DEPTH`], is one
/// located message.
pub fn parse(text: &str, name: &str) -> Result<Vec<Entry>, String> {
    let mut reader = Reader {
        name,
        stack: Vec::new(),
        entries: Vec::new(),
        failed: None,
    };
    Parser::new_from_str(text)
        .load(&mut reader, false)
        .map_err(|e| format!("{name}:{}: invalid YAML: {}", e.marker().line(), e.info()))?;
    match reader.failed {
        Some(why) => Err(why),
        None => Ok(reader.entries),
    }
}

/// What a mapping expects next.
enum Next {
    /// A key.
    Key,
    /// The value of this key (full dotted key, its line, its depth).
    Value(String, usize, usize),
    /// A value that is dropped (its key was not text).
    Dropped,
}

enum Frame {
    /// A mapping whose values are kept (the document's, or under a kept key) or not (inside a
    /// sequence, or used as a key).
    Map {
        path: String,
        depth: usize,
        keep: bool,
        next: Next,
    },
    /// A sequence; its items become comma separated text.
    Seq { depth: usize, items: Vec<String> },
}

impl Frame {
    fn depth(&self) -> usize {
        match self {
            Frame::Map { depth, .. } | Frame::Seq { depth, .. } => *depth,
        }
    }
}

struct Reader<'a> {
    name: &'a str,
    stack: Vec<Frame>,
    entries: Vec<Entry>,
    /// The first key refused, or where the input first went deeper than
    /// [`tree::MAX_DEPTH`]: what follows is ignored.
    failed: Option<String>,
}

impl Reader<'_> {
    /// A scalar at `line`.
    fn scalar(&mut self, text: String, line: usize) {
        match self.stack.last_mut() {
            None => {} // a document that is a single value: no keys
            Some(Frame::Seq { items, .. }) => items.push(text),
            Some(Frame::Map {
                path,
                depth,
                keep,
                next,
            }) => match std::mem::replace(next, Next::Key) {
                Next::Key if *keep => {
                    // A key counts at least one level, even an empty one.
                    let d = *depth + tree::depth(&tree::join("", &text)).max(1);
                    let key = tree::join(path, &text);
                    if d > tree::MAX_DEPTH {
                        self.failed = Some(too_deep(self.name, line));
                    } else if let Some(why) = tree::refuse(&key) {
                        self.failed = Some(format!("{}:{line}: {why}", self.name));
                    }
                    *next = Next::Value(key, line, d);
                }
                Next::Key => *next = Next::Dropped,
                Next::Value(key, line, _) => {
                    self.entries.push(Entry::new(key, text, self.name, line));
                }
                Next::Dropped => {}
            },
        }
    }

    /// An alias: as a value, empty text; as a key, its value is dropped.
    fn alias(&mut self, line: usize) {
        match self.stack.last_mut() {
            Some(Frame::Map {
                next: next @ Next::Key,
                ..
            }) => *next = Next::Dropped,
            _ => self.scalar(String::new(), line),
        }
    }

    /// The start of a mapping or sequence.
    fn open(&mut self, map: bool, line: usize) {
        let (path, depth, keep) = match self.stack.last() {
            None => (String::new(), 0, true),
            Some(Frame::Map {
                next: Next::Value(key, _, depth),
                keep: true,
                ..
            }) => (key.clone(), *depth, true),
            Some(parent) => (String::new(), parent.depth() + 1, false),
        };
        // A sequence is one level deeper than its key.
        let depth = if map { depth } else { depth + 1 };
        if depth > tree::MAX_DEPTH {
            self.failed = Some(too_deep(self.name, line));
            return;
        }
        self.stack.push(match map {
            true => Frame::Map {
                path,
                depth,
                keep,
                next: Next::Key,
            },
            false => Frame::Seq {
                depth,
                items: Vec::new(),
            },
        });
    }

    /// The end of the innermost mapping or sequence: a sequence under a key becomes its value;
    /// a mapping or sequence inside a sequence becomes an item; one used as a key drops its
    /// value.
    fn close(&mut self) {
        let Some(done) = self.stack.pop() else { return };
        let text = match done {
            Frame::Seq { items, .. } => Some(items.join(", ")),
            Frame::Map { .. } => None,
        };
        match self.stack.last_mut() {
            None => {}
            Some(Frame::Seq { items, .. }) => items.push(text.unwrap_or_default()),
            Some(Frame::Map { next, .. }) => match std::mem::replace(next, Next::Key) {
                Next::Key => *next = Next::Dropped,
                Next::Value(key, line, _) => {
                    if let Some(text) = text {
                        self.entries.push(Entry::new(key, text, self.name, line));
                    }
                }
                Next::Dropped => {}
            },
        }
    }
}

impl MarkedEventReceiver for Reader<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.failed.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, _, _) => {
                let null = style == TScalarStyle::Plain && matches!(text.as_str(), "~" | "null");
                self.scalar(if null { String::new() } else { text }, mark.line());
            }
            Event::Alias(_) => self.alias(mark.line()),
            Event::MappingStart(..) => self.open(true, mark.line()),
            Event::SequenceStart(..) => self.open(false, mark.line()),
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            _ => {}
        }
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
        let text = "node:\n  name: a@b\ncluster:\n  discovery: etcd\n  etcd:\n    server:\n      - http://x:1\n      - http://y:2\n    node_ttl: 1m\ncluster.mcast.ttl: 3\n";
        let entries = parse(text, "n.yaml").unwrap();
        assert_eq!(get(&entries, "node.name"), ("a@b", "n.yaml:2".into()));
        assert_eq!(get(&entries, "cluster.discovery").0, "etcd");
        assert_eq!(
            get(&entries, "cluster.etcd.server"),
            ("http://x:1, http://y:2", "n.yaml:6".into())
        );
        assert_eq!(get(&entries, "cluster.etcd.node_ttl").1, "n.yaml:9");
        assert_eq!(get(&entries, "cluster.mcast.ttl").0, "3");
    }

    #[test]
    fn odd_shapes_keep_their_old_reading() {
        let text = "a: [x, [y, z], {k: v}]\n? [b]\n: dropped\nc: ~\nd: {}\ne: &x 1\nf: *x\n";
        let entries = parse(text, "n.yaml").unwrap();
        let keys: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(keys, [("a", "x, y, z, "), ("c", ""), ("e", "1"), ("f", "")]);
    }

    #[test]
    fn errors_are_located_and_garbage_is_no_panic() {
        let e = parse("node:\n  name: [a\n", "n.yaml").unwrap_err();
        assert!(e.starts_with("n.yaml:"), "{e}");
        assert_eq!(
            parse("x:\n  a[9999999999999]: 1\n", "n.yaml").unwrap_err(),
            "n.yaml:2: malformed key \"x.a[9999999999999]\": a key has no brackets"
        );
        let deep = format!("a: {}1{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            parse(&deep, "n.yaml").unwrap_err(),
            "n.yaml:1: nested deeper than 32 levels"
        );
        for junk in [
            "",
            "- a\n- b",
            "just text",
            "? [a]\n: b\nc: d",
            "a: &x 1\nb: *x",
        ] {
            let _ = parse(junk, "n.yaml");
        }
    }
}
