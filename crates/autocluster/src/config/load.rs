//! From a file's text and the environment to flat, located settings, through the `config`
//! crate: the file (`.conf`, TOML or YAML) first, environment variables over it.

use std::collections::{BTreeMap, HashMap};

use autocluster_plugin::{Origin, Setting};
use config::{Environment, Source};

use super::error::{ConfigError, Ordered};
use super::source::{Entry, FileSource, FROM_ENV};
use super::{conf_format, schema, toml_format, tree, yaml_format, FileFormat};

/// The prefix of environment overrides: `AUTOCLUSTER_CLUSTER__ETCD__PREFIX`.
pub const ENV_PREFIX: &str = "AUTOCLUSTER";

/// Every key found (ours and the application's), with problems and warnings met so far.
pub(crate) struct Loaded {
    pub values: BTreeMap<String, Setting>,
    pub problems: Ordered,
    pub warnings: Ordered,
}

/// Reads `text` (from `name`) in `format`, with `env` over it: the file is parsed once into
/// located entries, and the `config` crate merges the environment over them.
pub(crate) fn load_text(
    text: &str,
    format: FileFormat,
    name: &str,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let mut problems = Ordered::default();
    let mut warnings = Ordered::default();
    let entries = match format {
        FileFormat::Conf => {
            let parsed = conf_format::parse(text, name);
            for e in &parsed.errors {
                problems.push(&e.origin, format!("{}: {}", e.origin, e.message));
            }
            warn_duplicates(&parsed.entries, &mut warnings);
            parsed.entries
        }
        FileFormat::Toml => toml_format::parse(text, name).map_err(ConfigError::one)?,
        FileFormat::Yaml => yaml_format::parse(text, name).map_err(ConfigError::one)?,
    };
    let file = FileSource::new(entries);

    let (environment, vars) = environment(env);
    let root = config::Config::builder()
        .add_source(file.clone())
        .add_source(environment)
        .build()
        .and_then(|c| c.collect())
        .map_err(|e| ConfigError::one(format!("{name}: {e}")))?;

    let origins = file.origins();
    let mut values = BTreeMap::new();
    for (key, flat) in tree::flatten(root) {
        let origin = if flat.source.as_deref() == Some(FROM_ENV) {
            // Variables outside our sections (a CLI's own AUTOCLUSTER_LOG) are not
            // configuration keys: skipped without a word.
            if !(schema::is_owned(&key) || key.starts_with("node.")) {
                continue;
            }
            Origin::Env {
                var: vars.get(&key).cloned().unwrap_or_else(|| env_var(&key)),
            }
        } else {
            // Every value `config` tags as the file's is at one of the entries' keys.
            match origins.get(key.as_str()) {
                Some(&origin) => origin.clone(),
                None => Origin::File {
                    path: name.to_string(),
                    line: 0,
                },
            }
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

/// The `config` source of the variables that name a key, and those keys' variables.
fn environment(env: &[(String, String)]) -> (Environment, HashMap<String, String>) {
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
    let source = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .source(Some(env_map));
    (source, vars)
}

/// The key an environment variable sets (`AUTOCLUSTER_CLUSTER__ETCD__PREFIX` ->
/// `cluster.etcd.prefix`), as the `config` crate's `Environment` computes it; `None` for a
/// variable that names no key (another prefix, too deep, or with brackets).
pub fn env_key(var: &str) -> Option<String> {
    let lower = var.to_lowercase();
    let rest = lower.strip_prefix(&format!("{}_", ENV_PREFIX.to_lowercase()))?;
    let key = rest.replace("__", ".");
    (key.split('.').count() <= tree::MAX_DEPTH && tree::refuse(&key).is_none()).then_some(key)
}

/// The environment variable that overrides `key`: `cluster.etcd.prefix` ->
/// `AUTOCLUSTER_CLUSTER__ETCD__PREFIX`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', "__").to_uppercase())
}

fn warn_duplicates(entries: &[Entry], warnings: &mut Ordered) {
    let mut first: HashMap<&str, &Origin> = HashMap::new();
    for e in entries {
        match (first.get(e.key.as_str()), &e.origin) {
            (Some(Origin::File { line, .. }), origin) => {
                let text = format!(
                    "{origin}: {} is set again (first at line {line}); the last value wins",
                    e.key
                );
                warnings.push(origin, text);
            }
            _ => {
                first.insert(&e.key, &e.origin);
            }
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
        assert_eq!(env_key("AUTOCLUSTER_X__A[9999999999999]"), None);
        assert_eq!(
            env_var("node.admin_listen"),
            "AUTOCLUSTER_NODE__ADMIN_LISTEN"
        );
    }

    #[test]
    fn origins_stay_data_through_the_merge() {
        let text = "x.y = 2\nx.y = 3\nz = 4\n";
        let env = [("AUTOCLUSTER_NODE__COOKIE".to_string(), "c".to_string())];
        let l = load_text(text, FileFormat::Conf, "n.conf", &env).unwrap();
        let at = |k: &str| l.values[k].origin.to_string();
        assert_eq!(
            (at("x.y"), l.values["x.y"].raw.as_str()),
            ("n.conf:2".into(), "3")
        );
        assert_eq!(at("z"), "n.conf:3");
        assert_eq!(
            at("node.cookie"),
            "environment variable AUTOCLUSTER_NODE__COOKIE"
        );
    }
}
