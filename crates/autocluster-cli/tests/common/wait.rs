//! Bounded waits: poll a condition until it holds, or fail saying what was awaited.

use std::time::{Duration, Instant};

/// The longest any awaited condition may take, unless a test names its own bound.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `f` until it gives a value, for at most [`WAIT`]; on time-out, panics with `what` and
/// `diag()` (say, the agents' logs).
#[track_caller]
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>, diag: impl Fn() -> String) -> T {
    wait_within(WAIT, what, f, diag)
}

/// [`wait_for`] with a bound of its own.
#[track_caller]
pub fn wait_within<T>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    diag: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("waited {within:?} for {what}\n{}", diag());
        }
        std::thread::sleep(POLL);
    }
}
