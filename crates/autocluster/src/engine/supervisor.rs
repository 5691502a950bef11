//! Owns every task of an engine and notices the end of each: a task that panics, or ends
//! while the engine is not stopping, fails the engine (health not ready, with the reason;
//! a metric; the node deregisters) instead of leaving a view that silently stops changing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};

use super::Shared;

pub(crate) struct Supervisor {
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// A task started after the engine (formation's watch for a second cluster), sent to the
/// supervisor to own: `Shared::spawn_owned`.
pub(crate) type LateTask = (&'static str, BoxFuture<'static, ()>);

impl Supervisor {
    /// Spawns `tasks` in one set and watches them, and the tasks sent on `late` later.
    pub fn spawn(
        shared: Arc<Shared>,
        tasks: Vec<(&'static str, BoxFuture<'static, ()>)>,
        late: mpsc::UnboundedReceiver<LateTask>,
    ) -> Self {
        let mut set = JoinSet::new();
        let mut names = HashMap::new();
        for (name, task) in tasks {
            let handle = set.spawn(task);
            names.insert(handle.id(), name);
        }
        let handle = tokio::spawn(watch(shared, set, names, late));
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

async fn watch(
    shared: Arc<Shared>,
    mut set: JoinSet<()>,
    mut names: HashMap<Id, &'static str>,
    mut late: mpsc::UnboundedReceiver<LateTask>,
) {
    loop {
        // Every task ends once the engine is cancelled; then nothing is left to own, but a
        // task sent before the cancel is still run (it ends at once).
        if set.is_empty() && shared.cancel.is_cancelled() {
            while let Ok((name, task)) = late.try_recv() {
                let handle = set.spawn(task);
                names.insert(handle.id(), name);
            }
            if set.is_empty() {
                return;
            }
        }
        let ended = tokio::select! {
            biased;
            Some(ended) = set.join_next_with_id() => ended,
            Some((name, task)) = late.recv() => {
                let handle = set.spawn(task);
                names.insert(handle.id(), name);
                continue;
            }
            () = shared.cancel.cancelled(), if set.is_empty() => continue,
        };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Cluster, Settings};

    async fn manual() -> Cluster {
        let settings = Settings::from_pairs([
            ("node.name", "a@127.0.0.1"),
            ("cluster.discovery", "manual"),
        ])
        .unwrap();
        Cluster::start(&settings).await.unwrap()
    }

    #[tokio::test]
    async fn a_task_started_later_is_owned_like_the_first_ones() {
        let cluster = manual().await;
        assert!(cluster.ready(Duration::from_secs(10)).await);
        let shared = cluster.engine_shared().clone();
        shared.spawn_owned("late", Box::pin(async { panic!("a bug in a late task") }));
        let mut health = cluster.watch_health();
        let failed = tokio::time::timeout(
            Duration::from_secs(10),
            health.wait_for(|h| h.failed.is_some()),
        )
        .await
        .expect("the panic is noticed")
        .unwrap()
        .failed
        .clone()
        .unwrap();
        assert!(
            failed.contains("late task panicked") && failed.contains("a bug in a late task"),
            "{failed}"
        );
        assert_eq!(cluster.stats().task_failures(), 1);
        cluster.leave().await.unwrap();
    }

    #[tokio::test]
    async fn a_late_task_ends_with_the_engine_and_none_starts_after() {
        let cluster = manual().await;
        let shared = cluster.engine_shared().clone();
        let cancel = shared.cancel.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        shared.spawn_owned(
            "late",
            Box::pin(async move {
                cancel.cancelled().await;
                let _ = tx.send(());
            }),
        );
        // leave() waits for every owned task, the late one included.
        tokio::time::timeout(Duration::from_secs(10), cluster.leave())
            .await
            .expect("leave returns")
            .unwrap();
        rx.await
            .expect("the late task ran to its end before leave returned");
        assert!(cluster.health().failed.is_none());
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        shared.spawn_owned(
            "after",
            Box::pin(async move { flag.store(true, std::sync::atomic::Ordering::Relaxed) }),
        );
        tokio::task::yield_now().await;
        assert!(!ran.load(std::sync::atomic::Ordering::Relaxed));
    }
}
