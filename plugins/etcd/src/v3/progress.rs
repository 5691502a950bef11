//! Whether a watch keeps up with etcd. Every `progress_every` the watch asks etcd for its
//! progress (a progress request on the watch stream); the answer's revision, or an event's,
//! must reach the revision etcd reported elsewhere (keep-alives, registration, snapshots)
//! when it was asked, within `stall_after`. A watch that does not, and did not move forward
//! either, is stalled: etcd 3.4 behind a watch with previous values, a member that stopped
//! serving the stream while another one answers the keep-alives. A watch that lags but keeps
//! moving forward (events of later revisions keep coming) is busy, not stalled: an etcd
//! sending a full mesh's formation (N puts, each an event for N watchers) is behind by
//! seconds, and reopening every lagging watch, with a resync, is what turned that overload
//! into churn at 1,000 agents (docs/benchmarks.md, the mesh).
//!
//! A stream that never answered a progress request cannot be checked this way: an etcd gRPC
//! proxy ignores them, and etcd versions that answer only once every watcher of the stream
//! caught up (3.4.25+, 3.5.8+) did not answer a watcher that started at or before the current
//! revision until an event passed (fixed in 3.4.31 and 3.5.13). Such a stream is taken as
//! live while it is open, with notices by the clock, and said so once in the log; a stream
//! that answered and then stops is stalled.

use std::time::Duration;

use tokio::time::Instant;

/// The progress of one watch stream; see the [module](self) documentation.
#[derive(Debug)]
pub(super) struct Progress {
    every: Duration,
    stall_after: Duration,
    /// When the next request is due.
    next: Instant,
    /// Since when the watch has not shown it reached the revision etcd reported elsewhere
    /// then (the target).
    behind: Option<(Instant, i64)>,
    /// Whether this stream answered a progress request.
    answered: bool,
    /// This stream does not answer progress requests: notices come by the clock.
    unanswered: bool,
    /// The highest revision the watch showed, and whether it moved since the last tick.
    high: i64,
    advanced: bool,
}

/// What to do when a tick is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tick {
    /// Ask etcd how far the watch got.
    Request,
    /// The watch has not reached `target` for `behind`: it is stalled.
    Stalled {
        /// How long it has been behind.
        behind: Duration,
        /// The revision etcd reported elsewhere that the watch did not reach.
        target: i64,
    },
    /// The stream does not answer progress requests (first seen now): a notice, by the
    /// clock.
    NoAnswers,
    /// A notice by the clock (the stream does not answer progress requests).
    Notice,
}

impl Progress {
    /// A stream opened at `now`: the first request is due at once.
    pub(super) fn new(now: Instant, every: Duration, stall_after: Duration) -> Progress {
        Progress {
            every,
            stall_after,
            next: now,
            behind: None,
            answered: false,
            unanswered: false,
            high: 0,
            advanced: false,
        }
    }

    /// The same stream with its watcher reopened after a pause: judged afresh from `now`
    /// (a request at once), keeping what the stream is known to do (whether it answers
    /// progress requests: behind a proxy it never does, and must not be learned again, without
    /// notices, at every pause) and the highest revision seen.
    pub(super) fn restart(&mut self, now: Instant) {
        self.next = now;
        self.behind = None;
        self.advanced = false;
    }

    /// When the next tick is due.
    pub(super) fn next_tick(&self) -> Instant {
        self.next
    }

    /// The tick is due at `now`; `seen` is the revision etcd last reported elsewhere.
    pub(super) fn tick(&mut self, now: Instant, seen: i64) -> Tick {
        self.next = now + self.every;
        if self.unanswered {
            return Tick::Notice;
        }
        if std::mem::take(&mut self.advanced) {
            // Behind, but moving: the clock of a stall starts again from here.
            if let Some((since, _)) = &mut self.behind {
                *since = now;
            }
        }
        match self.behind {
            Some((since, target)) if now.duration_since(since) >= self.stall_after => {
                if self.answered {
                    return Tick::Stalled {
                        behind: now.duration_since(since),
                        target,
                    };
                }
                self.unanswered = true;
                return Tick::NoAnswers;
            }
            Some(_) => {}
            None => self.behind = Some((now, seen)),
        }
        Tick::Request
    }

