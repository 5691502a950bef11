//! A backend's configuration section (`cluster.etcd.*`), with every value's origin, so that a
//! backend's own checks report errors as precisely as the loader does.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, ErrorKind, Result};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a configuration file.
    File {
        /// The file, as given.
        path: String,
        /// The line, from 1.
        line: usize,
    },
    /// An environment variable (`AUTOCLUSTER_CLUSTER__ETCD__PREFIX`).
    Env {
        /// The variable's name.
        var: String,
    },
    /// The documented default.
    Default,
    /// Set by the embedding program.
    Program,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Default => f.write_str("default"),
            Origin::Program => f.write_str("set by the program"),
        }
    }
}

/// One value as written (after environment overrides), with where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value as written, trimmed.
    pub raw: String,
    /// Where it came from.
    pub origin: Origin,
    /// Whether the value is a secret (a password): never printed.
    pub secret: bool,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw: &str = if self.secret { "******" } else { &self.raw };
        write!(f, "{raw:?} ({})", self.origin)
    }
}

/// The settings under one prefix (`cluster.etcd`), keyed by the rest of the key (`node_ttl`,
/// `ssl.cacertfile`). Defaults are already filled in by the loader.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Section {
    prefix: String,
    entries: BTreeMap<String, Setting>,
}

impl fmt::Debug for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(k, v)| (format!("{}.{k}", self.prefix), v)),
            )
            .finish()
    }
}

impl Section {
    /// An empty section for keys under `prefix` (`cluster.etcd`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Section {
            prefix: prefix.into(),
            entries: BTreeMap::new(),
        }
    }

    /// Sets `key` (relative to the prefix); for programs and tests.
    pub fn set(&mut self, key: impl Into<String>, raw: impl Into<String>, origin: Origin) {
        let raw = raw.into();
        self.entries.insert(
            key.into(),
            Setting {
                raw: raw.trim().to_string(),
                origin,
                secret: false,
            },
        );
    }

    /// Inserts a fully formed setting.
    pub fn insert(&mut self, key: impl Into<String>, setting: Setting) {
        self.entries.insert(key.into(), setting);
    }

    /// The prefix (`cluster.etcd`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key for `key` (`cluster.etcd.node_ttl`).
    pub fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Every setting, by relative key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Setting)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The setting for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.entries.get(key)
    }

    /// A configuration error about `key`, located at its origin:
    /// `node.conf:4: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h`.
    /// A value longer than 60 characters is shown cut, ending in `...`.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> Error {
        const SHOWN: usize = 60;
        let full = self.full_key(key);
        let text = match self.entries.get(key) {
            Some(s) if s.secret => format!("{}: {full}: {message}", s.origin),
            Some(s) if s.origin != Origin::Default => {
                let mut raw: String = s.raw.chars().take(SHOWN).collect();
                if raw.len() < s.raw.len() {
                    raw.push_str("...");
                }
                // A value may hold anything (a control character is what the error may be
                // about): shown escaped.
                let raw = crate::log::Escaped::new(raw);
                format!("{}: {full} = {raw}: {message}", s.origin)
            }
            _ => format!("{full}: {message}"),
        };
        Error::new(ErrorKind::Config, text).with_key(full)
    }

    /// The value of `key`; `None` when unset or empty.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.entries
            .get(key)
            .map(|s| s.raw.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The value of `key`, which must be set.
    pub fn required(&self, key: &str) -> Result<&str> {
        self.str(key)
            .ok_or_else(|| self.error(key, "is required but not set"))
    }

    /// `key` as a duration (`500ms`, `30s`, `1m`, `2h`).
    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        self.parsed(key, parse_duration)
    }

    /// `key` as a comma or space separated list; empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.str(key).map(parse_list).unwrap_or_default()
    }

    /// `key` as `on`/`off` (also `true`/`false`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.parsed(key, parse_bool)
    }

    /// `key` parsed with `FromStr`, errors located and described as `expected`.
    pub fn parse<T: FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>> {
        self.parsed(key, |s| {
            s.parse::<T>().map_err(|_| format!("expected {expected}"))
        })
    }

    fn parsed<T>(
        &self,
        key: &str,
        f: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        match self.str(key) {
            None => Ok(None),
            Some(s) => f(s).map(Some).map_err(|why| self.error(key, why)),
        }
    }
}

/// The longest duration any setting accepts: 365 days (`365d`). Longer values are refused
/// where they are read, so no timer, deadline or TTL computed from a setting can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration: a number and a unit, `ms`, `s`, `m`, `h` or `d` (`500ms`, `30s`, `1m`,
/// `2h`); several may follow each other (`1m30s`). A bare number is refused: the unit is part
/// of the value. So is anything longer than [`MAX_DURATION`], however it is written.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as 500ms, 30s, 1m or 2h";
    const MAX_MS: u64 = MAX_DURATION.as_secs() * 1000;
    let too_long = || {
        format!(
            "expected a duration of at most {}d",
            MAX_DURATION.as_secs() / 86_400
        )
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(EXPECTED.into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{EXPECTED} (the unit is missing)"))?;
        if digits == 0 {
            return Err(EXPECTED.into());
        }
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(EXPECTED.into()),
        };
        rest = &rest[unit_len..];
        // Digits only, so a number that does not parse is one too large for a u64.
        total_ms = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|&ms| ms <= MAX_MS)
            .ok_or_else(too_long)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Splits a comma or space separated list, dropping empty items.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `on`/`off` (and `true`/`false`).
pub fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "10", "1x", "m", "1.5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_bounded_whatever_the_arithmetic() {
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("364d23h59m59s1000ms"), Ok(MAX_DURATION));
        let too_long = Err("expected a duration of at most 365d".to_string());
        for bad in [
            "366d".to_string(),
            "365d1ms".to_string(),
            "18446744073709551615ms".to_string(), // u64::MAX ms: fits a u64, not the bound
            "18446744073709551616ms".to_string(), // not a u64
            "213503982334601d".to_string(),       // the product overflows
            "18446744073709551s".repeat(1001),    // the sum overflowed Duration: a panic
        ] {
            assert_eq!(
                parse_duration(&bad),
                too_long,
                "{}",
                &bad[..bad.len().min(40)]
            );
        }
        // The form is checked before the size: a bad unit says so.
        assert!(parse_duration("99999999999999999999x")
            .unwrap_err()
            .starts_with("expected a duration such as"));
    }

    #[test]
    fn lists_and_bools() {
        assert_eq!(parse_list("a, b c,,d"), vec!["a", "b", "c", "d"]);
        assert_eq!(parse_bool("on"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("yes").is_err());
    }

    #[test]
    fn errors_are_located() {
        let mut s = Section::new("cluster.etcd");
        s.set(
            "node_ttl",
            "1x",
            Origin::File {
                path: "node.conf".into(),
                line: 4,
            },
        );
        let e = s.duration("node_ttl").unwrap_err();
        assert_eq!(
            e.to_string(),
            "node.conf:4: cluster.etcd.node_ttl = 1x: expected a duration such as 500ms, 30s, 1m or 2h"
        );
    }
}
