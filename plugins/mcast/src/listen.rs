//! The receive loop's life: started on first use, owned by the backend, and known to have
//! ended (a panic, a closed socket) so that the next use starts it again.

use std::sync::{Arc, Mutex};

use autocluster_plugin::Result;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::core::{lock, Core};
use crate::receiver;

/// The running receive loop, if any.
#[derive(Default)]
pub(crate) struct Listening {
    running: Mutex<Option<Running>>,
}

struct Running {
    abort: AbortHandle,
    /// Closed when the loop's task ends, however it ends.
    alive: watch::Receiver<()>,
}

impl Running {
    fn ended(&self) -> bool {
        self.alive.has_changed().is_err()
    }
}

impl Listening {
    /// Opens the sockets and starts the receive loop unless it runs; returns a receiver
    /// that closes when the loop ends.
    pub fn ensure(&self, core: &Arc<Core>, op: &'static str) -> Result<watch::Receiver<()>> {
        let mut running = lock(&self.running);
        if let Some(r) = running.as_ref().filter(|r| !r.ended()) {
            return Ok(r.alive.clone());
        }
        if running.is_some() {
            tracing::warn!("mcast: the receive loop had ended; starting it again");
        }
        let sock = core.open(op)?;
        let (alive_tx, alive) = watch::channel(());
        let core = core.clone();
        let abort = tokio::spawn(async move {
            let _alive = alive_tx;
            receiver::run(core, sock).await;
        })
        .abort_handle();
        *running = Some(Running {
            abort,
            alive: alive.clone(),
        });
        Ok(alive)
    }

    /// Stops the loop (the backend is being dropped).
    pub fn stop(&self) {
        if let Some(r) = lock(&self.running).take() {
            r.abort.abort();
        }
    }
}
