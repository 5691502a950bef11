//! From a file's text and the environment to flat, located settings, through the `config`
//! crate: the file (`.conf`, TOML or YAML) first, environment variables over it.

use std::collections::{BTreeMap, HashMap};

use autocluster_plugin::{Origin, Setting};
use config::{Environment, File, Format, Source};

use super::conf_format::{self, ConfFormat, Entry};
use super::error::{ConfigError, Ordered};
use super::toml_format::TomlFormat;
use super::yaml_format::YamlFormat;
use super::{schema, tree, FileFormat};

/// The prefix of environment overrides: `AUTOCLUSTER_CLUSTER__ETCD__PREFIX`.
pub const ENV_PREFIX: &str = "AUTOCLUSTER";

/// Every key found (ours and the application's), with problems and warnings met so far.
pub(crate) struct Loaded {
    pub values: BTreeMap<String, Setting>,
    pub problems: Ordered,
    pub warnings: Ordered,
}

/// Reads `text` (from `name`) in `format`, with `env` over it.
pub(crate) fn load_text(
    text: &str,
    format: FileFormat,
    name: &str,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let mut problems = Ordered::default();
    let mut warnings = Ordered::default();
    let builder = config::Config::builder();
    let builder = match format {
        FileFormat::Conf => {
            let parsed = conf_format::parse(text);
            for e in &parsed.errors {
                let origin = Origin::File {
                    path: name.to_string(),
                    line: e.line,
                };
                problems.push(&origin, format!("{origin}: {}", e.message));
            }
            warn_duplicates(&parsed.entries, name, &mut warnings);
            builder.add_source(File::from_str(text, ConfFormat::new(name).lenient()))
        }
        FileFormat::Toml => {
            let f = TomlFormat::new(name);
            f.parse(None, text)
                .map_err(|e| ConfigError::one(e.to_string()))?;
            builder.add_source(File::from_str(text, f))
        }
        FileFormat::Yaml => {
            let f = YamlFormat::new(name);
            f.parse(None, text)
                .map_err(|e| ConfigError::one(e.to_string()))?;
            builder.add_source(File::from_str(text, f))
        }
    };

    let mut env_map = config::Map::new();
    let mut vars = HashMap::new();
    for (var, value) in env {
        // Every key of ours has a section and a name (`node.name`); a variable without the
        // `__` separator (`AUTOCLUSTER_NODE`, set for hooks, or a CLI's `AUTOCLUSTER_LOG`)
        // names no key and is no override.
        if let Some(key) = env_key(var).filter(|k| k.contains('.')) {
            vars.insert(key, var.clone());
            env_map.insert(var.clone(), value.clone());
        }
    }
    let builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .source(Some(env_map)),
    );
    let root = builder
        .build()
        .and_then(|c| c.collect())
        .map_err(|e| ConfigError::one(format!("{name}: {e}")))?;

    let mut values = BTreeMap::new();
    for (key, flat) in tree::flatten(root) {
        let origin = match flat.origin.as_deref() {
            Some("the environment") => {
                // Variables outside our sections (a CLI's own AUTOCLUSTER_LOG) are not
                // configuration keys: skipped without a word.
                if !(schema::is_owned(&key) || key.starts_with("node.")) {
                    continue;
                }
                Origin::Env {
                    var: vars.get(&key).cloned().unwrap_or_else(|| env_var(&key)),
                }
            }
            o => Origin::File {
                path: name.to_string(),
                line: o.and_then(|o| tree::origin_line(o, name)).unwrap_or(0),
            },
        };
        values.insert(
            key,
            Setting {
                raw: flat.raw.trim().to_string(),
                origin,
                secret: false,
            },
        );
    }
    Ok(Loaded {
        values,
        problems,
        warnings,
    })
}

/// The key an environment variable sets (`AUTOCLUSTER_CLUSTER__ETCD__PREFIX` ->
/// `cluster.etcd.prefix`), as the `config` crate's `Environment` computes it.
pub fn env_key(var: &str) -> Option<String> {
    let lower = var.to_lowercase();
    let rest = lower.strip_prefix(&format!("{}_", ENV_PREFIX.to_lowercase()))?;
    let key = rest.replace("__", ".");
    (key.split('.').count() <= tree::MAX_DEPTH).then_some(key)
}

/// The environment variable that overrides `key`: `cluster.etcd.prefix` ->
/// `AUTOCLUSTER_CLUSTER__ETCD__PREFIX`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', "__").to_uppercase())
}

fn warn_duplicates(entries: &[Entry], name: &str, warnings: &mut Ordered) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        if let Some(line) = first.get(e.key.as_str()) {
            let origin = Origin::File {
                path: name.to_string(),
                line: e.line,
            };
            let text = format!(
                "{origin}: {} is set again (first at line {line}); the last value wins",
                e.key
            );
            warnings.push(&origin, text);
        } else {
            first.insert(&e.key, e.line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(
            env_key("AUTOCLUSTER_CLUSTER__ETCD__NODE_TTL").as_deref(),
            Some("cluster.etcd.node_ttl")
        );
        assert_eq!(env_key("PATH"), None);
        assert_eq!(
            env_var("node.admin_listen"),
            "AUTOCLUSTER_NODE__ADMIN_LISTEN"
        );
    }
}
