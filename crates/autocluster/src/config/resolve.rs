//! From every key found to [`Settings`]: each key checked against the schema, aliases and
//! defaults applied, what is required checked, the typed fields built.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use autocluster_plugin::{parse_duration, NodeName, Origin, Section, Setting};

use super::error::{ConfigError, Ordered};
use super::load::Loaded;
use super::schema::{self, known_keys, DefaultValue};
use super::{suggest, validate, Settings};

/// Checks every key against the schema, applies aliases and defaults, checks what is
/// required, and builds the typed fields.
pub(super) fn resolve(loaded: Loaded, name: Option<&str>) -> Result<Settings, ConfigError> {
    let Loaded {
        values: all,
        mut problems,
        mut warnings,
    } = loaded;
    let (mut values, no_effect) = classify(all, &mut problems, &mut warnings);
    fill_in(&mut values, &mut problems);
    check_required(&values, name, &mut problems);
    problems.check()?;

    let text = |k: &str| values.get(k).map(|s| s.raw.clone()).unwrap_or_default();
    let dur = |k: &str| values.get(k).and_then(|s| parse_duration(&s.raw).ok());
    let need_dur = |k: &str| dur(k).ok_or_else(|| ConfigError::one(format!("{k} is not set")));
    let addr = |k: &str| values.get(k).and_then(|s| s.raw.parse::<SocketAddr>().ok());
    let node = values
        .get("node.name")
        .and_then(|s| NodeName::parse(&s.raw).ok());
    Ok(Settings {
        node: node.ok_or_else(|| ConfigError::one("node.name is not set"))?,
        cookie: text("node.cookie"),
        cluster_name: text("cluster.name"),
        discovery: text("cluster.discovery"),
        admin_listen: addr("node.admin_listen")
            .ok_or_else(|| ConfigError::one("node.admin_listen is not set"))?,
        listen: addr("node.listen"),
        call_timeout: need_dur("cluster.call_timeout")?,
        backoff_min: need_dur("cluster.backoff_min")?,
        backoff_max: need_dur("cluster.backoff_max")?,
        grace: dur("cluster.grace"),
        probe_interval: need_dur("cluster.probe_interval")?,
        labels: under(&values, "node.labels."),
        endpoints: under(&values, "node.advertise."),
        warnings: warnings.into_sorted(),
        no_effect: no_effect.into_sorted(),
        source: None,
        values,
    })
}

/// Sorts every key found: ours (checked, kept), EMQX's with no effect (listed), unknown ones
/// under `cluster.` (problems), the application's (warnings).
fn classify(
    all: BTreeMap<String, Setting>,
    problems: &mut Ordered,
    warnings: &mut Ordered,
) -> (BTreeMap<String, Setting>, Ordered) {
    let mut values = BTreeMap::new();
    let mut no_effect = Ordered::default();
    for (key, mut s) in all {
        match schema::lookup(&key) {
            Some(spec) if spec.no_effect => {
                let text = format!(
                    "{}: {key} = {}: accepted for EMQX compatibility, no effect here",
                    s.origin, s.raw
                );
                no_effect.push(&s.origin, text);
            }
            Some(spec) => {
                s.secret = spec.secret;
                if let Err(why) = validate::check_key(spec, &key) {
                    problems.push(&s.origin, located(&key, &s, &why));
                    continue;
                }
                match validate::check(spec, &s.raw) {
                    Ok(v) => s.raw = v,
                    Err(why) => problems.push(&s.origin, located(&key, &s, &why)),
                }
                values.insert(key, s);
            }
            None if schema::is_owned(&key) => problems.push(&s.origin, unknown_key(&key, &s)),
            None => warnings.push(&s.origin, foreign_key(&key, &s)),
        }
    }
    (values, no_effect)
}

