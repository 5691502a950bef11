//! Bursts of changes read in batches.
//!
//! etcd sends each change to each watcher of the prefix in an answer of its own, as soon as
//! it is written: a formation of N nodes, each watching, is N×N answers, each a write of
//! etcd's to one connection and a wake-up of one node's process. At 1,000 agents on one
//! host that was 67–80 s of the agents' CPU and 26–36 s of etcd's for one formation, etcd's
//! apply fell behind, and etcd refused keep-alives until leases ran out
//! (docs/benchmarks.md, the mesh). A watcher that starts in the past is caught up from
//! etcd's history instead, up to 1,000 revisions in one answer.
//!
//! So the watch passes on every change as it comes while changes are rare; when an answer
//! with changes comes within `window` of the previous one (a burst), it passes it on,
//! cancels the nodes watcher (on the same stream), and a `window` later (±25 %, so a
//! thousand nodes do not reopen at once; never longer than the progress period, so the
//! engine does not take the pause for silence) opens it again from the revision after the
//! last change it passed on: what was written meanwhile comes in one answer (changes in it
//! mean the burst goes on: paused again; none, and the watcher stays open). The first
//! change of a burst is seen at once; the rest at most a `window` (and etcd's catch-up,
//! every 100 ms) later. Nothing is lost or repeated: the watcher resumes exactly after the
//! last revision passed on, and a history compacted meanwhile is `Compacted` (a resync), as
//! for any watch that resumes.

use std::hash::BuildHasher;
use std::time::Duration;

use tokio::time::Instant;

/// The watch's phase; see the [module](self) documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The nodes watcher is open.
    Live,
    /// Its cancel was sent: the answers still coming for it are passed on.
    Cancelling(i64),
    /// Cancelled; it is opened again at this instant.
    Paused(Instant),
    /// Its create was sent again.
    Reopening,
}

/// When to pause the nodes watcher; see the [module](self) documentation.
#[derive(Debug)]
pub(super) struct Coalesce {
    window: Duration,
    /// The longest pause: the watch's progress period.
    max_pause: Duration,
    phase: Phase,
    /// When the last answer with changes was passed on (or the watcher was reopened).
    last_changes: Option<Instant>,
    /// Pauses so far.
    pauses: u64,
}

impl Coalesce {
    /// Bursts closer than `window` are paused for (about) `window`, at most `max_pause`;
    /// a zero `window` never pauses.
    pub(super) fn new(window: Duration, max_pause: Duration) -> Coalesce {
        Coalesce {
            window,
            max_pause,
            phase: Phase::Live,
            last_changes: None,
            pauses: 0,
        }
    }

    /// Whether the nodes watcher is open (not paused, nor being cancelled or reopened).
    pub(super) fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// When the paused watcher is to be opened again.
    pub(super) fn reopen_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Paused(at) => Some(at),
            _ => None,
        }
    }

    /// An answer of watcher `id` with changes was passed on at `now`: `Some(id)` when that
    /// is a burst and the watcher is to be cancelled. A reopening counts as changes: a
    /// catch-up with changes written during the pause means the burst goes on.
    /// Only a `large` cluster pauses: in a small one the fan-out is cheap, and every change
    /// is seen at once.
    pub(super) fn on_changes(&mut self, now: Instant, id: i64, large: bool) -> Option<i64> {
        let burst = self.phase == Phase::Live
            && large
            && !self.window.is_zero()
            && self
                .last_changes
                .is_some_and(|t| now.saturating_duration_since(t) < self.window);
        self.last_changes = Some(now);
        burst.then(|| {
            self.phase = Phase::Cancelling(id);
            id
        })
    }

    /// etcd cancelled watcher `id` at `now`: true when this asked for it (the pause starts).
    pub(super) fn on_cancelled(&mut self, id: i64, now: Instant) -> bool {
        if self.phase != Phase::Cancelling(id) {
            return false;
        }
        self.pauses += 1;
        self.phase = Phase::Paused(now + self.pause(random()));
        true
    }

    /// The create was sent again.
    pub(super) fn on_reopening(&mut self) {
        self.phase = Phase::Reopening;
    }

    /// etcd created the nodes watcher at `now`: true when it was reopened after a pause.
    pub(super) fn on_created(&mut self, now: Instant) -> bool {
        let reopened = self.phase == Phase::Reopening;
        self.phase = Phase::Live;
        if reopened {
            self.last_changes = Some(now);
        }
        reopened
    }

    /// How many times the watcher was paused.
    pub(super) fn pauses(&self) -> u64 {
        self.pauses
    }

    /// The pause for a draw `r` (uniform over `u64`): `window` ±25 %, at most `max_pause`.
    fn pause(&self, r: u64) -> Duration {
        let quarter = self.window / 4;
        let spread = quarter.as_nanos() as u64 * 2;
        let offset = if spread == 0 { 0 } else { r % (spread + 1) };
        (self.window - quarter + Duration::from_nanos(offset)).min(self.max_pause)
    }
}

