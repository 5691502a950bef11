//! Logging what the network sends: [`Escaped`] makes a value safe to put in a log line, and
//! [`RateLimit`] keeps warnings that a peer (or an attacker) can cause from flooding the log.
//!
//! A node name, a key under an etcd prefix, a DNS answer or a refused prober's words come
//! from outside. Written to a log as they are, a `\n` in them forges a whole line of their
//! choosing and an ANSI escape rewrites the operator's terminal; repeated as fast as a peer
//! can connect, they fill the disk. Every such value goes through [`Escaped`], and every
//! warning such a value can trigger through a [`RateLimit`]:
//!
//! ```
//! use std::time::Duration;
//! use autocluster_plugin::log::{Escaped, RateLimit};
//!
//! static BAD_NAME: RateLimit = RateLimit::new(Duration::from_secs(60));
//!
//! fn on_bad_name(name: &str) {
//!     if let Some(suppressed) = BAD_NAME.allow() {
//!         let name = Escaped::new(name);
//!         println!("WARN skipping a bad name {name} ({suppressed} more not logged)");
//!     }
//! }
//!
//! assert_eq!(Escaped::new("a\nb\u{1b}[2J").to_string(), r"a\nb\u{1b}[2J");
//! on_bad_name("x\ny");
//! ```

use std::fmt::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many characters of a value [`Escaped`] shows unless told otherwise.
pub const MAX_CHARS: usize = 256;

/// A value that came from outside, shown so that it cannot forge or hide log lines: control
/// and other invisible characters (newlines, ANSI escapes, bidirectional overrides, zero-width
/// characters) are written escaped, as Rust's `{:?}` writes them (`\n`, `\u{1b}`), and the
/// text stops after [`MAX_CHARS`] characters (or [`Escaped::max`]) with `…`.
///
/// Quotes and backslashes are left as they are: the value stays readable, and nothing it
/// holds can end the line it is written in.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T> {
    value: T,
    max: usize,
}

impl<T: fmt::Display> Escaped<T> {
    /// `value` (anything [`Display`](fmt::Display)), shown escaped and cut at [`MAX_CHARS`].
    pub fn new(value: T) -> Self {
        Escaped {
            value,
            max: MAX_CHARS,
        }
    }

    /// Shows at most `max` characters.
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = EscapingWriter {
            out: f,
            left: self.max,
            cut: false,
        };
        // `Full` only ends the copy early; it is not an error of the formatter.
        match write!(w, "{}", self.value) {
            Err(_) if w.cut => w.out.write_char('…'),
            other => other,
        }
    }
}

/// Writes what it is given escaped, until `left` characters are written.
struct EscapingWriter<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    left: usize,
    cut: bool,
}

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.left == 0 {
                self.cut = true;
                return Err(fmt::Error);
            }
            self.left -= 1;
            if needs_escape(c) {
                write!(self.out, "{}", c.escape_debug())?;
            } else {
                self.out.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Whether `c` is invisible or moves the cursor: what `{:?}` escapes, but quotes and
/// backslashes.
fn needs_escape(c: char) -> bool {
    !matches!(c, '"' | '\'' | '\\') && c.escape_debug().nth(1).is_some()
}

/// Lets a recurring warning through at most once per interval, and counts the ones it held
/// back. Shared by reference (`&self`), so one limit can serve many tasks; `const`, so it
/// can be a `static`.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// A limit of one warning per `every`; the first is always let through.
    pub const fn new(every: Duration) -> Self {
        RateLimit {
            every,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether a warning may be logged now: `Some(n)` with `n` the warnings held back since
    /// the last one let through (say so in the line), or `None` to stay quiet.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`RateLimit::allow`] at the time `now`.
    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = s
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if due {
            s.last = Some(now);
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_kept() {
        let forged = "emqx\n2099-01-01T00:00:00Z  INFO member joined\r\u{1b}[2K\u{202e}\u{200b}\t";
        let shown = Escaped::new(forged).to_string();
        assert_eq!(
            shown,
            r"emqx\n2099-01-01T00:00:00Z  INFO member joined\r\u{1b}[2K\u{202e}\u{200b}\t"
        );
        assert!(!shown.chars().any(char::is_control), "{shown}");
        // Readable text, quotes and backslashes included, is left alone.
        let plain = r#"émqx1@host "quoted" C:\dir"#;
        assert_eq!(Escaped::new(plain).to_string(), plain);
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(10_000);
        let shown = Escaped::new(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(Escaped::new("abcdef").max(3).to_string(), "abc…");
        assert_eq!(Escaped::new("abc").max(3).to_string(), "abc");
        // An escape counts as one character of the value.
        assert_eq!(Escaped::new("\n\n\n\n").max(2).to_string(), r"\n\n…");
        // Any Display value, not only strings.
        assert_eq!(
            Escaped::new(format_args!("a{}b", '\n')).to_string(),
            r"a\nb"
        );
    }

    #[test]
    fn a_rate_limit_lets_one_through_per_interval_and_counts_the_rest() {
        let limit = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(limit.allow_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(25)), Some(1));
        // A clock that goes back is not a reason to let a warning through.
        assert_eq!(limit.allow_at(t0), None);
    }
}
