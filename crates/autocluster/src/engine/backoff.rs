//! Exponential backoff with equal jitter.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `min` up to `max`; each one drawn uniformly from the upper half of
/// the current step ("equal jitter"), so that nodes restarted together spread out but never
/// retry sooner than half the step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_with_jitter_in_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut step = Duration::from_millis(100);
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} not in [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
