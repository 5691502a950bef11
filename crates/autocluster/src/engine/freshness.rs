//! Whether the view is stale, derived in one place from what it depends on.

/// What the view's freshness depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Freshness {
    /// A first snapshot was applied (or, for observing backends, listening began).
    pub synced: bool,
    /// The backend is being read live: the watch is established, the last poll answered, or
    /// the node is listening.
    pub live: bool,
    /// The registration task's last call succeeded (always true without registration).
    pub registration_ok: bool,
}

impl Freshness {
    /// Stale: the view is the last known one, not a live one. Readiness
    /// ([`Health::is_ready`](crate::Health::is_ready)) adds that this node is registered and
    /// in its own view.
    pub fn stale(&self) -> bool {
        !(self.synced && self.live && self.registration_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_only_when_synced_live_and_registered() {
        for synced in [false, true] {
            for live in [false, true] {
                for registration_ok in [false, true] {
                    let f = Freshness {
                        synced,
                        live,
                        registration_ok,
                    };
                    assert_eq!(f.stale(), !(synced && live && registration_ok), "{f:?}");
                }
            }
        }
    }
}