/// Applies the alias `cluster.dns.record_type`, the defaults, and the derived
/// `cluster.dns.app`.
fn fill_in(values: &mut BTreeMap<String, Setting>, problems: &mut Ordered) {
    // cluster.dns.record_type (EMQX 5) is another spelling of cluster.dns.type.
    if let Some(rt) = values.get("cluster.dns.record_type").cloned() {
        match values.get("cluster.dns.type") {
            Some(t) if !t.raw.is_empty() && !rt.raw.is_empty() && t.raw != rt.raw => {
                let why = format!(
                    "conflicts with cluster.dns.type = {} ({}); set only one of them",
                    t.raw, t.origin
                );
                problems.push(&rt.origin, located("cluster.dns.record_type", &rt, &why));
            }
            Some(t) if !t.raw.is_empty() => {}
            _ => {
                values.insert("cluster.dns.type".into(), rt);
            }
        }
    }

    for spec in known_keys() {
        if spec.is_pattern() || spec.no_effect || is_set(values, spec.key) {
            continue;
        }
        if let DefaultValue::Value(v) = spec.default {
            let s = Setting {
                raw: v.to_string(),
                origin: Origin::Default,
                secret: spec.secret,
            };
            values.insert(spec.key.to_string(), s);
        }
    }
    let node = values
        .get("node.name")
        .and_then(|s| NodeName::parse(&s.raw).ok());
    if let (Some(node), false) = (&node, is_set(values, "cluster.dns.app")) {
        let s = Setting {
            raw: node.name().to_string(),
            origin: Origin::Default,
            secret: false,
        };
        values.insert("cluster.dns.app".into(), s);
    }
}

/// What must be set (`node.name`, the chosen backend's required keys) and what must agree
/// (`cluster.backoff_min` not above `cluster.backoff_max`).
fn check_required(values: &BTreeMap<String, Setting>, name: Option<&str>, problems: &mut Ordered) {
    if !is_set(values, "node.name") {
        let at = name.map(|n| format!("{n}: ")).unwrap_or_default();
        problems.push_unlocated(format!(
            "{at}node.name is required: this node's name, name@host, e.g. emqx1@192.168.1.162"
        ));
    }
    if let Some(d) = values.get("cluster.discovery") {
        for spec in known_keys() {
            let needed = matches!(spec.default, DefaultValue::RequiredFor(b) if b == d.raw);
            if needed && !is_set(values, spec.key) {
                let at = match &d.origin {
                    Origin::Default | Origin::Program => String::new(),
                    o => format!("{o}: "),
                };
                problems.push(
                    &d.origin,
                    format!(
                        "{at}{} is required when cluster.discovery = {}",
                        spec.key, d.raw
                    ),
                );
            }
        }
    }
    let dur = |k: &str| values.get(k).and_then(|s| parse_duration(&s.raw).ok());
    if let (Some(min), Some(max)) = (dur("cluster.backoff_min"), dur("cluster.backoff_max")) {
        if min > max {
            if let Some(s) = values.get("cluster.backoff_min") {
                let why = format!("must not exceed cluster.backoff_max ({})", humanize(max));
                problems.push(&s.origin, located("cluster.backoff_min", s, &why));
            }
        }
    }
}

/// A located message about `key`, in the plugin crate's form:
/// `node.conf:4: cluster.etcd.node_ttl = 1x: expected ...` (secret values not shown).
fn located(key: &str, s: &Setting, why: &str) -> String {
    let mut section = Section::new("");
    section.insert(key, s.clone());
    section.error(key, why).message().to_string()
}

fn unknown_key(key: &str, s: &Setting) -> String {
    let hint = match suggest::nearest(key, 3) {
        Some(near) => format!("; did you mean {near}?"),
        None => match suggest::section_keys(key) {
            (section, keys) if !keys.is_empty() => {
                format!("; the {section} keys are {}", keys.join(", "))
            }
            _ => "; see docs/configuration.md for the keys".to_string(),
        },
    };
    format!("{}: unknown key {key}{hint}", s.origin)
}

fn foreign_key(key: &str, s: &Setting) -> String {
    let hint = suggest::nearest(key, 2)
        .map(|near| format!("; did you mean {near}?"))
        .unwrap_or_default();
    format!(
        "{}: {key} is not an autocluster key, left to the application{hint}",
        s.origin
    )
}

/// The non-empty values under `prefix`, by the rest of their key.
fn under(values: &BTreeMap<String, Setting>, prefix: &str) -> BTreeMap<String, String> {
    values
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(_, s)| !s.raw.is_empty())
        .map(|(k, s)| (k[prefix.len()..].to_string(), s.raw.clone()))
        .collect()
}

fn is_set(values: &BTreeMap<String, Setting>, key: &str) -> bool {
    values.get(key).is_some_and(|s| !s.raw.is_empty())
}

/// A duration as a config file would write it (`1m30s`, `500ms`).
pub(crate) fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized_durations_parse_back() {
        for ms in [0, 1, 500, 1000, 1500, 60_000, 90_000, 3_600_000, 86_400_001] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&humanize(d)).unwrap_or_default(), d, "{ms}");
        }
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
    }
}
