//! The signals that stop the agent: every one a terminal or a service manager sends to end a
//! process, SIGHUP, SIGINT, SIGTERM and SIGQUIT, each handled as a clean leave (the default
//! action of each would end the process on the spot, leaving its registration for a whole
//! TTL).
//!
//! SIGHUP is a leave rather than a reload: nothing the agent reads can change while it runs
//! (every setting shapes its registration, its backend connection or its hooks, so a changed
//! file takes a restart), and a SIGHUP from a closing terminal means whoever ran the agent
//! there is gone.

/// The stop signals (SIGINT only where there are no others).
pub struct Signals {
    #[cfg(unix)]
    handlers: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Installs the handlers now, so that a signal that comes early is not lost.
    pub fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let kinds = [
                ("SIGHUP", SignalKind::hangup()),
                ("SIGINT", SignalKind::interrupt()),
                ("SIGTERM", SignalKind::terminate()),
                ("SIGQUIT", SignalKind::quit()),
            ];
            let mut handlers = Vec::with_capacity(kinds.len());
            for (name, kind) in kinds {
                handlers.push((name, signal(kind)?));
            }
            Ok(Signals { handlers })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal; returns its name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let waits = self.handlers.iter_mut().map(|(name, signal)| {
                Box::pin(async move {
                    signal.recv().await;
                    *name
                })
            });
            futures::future::select_all(waits).await.0
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
