//! The EMQX 4.x `.conf` format (cuttlefish style), read into located [`Entry`]s.
//!
//! ```text
//! ## A comment line (also `#`)
//! cluster.discovery = etcd
//! cluster.etcd.server = http://192.168.1.162:2379   # a trailing comment after whitespace
//! node.cookie = "quoted # kept"
//! ```
//!
//! One `key = value` per line; the value runs to the end of the line (it may hold `=`, `:`,
//! `/` and `#` not preceded by whitespace), optionally in double quotes. Keys are dotted.

use autocluster_plugin::Origin;

use super::source::Entry;
use super::tree;

/// A line that is not `key = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The file and line.
    pub origin: Origin,
    /// What is wrong, with the expected form.
    pub message: String,
}

/// A parsed `.conf` text: the good lines and the bad ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Every `key = value` line, in order.
    pub entries: Vec<Entry>,
    /// Every line that could not be read.
    pub errors: Vec<LineError>,
}

/// Parses `.conf` text read from `name`; never panics, whatever the input.
pub fn parse(text: &str, name: &str) -> Parsed {
    let mut out = Parsed::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(trimmed) {
            Ok((key, value)) => out.entries.push(Entry::new(key, value, name, line)),
            Err(message) => {
                let origin = Origin::File {
                    path: name.to_string(),
                    line,
                };
                out.errors.push(LineError { origin, message });
            }
        }
    }
    out
}

fn parse_line(line: &str) -> Result<(String, String), String> {
    let shown = || {
        let mut s: String = line.chars().take(60).collect();
        if s.len() < line.len() {
            s.push_str("...");
        }
        s
    };
    let Some(eq) = line.find('=') else {
        return Err(format!("expected key = value, found {:?}", shown()));
    };
    let key = line[..eq].trim();
    if key.is_empty() {
        return Err(format!(
            "expected key = value, found no key before '=' in {:?}",
            shown()
        ));
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '"' | '[' | ']'))
    {
        return Err(format!(
            "expected key = value, found {key:?} as the key (a key has no spaces, '#', quotes or brackets)"
        ));
    }
    if key.split('.').any(str::is_empty) {
        return Err(format!(
            "malformed key {key:?}: expected dotted words such as cluster.etcd.prefix"
        ));
    }
    if key.split('.').count() > tree::MAX_DEPTH {
        return Err(format!(
            "malformed key: more than {} dotted parts",
            tree::MAX_DEPTH
        ));
    }
    let value = parse_value(line[eq + 1..].trim_start()).map_err(|why| format!("{key}: {why}"))?;
    Ok((key.to_string(), value))
}

fn parse_value(rest: &str) -> Result<String, String> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => value.push(e),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                },
                '"' => {
                    let after = quoted[i + 1..].trim_start();
                    if after.is_empty() || after.starts_with('#') {
                        return Ok(value);
                    }
                    return Err(format!(
                        "unexpected text {after:?} after the closing quote; expected a comment (# ...) or nothing"
                    ));
                }
                c => value.push(c),
            }
        }
        return Err("the value's opening quote is never closed".into());
    }
    Ok(strip_comment(rest).trim_end().to_string())
}

/// Cuts a trailing ` # comment`: a `#` preceded by whitespace.
fn strip_comment(value: &str) -> &str {
    let mut prev_space = false;
    for (i, c) in value.char_indices() {
        if c == '#' && prev_space {
            return &value[..i];
        }
        prev_space = c.is_whitespace();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<(String, String), String> {
        parse_line(line)
    }

    #[test]
    fn values_keep_urls_equals_and_hashes() {
        assert_eq!(
            one("cluster.etcd.server = http://a:2379,https://b:2379/x?y=z").unwrap(),
            (
                "cluster.etcd.server".into(),
                "http://a:2379,https://b:2379/x?y=z".into()
            )
        );
        assert_eq!(one("a.b = x#y").unwrap().1, "x#y");
        assert_eq!(one("a.b = x # comment").unwrap().1, "x");
        assert_eq!(one("a.b = x\t# comment").unwrap().1, "x");
        assert_eq!(one("a.b = \"x # y\" # c").unwrap().1, "x # y");
        assert_eq!(one("a.b = \"say \\\"hi\\\"\"").unwrap().1, "say \"hi\"");
        assert_eq!(one("a.b =").unwrap().1, "");
        assert_eq!(one("a.b=1").unwrap(), ("a.b".into(), "1".into()));
        assert_eq!(one("a.b = 0.0.0.0:1883").unwrap().1, "0.0.0.0:1883");
    }

    #[test]
    fn bad_lines_are_reported_with_the_expected_form() {
        assert!(one("just words")
            .unwrap_err()
            .contains("expected key = value"));
        assert!(one("= 1").unwrap_err().contains("no key"));
        assert!(one("a b = 1").unwrap_err().contains("no spaces"));
        assert!(one("a[9999999999999] = 1")
            .unwrap_err()
            .contains("or brackets"));
        assert!(one("a..b = 1").unwrap_err().contains("malformed key"));
        assert!(one("a = \"open").unwrap_err().contains("never closed"));
        assert!(one("a = \"x\" y")
            .unwrap_err()
            .contains("after the closing quote"));
    }

    #[test]
    fn keys_deeper_than_the_limit_are_refused() {
        let deep = format!("{} = 1", vec!["a"; 33].join("."));
        assert!(one(&deep)
            .unwrap_err()
            .contains("more than 32 dotted parts"));
        let ok = format!("{} = 1", vec!["a"; 32].join("."));
        assert!(one(&ok).is_ok());
    }

    #[test]
    fn comments_blank_lines_and_line_numbers() {
        let p = parse("\u{feff}## c\n\n  # c\nnode.name = a@b\r\nbad\n", "n.conf");
        assert_eq!(
            p.entries,
            vec![Entry::new("node.name".into(), "a@b".into(), "n.conf", 4)]
        );
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].origin.to_string(), "n.conf:5");
    }

    proptest::proptest! {
        /// Every line that is neither blank nor a comment is an entry or an error, none lost.
        #[test]
        fn every_line_is_accounted_for(text in "(([a-z.=# \"\\\\]|\r|\n){0,30}\n?){0,20}|\\PC*") {
            let parsed = parse(&text, "n.conf");
            let lines = text
                .strip_prefix('\u{feff}')
                .unwrap_or(&text)
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
                .count();
            proptest::prop_assert_eq!(parsed.entries.len() + parsed.errors.len(), lines);
        }
    }
}