    /// The watch showed it reached `revision`: by the answer to a progress request
    /// (`answer`) or by an event. True when the watch is caught up (a progress notice is
    /// due).
    pub(super) fn reached(&mut self, revision: i64, answer: bool) -> bool {
        self.answered |= answer;
        if revision > self.high {
            self.advanced = self.high > 0;
            self.high = revision;
        }
        if matches!(self.behind, Some((_, target)) if revision >= target) {
            self.behind = None;
        }
        self.behind.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(1);
    const STALL: Duration = Duration::from_secs(5);

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn answers_that_reach_the_target_keep_the_watch_live() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        for s in 0..20 {
            assert_eq!(p.tick(at(t0, s), 100 + s as i64), Tick::Request);
            assert!(p.reached(100 + s as i64, true));
            assert_eq!(p.next_tick(), at(t0, s + 1));
        }
    }

    #[test]
    fn a_watch_that_answers_below_the_target_is_stalled_after_the_bound() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        assert_eq!(p.tick(t0, 100), Tick::Request);
        assert!(p.reached(100, true));
        // etcd moved on to 200 (keep-alives say so); the watch's answers stay at 100.
        assert_eq!(p.tick(at(t0, 1), 200), Tick::Request);
        for s in 2..6 {
            assert!(!p.reached(100, true));
            assert_eq!(p.tick(at(t0, s), 300), Tick::Request);
        }
        assert_eq!(
            p.tick(at(t0, 6), 300),
            Tick::Stalled {
                behind: STALL,
                target: 200
            }
        );
    }

    #[test]
    fn a_watch_behind_but_moving_forward_is_not_stalled() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        assert_eq!(p.tick(t0, 100), Tick::Request);
        assert!(p.reached(100, true));
        // etcd is at 2,000 (a formation's puts); the watch delivers them, slowly.
        for s in 1..30 {
            assert_eq!(p.tick(at(t0, s), 2_000), Tick::Request, "at {s} s");
            assert!(!p.reached(100 + 10 * s as i64, false));
        }
        // It stops moving: a stall, counted from its last step forward.
        for s in 30..35 {
            assert_eq!(p.tick(at(t0, s), 2_000), Tick::Request, "at {s} s");
        }
        assert!(matches!(
            p.tick(at(t0, 35), 2_000),
            Tick::Stalled { behind, .. } if behind == STALL
        ));
    }

    #[test]
    fn an_event_at_the_target_is_progress_too() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        assert_eq!(p.tick(t0, 100), Tick::Request);
        assert!(p.reached(120, false));
        assert_eq!(p.tick(at(t0, 6), 130), Tick::Request);
    }

    #[test]
    fn silence_is_a_stall_once_the_stream_answered() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        assert_eq!(p.tick(t0, 100), Tick::Request);
        assert!(p.reached(100, true));
        for s in 1..6 {
            assert_eq!(p.tick(at(t0, s), 100), Tick::Request);
        }
        assert!(matches!(p.tick(at(t0, 6), 100), Tick::Stalled { .. }));
    }

    #[test]
    fn a_restart_keeps_what_the_stream_is_known_to_do() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        for s in 0..5 {
            assert_eq!(p.tick(at(t0, s), 100), Tick::Request);
        }
        assert_eq!(p.tick(at(t0, 5), 100), Tick::NoAnswers);
        p.restart(at(t0, 6));
        assert_eq!(p.next_tick(), at(t0, 6));
        // Still a stream that does not answer: notices by the clock at once.
        assert_eq!(p.tick(at(t0, 6), 100), Tick::Notice);

        // One that answers is judged from the restart on.
        let mut q = Progress::new(t0, EVERY, STALL);
        assert_eq!(q.tick(t0, 100), Tick::Request);
        assert!(q.reached(100, true));
        assert_eq!(q.tick(at(t0, 1), 200), Tick::Request);
        q.restart(at(t0, 2));
        assert_eq!(q.tick(at(t0, 2), 300), Tick::Request);
        assert!(q.reached(300, true));
    }

    #[test]
    fn a_stream_that_never_answers_gets_notices_by_the_clock() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, EVERY, STALL);
        for s in 0..5 {
            assert_eq!(p.tick(at(t0, s), 100), Tick::Request);
        }
        assert_eq!(p.tick(at(t0, 5), 100), Tick::NoAnswers);
        for s in 6..10 {
            assert_eq!(p.tick(at(t0, s), 100), Tick::Notice);
        }
    }
}
