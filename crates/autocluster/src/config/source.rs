//! A file's located entries, and the file as a source of the `config` crate.
//!
//! Our readers (`.conf`, TOML, YAML) parse a file once into [`Entry`]s: a dotted key, the
//! value as text, and the [`Origin`] (file and line) as data. [`FileSource`] hands them to the
//! `config` crate, which merges the environment over them; after the merge, each value's origin
//! is looked up by its key in [`FileSource::origins`], never parsed back out of a string.

use std::collections::HashMap;
use std::sync::Arc;

use autocluster_plugin::Origin;
use config::{Map, Source, Value, ValueKind};

use super::tree;

/// The `config` origin tag of every value from a file: it says which source a merged value
/// came from; where in the file is kept by us, as an [`Origin`].
pub const FROM_FILE: &str = "the file";

/// The `config` crate's origin tag of a value from its `Environment` source.
pub const FROM_ENV: &str = "the environment";

/// One value read from a file: its dotted key, its text, where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dotted key, in the form [`tree::join`] gives (no empty parts).
    pub key: String,
    /// The value as text (lists joined with `, `), unquoted.
    pub value: String,
    /// The file and line.
    pub origin: Origin,
}

impl Entry {
    /// An entry read from line `line` of `name`.
    pub fn new(key: String, value: String, name: &str, line: usize) -> Self {
        Entry {
            key,
            value,
            origin: Origin::File {
                path: name.to_string(),
                line,
            },
        }
    }
}

/// A parsed file as a `config` source: the entries, nested at their dotted keys.
#[derive(Debug, Clone)]
pub struct FileSource {
    entries: Arc<[Entry]>,
}

impl FileSource {
    /// The source of these entries; a key written twice keeps its last value.
    pub fn new(entries: Vec<Entry>) -> Self {
        FileSource {
            entries: entries.into(),
        }
    }

    /// Where each key's value was written (its last line, for a key written twice).
    pub fn origins(&self) -> HashMap<&str, &Origin> {
        self.entries
            .iter()
            .map(|e| (e.key.as_str(), &e.origin))
            .collect()
    }

    fn insert_into(&self, table: &mut Map<String, Value>) {
        let tag = FROM_FILE.to_string();
        for e in self.entries.iter() {
            tree::insert(table, &e.key, Value::new(Some(&tag), e.value.as_str()));
        }
    }
}

impl Source for FileSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        let mut root = Map::new();
        self.insert_into(&mut root);
        Ok(root)
    }

    /// Nests each entry at its dotted key as written: unlike the default, a key is not read as
    /// a `config` path expression (`a[0]` stays a key, not an array index).
    fn collect_to(&self, cache: &mut Value) -> Result<(), config::ConfigError> {
        if !matches!(cache.kind, ValueKind::Table(_)) {
            *cache = Value::new(None, Map::<String, Value>::new());
        }
        if let ValueKind::Table(table) = &mut cache.kind {
            self.insert_into(table);
        }
        Ok(())
    }
}
