//! Whether a figure meets its goal: computed from the figure against the goal, never written
//! by hand, so that every row can say "not met". A figure that was not measured (no samples:
//! `NaN`) or is zero where a positive figure is expected does not meet its goal.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The figure meets its goal.
    Met,
    /// The figure misses its goal, or was not measured.
    NotMet,
    /// A figure without a goal, measured.
    Reported,
}

impl Verdict {
    /// A positive figure no larger than `limit` (latencies, durations, memory).
    pub fn at_most(figure: f64, limit: f64) -> Verdict {
        Verdict::holds(figure > 0.0 && figure <= limit)
    }

    /// A positive count within `least..=most` (`least` ≥ 1: zero is never within).
    pub fn within(figure: f64, least: f64, most: f64) -> Verdict {
        Verdict::holds(figure > 0.0 && least <= figure && figure <= most)
    }

    /// A count that must be exactly `want` (no etcd calls: 0; one watch per node).
    pub fn exactly(figure: f64, want: f64) -> Verdict {
        Verdict::holds(figure == want)
    }

    /// A figure without a goal (memory per member, a count of samples): reported when it is
    /// a positive measurement, not met when it is zero or missing.
    pub fn reported(figure: f64) -> Verdict {
        if figure > 0.0 && figure.is_finite() {
            Verdict::Reported
        } else {
            Verdict::NotMet
        }
    }

    /// Both: not met if either is not met; met if either is a goal that is met.
    pub fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::NotMet, _) | (_, Verdict::NotMet) => Verdict::NotMet,
            (Verdict::Met, _) | (_, Verdict::Met) => Verdict::Met,
            _ => Verdict::Reported,
        }
    }

    /// Whether this verdict is held against a goal (and counts in "N of M goals met").
    pub fn is_goal(self) -> bool {
        self != Verdict::Reported
    }

    /// The table's "met" column.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::Reported => "",
        }
    }

    fn holds(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }
}

/// How many keep-alives `nodes` nodes send in a window of `window`, at least and at most,
/// when each sends one every `every` after the previous one was answered (so a little more
/// than `every` apart: up to 10 % is allowed) and every node registered before the window
/// opened. A window shorter than that gives a least of 0.
pub fn keep_alive_bounds(nodes: usize, window: Duration, every: Duration) -> (f64, f64) {
    let w = window.as_secs_f64();
    let e = every.as_secs_f64();
    let least = (w / (e * 1.1)).floor();
    let most = (w / e).floor() + 1.0;
    (nodes as f64 * least, nodes as f64 * most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_figure_against_a_goal_is_not_met() {
        assert_eq!(Verdict::within(0.0, 101.0, 127.0), Verdict::NotMet);
        assert_eq!(Verdict::within(0.0, 0.0, 127.0), Verdict::NotMet);
        assert_eq!(Verdict::at_most(0.0, 15.0), Verdict::NotMet);
        assert_eq!(Verdict::reported(0.0), Verdict::NotMet);
        assert_eq!(Verdict::within(110.0, 101.0, 127.0), Verdict::Met);
        assert_eq!(Verdict::at_most(9.1, 15.0), Verdict::Met);
    }

    #[test]
    fn a_missing_figure_is_not_met() {
        assert_eq!(Verdict::at_most(f64::NAN, 15.0), Verdict::NotMet);
        assert_eq!(Verdict::at_most(3.0, f64::NAN), Verdict::NotMet);
        assert_eq!(Verdict::within(f64::NAN, 1.0, 2.0), Verdict::NotMet);
        assert_eq!(Verdict::reported(f64::NAN), Verdict::NotMet);
        assert_eq!(Verdict::exactly(f64::NAN, 0.0), Verdict::NotMet);
    }

    #[test]
    fn figures_past_their_goal_are_not_met() {
        assert_eq!(Verdict::at_most(15.1, 15.0), Verdict::NotMet);
        assert_eq!(Verdict::within(128.0, 101.0, 127.0), Verdict::NotMet);
        assert_eq!(Verdict::within(100.0, 101.0, 127.0), Verdict::NotMet);
        assert_eq!(Verdict::exactly(1.0, 0.0), Verdict::NotMet);
        assert_eq!(Verdict::exactly(0.0, 0.0), Verdict::Met);
    }

    #[test]
    fn one_miss_fails_the_row() {
        assert_eq!(Verdict::Met.and(Verdict::NotMet), Verdict::NotMet);
        assert_eq!(Verdict::NotMet.and(Verdict::Met), Verdict::NotMet);
        assert_eq!(Verdict::Reported.and(Verdict::NotMet), Verdict::NotMet);
        assert_eq!(Verdict::Met.and(Verdict::Met), Verdict::Met);
        assert_eq!(Verdict::Reported.and(Verdict::Reported), Verdict::Reported);
        assert!(!Verdict::Reported.is_goal());
    }

    #[test]
    fn keep_alive_bounds_follow_the_window() {
        let s = Duration::from_secs;
        // The full run: 45 s at one every 20 s is two or three per node.
        assert_eq!(keep_alive_bounds(10, s(45), s(20)), (20.0, 30.0));
        // --quick: 5 s at one every 2 s.
        assert_eq!(keep_alive_bounds(504, s(5), s(2)), (1008.0, 1512.0));
        // The old --quick window, 4 s at one every 20 s: a node may send none in it.
        assert_eq!(keep_alive_bounds(504, s(4), s(20)).0, 0.0);
        assert_eq!(
            Verdict::within(0.0, 0.0, keep_alive_bounds(504, s(4), s(20)).1),
            Verdict::NotMet
        );
    }
}
