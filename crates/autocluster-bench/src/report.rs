//! Percentiles and the markdown table of figures.

use std::fmt::Write as _;
use std::time::Duration;

use crate::verdict::Verdict;

/// Nearest-rank percentile of `v` (milliseconds); `NaN` when empty.
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

pub fn fmt_s(v_ms: f64) -> String {
    if v_ms.is_nan() {
        "n/a".into()
    } else {
        format!("{:.2} s", v_ms / 1000.0)
    }
}

pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.1}x", a / b)
    }
}

/// One line of the table.
pub struct Row {
    pub what: String,
    pub ours: String,
    pub raw: String,
    pub poll: String,
    pub goal: String,
    pub verdict: Verdict,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn row(
        &mut self,
        what: impl Into<String>,
        ours: impl Into<String>,
        raw: impl Into<String>,
        poll: impl Into<String>,
        goal: impl Into<String>,
        verdict: Verdict,
    ) {
        let row = Row {
            what: what.into(),
            ours: ours.into(),
            raw: raw.into(),
            poll: poll.into(),
            goal: goal.into(),
            verdict,
        };
        eprintln!(
            "  {} | {} | {} | {} | {} | {}",
            row.what,
            row.ours,
            row.raw,
            row.poll,
            row.goal,
            row.verdict.label()
        );
        self.rows.push(row);
    }

    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        eprintln!("  note: {s}");
        self.notes.push(s);
    }

    pub fn markdown(&self, header: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{header}");
        let _ = writeln!(
            out,
            "| what | autocluster | raw etcd-client | 1 s polling loop | goal | met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.what,
                r.ours,
                r.raw,
                r.poll,
                r.goal,
                r.verdict.label()
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        let (met, goals) = self.goals_met();
        let _ = writeln!(out, "\n{met} of {goals} goals met.");
        out
    }

    /// How many rows met their goal, and how many were held against one.
    pub fn goals_met(&self) -> (usize, usize) {
        let met = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Met)
            .count();
        let goals = self.rows.iter().filter(|r| r.verdict.is_goal()).count();
        (met, goals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_keep_alive_count_is_reported_as_not_met() {
        let mut r = Report::default();
        r.row(
            "keep-alives",
            "0",
            "",
            "",
            "1008 to 1512",
            Verdict::within(0.0, 1008.0, 1512.0),
        );
        r.row(
            "memory",
            "500 B",
            "",
            "",
            "report",
            Verdict::reported(500.0),
        );
        let md = r.markdown("header");
        assert!(
            md.contains("| keep-alives | 0 |  |  | 1008 to 1512 | **not met** |"),
            "{md}"
        );
        assert!(md.contains("0 of 1 goals met."), "{md}");
        assert_eq!(r.goals_met(), (0, 1));
    }
}
