//! Failover over the configured endpoints, shared by the v3 (gRPC) and v2 (HTTP) clients.
//!
//! Calls go to the *current* endpoint: the one that answered last. A call that finds it
//! unusable (refused, unreachable, no leader, or no answer within the endpoint's share of the
//! call time) moves the current endpoint on and tries the next one, within the same call, at
//! most once around the list. An answer that is not about the endpoint (a lost lease, a
//! compacted revision, an authentication or TLS failure, a key that exists) ends the call at
//! once: another endpoint of the same cluster would say the same.
//!
//! The share: the engine bounds every backend call by `cluster.call_timeout` (handed to the
//! backend in its context); the share is that time divided by the number of endpoints, at
//! least [`MIN_SHARE`]. The last endpoint of a round has no share of its own: the engine's
//! bound ends it. A call the engine gives up on while an endpoint has it
//! (other than one that waits by design) counts as that endpoint's failure too, so whatever
//! `call_timeout` is, the next call starts on the next endpoint.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use autocluster_plugin::log::Escaped;
use autocluster_plugin::{Error, ErrorKind, Result};

use crate::NAME;

/// The shortest time an endpoint is given before the call moves on.
pub(crate) const MIN_SHARE: Duration = Duration::from_millis(500);

/// Whether a call may be cut after the endpoint's share of the call time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// An ordinary request: it moves on after the share.
    Share,
    /// A call that waits by design (the v3 Lock API): it moves on only after a failure.
    Waits,
}

/// The endpoints, which one is current, and which ever answered.
#[derive(Debug)]
pub(crate) struct Endpoints {
    urls: Vec<String>,
    current: AtomicUsize,
    /// Per endpoint: whether it ever answered (see `from_etcd`'s `fresh_tls`).
    answered: Vec<AtomicBool>,
    share: Duration,
}

impl Endpoints {
    /// `urls` (at least one) sharing a call time of `budget` (`cluster.call_timeout`).
    pub(crate) fn new(urls: Vec<String>, budget: Duration) -> Endpoints {
        assert!(
            !urls.is_empty(),
            "the config requires at least one endpoint"
        );
        let share = (budget / urls.len() as u32).max(MIN_SHARE);
        Endpoints {
            answered: urls.iter().map(|_| AtomicBool::new(false)).collect(),
            urls,
            current: AtomicUsize::new(0),
            share,
        }
    }

    /// The URL of endpoint `idx`.
    pub(crate) fn url(&self, idx: usize) -> &str {
        &self.urls[idx]
    }

    /// The endpoint calls go to now.
    pub(crate) fn current(&self) -> &str {
        &self.urls[self.current_index()]
    }

    fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.urls.len()
    }

    /// Whether endpoint `idx` ever answered a call.
    pub(crate) fn answered(&self, idx: usize) -> bool {
        self.answered[idx].load(Ordering::Relaxed)
    }

    /// How long one endpoint is given before a call moves on; `None` with a single endpoint
    /// (the engine's bound is the only one).
    pub(crate) fn share(&self) -> Option<Duration> {
        (self.urls.len() > 1).then_some(self.share)
    }

    /// Endpoint `idx` failed: the next call starts on the one after it, unless another call
    /// already moved on.
    pub(crate) fn passed(&self, idx: usize) {
        let next = (idx + 1) % self.urls.len();
        let _ = self
            .current
            .compare_exchange(idx, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `attempt(idx)` on the current endpoint, and on the next ones while it fails in a
    /// way that is about the endpoint (see the [module](self) documentation).
    pub(crate) async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        bound: Bound,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let n = self.urls.len();
        let start = self.current_index();
        let mut failed = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let res = self.attempt(op, bound, i + 1 == n, idx, &attempt).await;
            match res {
                Ok(v) => {
                    self.current.store(idx, Ordering::Relaxed);
                    self.answered[idx].store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if n > 1 && about_the_endpoint(&e) => {
                    let shown = Escaped::new(&e).max(1024);
                    tracing::debug!(backend = NAME, endpoint = %self.urls[idx], "{shown}; trying the next endpoint");
                    self.passed(idx);
                    failed = Some(e);
                }
                Err(e) => {
                    if !about_the_endpoint(&e) {
                        // It answered: stay with it.
                        self.current.store(idx, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            }
        }
        // Every endpoint failed: say so, with the last one's cause.
        let mut e = Error::new(
            ErrorKind::Unavailable,
            format!("cannot reach any etcd endpoint of {}", self.urls.join(",")),
        )
        .with_backend(NAME)
        .with_operation(op)
        .with_endpoint(self.urls.join(","));
        if let Some(last) = failed {
            e = e.with_source(last);
        }
        Err(e)
    }

    /// One try on endpoint `idx`, bounded by its share unless it is the `last` of the round
    /// or a call that waits.
    async fn attempt<T, F, Fut>(
        &self,
        op: &'static str,
        bound: Bound,
        last: bool,
        idx: usize,
        attempt: &F,
    ) -> Result<T>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if bound == Bound::Waits {
            return attempt(idx).await;
        }
        // Passes the endpoint if the call is dropped (the engine gave up) before it ends.
        let mut guard = PassOnDrop {
            endpoints: self,
            idx,
            armed: true,
        };
        let res = if last {
            attempt(idx).await
        } else {
            tokio::time::timeout(self.share, attempt(idx))
                .await
                .unwrap_or_else(|_| Err(self.no_answer(op, idx)))
        };
        guard.armed = false;
        res
    }

    fn no_answer(&self, op: &'static str, idx: usize) -> Error {
        let url = &self.urls[idx];
        Error::new(
            ErrorKind::Timeout,
            format!(
                "etcd at {url} did not answer within {:?}, its share of the call",
                self.share
            ),
        )
        .with_backend(NAME)
        .with_operation(op)
        .with_endpoint(url.as_str())
    }
}

/// Whether `e` says the endpoint could not serve (so another one may).
fn about_the_endpoint(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
}

/// Passes its endpoint when dropped armed: the call was given up while that endpoint had it.
struct PassOnDrop<'a> {
    endpoints: &'a Endpoints,
    idx: usize,
    armed: bool,
}

impl Drop for PassOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.endpoints.passed(self.idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL_BUDGET: Duration = autocluster_plugin::BackendContext::DEFAULT_CALL_TIMEOUT;

    fn three() -> Endpoints {
        Endpoints::new(
            vec![
                "http://a:2379".into(),
                "http://b:2379".into(),
                "http://c:2379".into(),
            ],
            CALL_BUDGET,
        )
    }

    fn err(kind: ErrorKind) -> Error {
        Error::new(kind, "test")
    }

    #[test]
    fn the_share_splits_the_call_time_with_a_floor() {
        assert_eq!(three().share(), Some(CALL_BUDGET / 3));
        let one = Endpoints::new(vec!["http://a:2379".into()], CALL_BUDGET);
        assert_eq!(one.share(), None);
        let many = Endpoints::new(
            (0..20).map(|i| format!("http://h{i}:2379")).collect(),
            CALL_BUDGET,
        );
        assert_eq!(many.share(), Some(MIN_SHARE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_endpoint_is_left_after_its_share() {
        let e = three();
        let start = tokio::time::Instant::now();
        let got = e
            .call("test", Bound::Share, |idx| async move {
                if idx == 0 {
                    std::future::pending::<()>().await;
                }
                Ok(idx)
            })
            .await
            .unwrap();
        assert_eq!(got, 1);
        // (tokio's timers count whole milliseconds)
        let took = start.elapsed();
        let share = CALL_BUDGET / 3;
        assert!(
            took >= share && took <= share + Duration::from_millis(1),
            "{took:?}"
        );
        assert_eq!(e.current(), "http://b:2379");
        assert!(e.answered(1) && !e.answered(0));
    }

    #[tokio::test(start_paused = true)]
    async fn only_failures_about_the_endpoint_move_on() {
        let e = three();
        let got = e
            .call("test", Bound::Share, |idx| async move {
                Err::<(), _>(err(if idx == 0 {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::LeaseLost
                }))
            })
            .await
            .unwrap_err();
        assert_eq!(got.kind(), ErrorKind::LeaseLost);
        assert_eq!(e.current(), "http://b:2379");
    }

    #[tokio::test(start_paused = true)]
    async fn once_around_the_list_then_unavailable() {
        let e = three();
        let tries = AtomicUsize::new(0);
        let got = e
            .call("test", Bound::Share, |_| {
                tries.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(err(ErrorKind::Timeout)) }
            })
            .await
            .unwrap_err();
        assert_eq!(tries.load(Ordering::Relaxed), 3);
        assert_eq!(got.kind(), ErrorKind::Unavailable);
        assert!(
            got.to_string()
                .contains("http://a:2379,http://b:2379,http://c:2379"),
            "{got}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_given_up_passes_its_endpoint() {
        let e = three();
        let hang = e.call("test", Bound::Share, |_| {
            std::future::pending::<Result<()>>()
        });
        assert!(tokio::time::timeout(Duration::from_millis(100), hang)
            .await
            .is_err());
        assert_eq!(e.current(), "http://b:2379");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_has_no_share() {
        let e = three();
        let start = tokio::time::Instant::now();
        e.call("test", Bound::Waits, |_| async {
            tokio::time::sleep(CALL_BUDGET * 2).await;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(start.elapsed(), CALL_BUDGET * 2);
        assert_eq!(e.current(), "http://a:2379");
    }
}
