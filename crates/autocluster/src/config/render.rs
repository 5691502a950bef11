//! [`Settings::render`]: the resolved configuration as `autocluster check` prints it.

use std::fmt::Write;

use autocluster_plugin::{Origin, Setting};

use super::schema::{known_keys, DefaultValue, KeySpec, Kind, DISCOVERY};
use super::Settings;

impl Settings {
    /// Every known key in effect (node, cluster, and the chosen backend's section), with its
    /// value and where it came from, defaults marked and secrets shown as `******`; then keys
    /// set for another backend, the EMQX keys with no effect here, and the warnings.
    ///
    /// ```text
    /// cluster.etcd.node_ttl = 1m   (node.conf:10)
    /// cluster.etcd.prefix = emqxcl (default)
    /// ```
    pub fn render(&self) -> String {
        let backend = format!("cluster.{}.", self.discovery);
        let mut rows: Vec<(String, String)> = Vec::new();
        for spec in known_keys() {
            if spec.is_pattern() && matches!(spec.kind, Kind::Label | Kind::Endpoint) {
                // The labels and endpoints set (values are checked: no control characters).
                for (key, s) in &self.values {
                    if spec.matches(key) && !s.raw.is_empty() {
                        rows.push((format!("{key} = {}", shown(s)), origin(&s.origin)));
                    }
                }
                continue;
            }
            if spec.is_pattern() || spec.no_effect || spec.alias_of.is_some() {
                continue;
            }
            let general = spec.key.starts_with("node.")
                || spec.key.starts_with("cluster.formation.")
                || spec.key.matches('.').count() == 1;
            if general || spec.key.starts_with(&backend) {
                rows.push(self.row(spec));
            }
        }

        let mut unused = Vec::new();
        for (key, s) in &self.values {
            let other = DISCOVERY
                .iter()
                .any(|d| *d != self.discovery && key.starts_with(&format!("cluster.{d}.")));
            if other && s.origin != Origin::Default && !s.raw.is_empty() {
                unused.push((format!("{key} = {}", shown(s)), origin(&s.origin)));
            }
        }

        let width = rows
            .iter()
            .chain(&unused)
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0)
            .min(56);
        let mut out = String::new();
        let from = match &self.source {
            Some(p) => format!(" from {}", p.display()),
            None => String::new(),
        };
        let _ = writeln!(out, "# autocluster configuration{from}");
        for (left, right) in &rows {
            let _ = writeln!(out, "{left:<width$}  {right}");
        }
        if !unused.is_empty() {
            let _ = writeln!(
                out,
                "\n# set, but not used with cluster.discovery = {}",
                self.discovery
            );
            for (left, right) in &unused {
                let _ = writeln!(out, "{left:<width$}  {right}");
            }
        }
        if !self.no_effect.is_empty() {
            let _ = writeln!(out, "\n# accepted for EMQX compatibility, no effect here");
            for line in &self.no_effect {
                let _ = writeln!(out, "{line}");
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\n# warnings ({})", self.warnings.len());
            for line in &self.warnings {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    fn row(&self, spec: &KeySpec) -> (String, String) {
        match self.values.get(spec.key).filter(|s| !s.raw.is_empty()) {
            Some(s) => (format!("{} = {}", spec.key, shown(s)), origin(&s.origin)),
            None => {
                let note = match spec.default {
                    DefaultValue::Derived(how) => format!("(default: {how})"),
                    _ => "(optional)".to_string(),
                };
                (format!("{} = <unset>", spec.key), note)
            }
        }
    }
}

fn shown(s: &Setting) -> &str {
    if s.secret {
        "******"
    } else {
        &s.raw
    }
}

fn origin(o: &Origin) -> String {
    format!("({o})")
}
