//! Owns every task of an engine and notices the end of each: a task that panics, or ends
//! while the engine is not stopping, fails the engine (health not ready, with the reason;
//! a metric; the node deregisters) instead of leaving a view that silently stops changing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};

use super::Shared;

pub(crate) struct Supervisor {
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Supervisor {
    /// Spawns `tasks` in one set and watches them.
    pub fn spawn(shared: Arc<Shared>, tasks: Vec<(&'static str, BoxFuture<'static, ()>)>) -> Self {
        let mut set = JoinSet::new();
        let mut names = HashMap::new();
        for (name, task) in tasks {
            let handle = set.spawn(task);
            names.insert(handle.id(), name);
        }
        let handle = tokio::spawn(watch(shared, set, names));
        Supervisor {
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Waits until every task has ended.
    pub async fn join(&self) {
        let handle = self.take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    /// Ends every task at once (dropping the set aborts them).
    pub fn abort(&self) {
        if let Some(h) = self.take() {
            h.abort();
        }
    }

    fn take(&self) -> Option<JoinHandle<()>> {
        self.handle.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

async fn watch(shared: Arc<Shared>, mut set: JoinSet<()>, names: HashMap<Id, &'static str>) {
    while let Some(ended) = set.join_next_with_id().await {
        let (id, why) = match ended {
            Ok((id, ())) if shared.cancel.is_cancelled() => {
                tracing::debug!(task = names.get(&id).copied(), "engine task stopped");
                continue;
            }
            Ok((id, ())) => (id, "ended unexpectedly".to_string()),
            Err(e) if e.is_cancelled() => continue,
            Err(e) => (e.id(), format!("panicked: {}", panic_message(e))),
        };
        let name = names.get(&id).copied().unwrap_or("unknown");
        shared.fail(format!("the engine's {name} task {why}"), None);
        if name == "registration" {
            // Nobody else deregisters: do it here, bounded like every call.
            let lease = *shared.lease.borrow();
            if let Some(lease) = lease {
                let _ = shared
                    .call("deregister", shared.backend.deregister(&lease))
                    .await;
            }
            shared.lease.send_replace(None);
        }
    }
}

fn panic_message(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into()),
        Err(e) => e.to_string(),
    }
}
