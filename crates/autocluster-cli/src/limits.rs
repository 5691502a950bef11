//! The agent's open-file budget, and a limiter for warnings that could repeat without end.
//!
//! Every descriptor the agent needs comes from one limit (`RLIMIT_NOFILE`, 1,024 by default
//! under systemd): the backend's connections, the probe listener and its peers, each
//! `--on-change` handler's pipes, the members file, and the admin endpoint's connections.
//! At start the soft limit is raised to the hard one where allowed; the admin endpoint
//! then gets at most half of what is left after [`RESERVED_FILES`], and never more than
//! [`MAX_ADMIN_CONNECTIONS`], so that no number of idle admin connections can take the
//! descriptors the rest needs.

use std::time::{Duration, Instant};

/// Descriptors kept for everything but admin connections.
pub const RESERVED_FILES: u64 = 256;
/// The most admin connections at once, however high the limit (a local endpoint needs a
/// handful).
pub const MAX_ADMIN_CONNECTIONS: usize = 512;
/// The fewest, however low the limit.
pub const MIN_ADMIN_CONNECTIONS: usize = 16;

/// The open-file limit in effect and what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBudget {
    /// The soft limit now (`None`: unlimited or unknown).
    pub limit: Option<u64>,
    /// The soft limit before it was raised, if it was.
    pub raised_from: Option<u64>,
    /// Admin connections allowed at once.
    pub admin_connections: usize,
}

impl FileBudget {
    /// Raises the soft open-file limit to the hard one where allowed, and derives the budget.
    pub fn at_start() -> FileBudget {
        let (limit, raised_from) = raise_limit();
        FileBudget {
            limit,
            raised_from,
            admin_connections: admin_connections(limit),
        }
    }
}

/// Admin connections for a soft limit of `limit` files.
pub fn admin_connections(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return MAX_ADMIN_CONNECTIONS;
    };
    let spare = limit.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(spare)
        .unwrap_or(usize::MAX)
        .clamp(MIN_ADMIN_CONNECTIONS, MAX_ADMIN_CONNECTIONS)
}

/// (the soft limit now, the one before if it was raised).
#[cfg(unix)]
fn raise_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (current, maximum) else {
        return (current, None);
    };
    if soft >= hard {
        return (Some(soft), None);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => (Some(hard), Some(soft)),
        Err(_) => (Some(soft), None),
    }
}

#[cfg(not(unix))]
fn raise_limit() -> (Option<u64>, Option<u64>) {
    (None, None)
}

/// Lets one warning through every `every`, and counts the ones held back in between.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimited {
    pub fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)`: log now, saying `n` were held back since the last one; `None`: hold back.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.every)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_connections_stay_well_below_the_limit() {
        assert_eq!(admin_connections(Some(1024)), 384);
        assert_eq!(admin_connections(Some(100)), MIN_ADMIN_CONNECTIONS);
        assert_eq!(admin_connections(Some(1 << 20)), MAX_ADMIN_CONNECTIONS);
        assert_eq!(admin_connections(None), MAX_ADMIN_CONNECTIONS);
    }

    #[test]
    fn a_rate_limited_warning_counts_what_it_held_back() {
        let mut w = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(w.allow(), Some(0));
        assert_eq!(w.allow(), None);
        assert_eq!(w.allow(), None);
        w.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(w.allow(), Some(2));
    }
}