fn random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rare_changes_never_pause() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(W, Duration::from_secs(5));
        for i in 0..10 {
            assert_eq!(c.on_changes(t0 + W * i, 7, true), None);
        }
        assert!(c.is_live());
        assert_eq!(c.pauses(), 0);
    }

    #[test]
    fn a_burst_pauses_then_reopens_and_a_catch_up_alone_does_not_pause_again() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(W, Duration::from_secs(5));
        assert_eq!(c.on_changes(t0, 7, true), None);
        assert_eq!(c.on_changes(t0 + 10 * MS, 7, true), Some(7));
        assert!(!c.is_live());
        // Answers still coming for the cancelled watcher: passed on, no second cancel.
        assert_eq!(c.on_changes(t0 + 11 * MS, 7, true), None);
        // Another watcher's cancel is not this one's.
        assert!(!c.on_cancelled(8, t0 + 12 * MS));
        assert!(c.on_cancelled(7, t0 + 12 * MS));
        let at = c.reopen_at().expect("paused");
        let pause = at - (t0 + 12 * MS);
        assert!(pause >= W * 3 / 4 && pause <= W * 5 / 4, "{pause:?}");
        c.on_reopening();
        assert_eq!(c.reopen_at(), None);
        assert!(c.on_created(at));
        assert!(c.is_live());
        // The catch-up brings changes written during the pause: the burst goes on.
        assert_eq!(c.on_changes(at + 5 * MS, 9, true), Some(9));
        assert!(c.on_cancelled(9, at + 6 * MS));
        let again = c.reopen_at().expect("paused again");
        c.on_reopening();
        assert!(c.on_created(again));
        // Nothing came during the second pause (no answer with changes): the watcher stays
        // open, and a change a window later passes alone.
        assert!(c.is_live());
        assert_eq!(c.on_changes(again + W + MS, 10, true), None);
        assert_eq!(c.pauses(), 2);
    }

    #[test]
    fn a_small_cluster_never_pauses() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(W, Duration::from_secs(5));
        for i in 0..10 {
            assert_eq!(c.on_changes(t0 + MS * i, 7, false), None);
        }
        assert_eq!(c.on_changes(t0 + MS * 10, 7, true), Some(7));
    }

    #[test]
    fn a_zero_window_never_pauses() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(Duration::ZERO, Duration::from_secs(5));
        for i in 0..10 {
            assert_eq!(c.on_changes(t0 + MS * i, 7, true), None);
        }
    }

    #[test]
    fn the_first_creation_is_not_a_reopening() {
        let mut c = Coalesce::new(W, Duration::from_secs(5));
        assert!(!c.on_created(Instant::now()));
    }

    #[test]
    fn the_pause_spreads_around_the_window_and_never_passes_the_progress_period() {
        let c = Coalesce::new(W, Duration::from_secs(5));
        assert_eq!(c.pause(0), W * 3 / 4);
        assert_eq!(c.pause(u64::MAX), c.pause(u64::MAX % 500_000_001));
        let all: Vec<Duration> = (0..1000u64)
            .map(|i| c.pause(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        assert!(all.iter().all(|p| *p >= W * 3 / 4 && *p <= W * 5 / 4));
        assert!(all.iter().any(|p| *p > W * 9 / 8) && all.iter().any(|p| *p < W * 7 / 8));
        let capped = Coalesce::new(W, Duration::from_millis(500));
        assert!((0..100u64).all(|r| capped.pause(r * 7_777_777) == Duration::from_millis(500)));
    }
}
