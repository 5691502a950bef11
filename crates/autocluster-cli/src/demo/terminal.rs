//! The demo's stdout: timestamps relative to the start, colors only on a terminal, and
//! durations as people read them.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use crate::print_out;

/// The demo's stdout: timestamps relative to the start, colors only on a terminal.
pub(super) struct Out {
    start: SystemTime,
    color: bool,
}

impl Out {
    pub(super) fn new() -> Out {
        Out {
            start: SystemTime::now(),
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub(super) fn raw(&self, text: &str) {
        // A closed stdout ends the output, not the demo: its nodes still leave cleanly.
        let _ = print_out(text);
    }

    pub(super) fn plain(&self, text: &str) {
        self.raw(&format!("{text}\n"));
    }

    pub(super) fn title(&self, text: &str) {
        self.plain(&self.paint("1", text));
    }

    pub(super) fn heading(&self, text: &str) {
        self.raw(&format!("\n{}\n", self.paint("1", text)));
    }

    pub(super) fn say(&self, at: SystemTime, text: &str) {
        let t = at.duration_since(self.start).unwrap_or_default();
        let stamp = format!("+{}.{:03}s", t.as_secs(), t.subsec_millis());
        self.plain(&format!("{}  {text}", self.dim(&format!("{stamp:>8}"))));
    }

    pub(super) fn note(&self, text: &str) {
        self.plain(&format!("{}  {}", " ".repeat(8), self.paint("36", text)));
    }

    pub(super) fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub(super) fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub(super) fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// `2s`, `1.5s`.
pub(super) fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `1.4 ms` below a second, `1.84 s` above.
pub(super) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(secs(Duration::from_secs(2)), "2s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_micros(1420)), "1.4 ms");
        assert_eq!(human(Duration::from_millis(1843)), "1.84 s");
    }
}
