//! A node under test: a running [`Cluster`] and every event it saw, from its start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autocluster::{Cluster, EngineConfig, Event, EventKind, Status};
use autocluster_plugin::{Discovery, NodeName};

use super::Target;

/// A node under test with every event it saw.
pub struct Node {
    /// The running cluster handle.
    pub cluster: Cluster,
    /// Every event, in order.
    pub events: Arc<Mutex<Vec<Event>>>,
    recorded: tokio::sync::watch::Receiver<usize>,
    recorder: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Starts `name` on `target`.
    pub async fn start(target: &dyn Target, name: &str) -> Node {
        let node = NodeName::parse(name).expect("valid node name");
        let backend = target.backend(&node).await;
        Node::start_with(backend, target.engine_config(&node))
    }

    /// Starts a node over a backend made by the caller.
    pub fn start_with(backend: Arc<dyn Discovery>, config: EngineConfig) -> Node {
        let cluster = Cluster::with_backend(backend, config);
        // The view and exactly the events after it: whatever the engine published before
        // this line is told from the view, as the `Joined` of each running member.
        let (view, mut rx) = cluster.view_and_events();
        let initial: Vec<Event> = view
            .members()
            .filter(|e| e.status == Status::Running)
            .map(|e| Event::joined(e, view.revision))
            .collect();
        let events = Arc::new(Mutex::new(initial));
        let sink = events.clone();
        let (count_tx, recorded) = tokio::sync::watch::channel(0usize);
        let recorder = tokio::spawn(async move {
            while let Ok(e) = rx.recv().await {
                let len = match sink.lock() {
                    Ok(mut v) => {
                        v.push(e);
                        v.len()
                    }
                    Err(_) => break,
                };
                count_tx.send_replace(len);
            }
        });
        Node {
            cluster,
            events,
            recorded,
            recorder,
        }
    }

    /// Waits until the view's running nodes are exactly `nodes`.
    pub async fn wait_for_running(&self, nodes: &[&str], patience: Duration) {
        let want: Vec<NodeName> = {
            let mut v: Vec<NodeName> = nodes.iter().map(|n| NodeName::parse(n).unwrap()).collect();
            v.sort();
            v
        };
        let mut rx = self.cluster.watch();
        let got = tokio::time::timeout(patience, rx.wait_for(|v| v.running_nodes() == want)).await;
        if got.is_err() {
            panic!(
                "{}: running nodes are {:?}, expected {:?} within {patience:?}; health {:?}",
                self.cluster.node(),
                self.cluster.view().running_nodes(),
                want,
                self.cluster.health()
            );
        }
    }

    /// Waits until at least `n` events of `kind` for `node` were recorded (events follow the
    /// view they change by a moment), then returns how many there are.
    pub async fn wait_count(
        &self,
        node: &str,
        kind: EventKind,
        n: usize,
        patience: Duration,
    ) -> usize {
        let mut rx = self.recorded.clone();
        let deadline = tokio::time::Instant::now() + patience;
        while self.count(node, kind) < n {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        self.count(node, kind)
    }

    /// Waits until the view is fresh (not stale).
    pub async fn wait_fresh(&self, patience: Duration) {
        let mut rx = self.cluster.watch();
        if tokio::time::timeout(patience, rx.wait_for(|v| !v.stale && v.synced))
            .await
            .is_err()
        {
            panic!(
                "{}: view still stale after {patience:?}; health {:?}",
                self.cluster.node(),
                self.cluster.health()
            );
        }
    }

    /// The events seen so far, as `(kind, node)` pairs, for failure messages.
    pub fn summary(&self) -> Vec<(EventKind, String)> {
        self.events
            .lock()
            .map(|v| v.iter().map(|e| (e.kind, e.node.to_string())).collect())
            .unwrap_or_default()
    }

    /// The `Left` events seen so far for `node`.
    pub fn lefts_of(&self, node: &str) -> usize {
        self.count(node, EventKind::Left)
    }

    /// The events of `kind` seen so far for `node`.
    pub fn count(&self, node: &str, kind: EventKind) -> usize {
        self.events
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|e| e.kind == kind && e.node.as_str() == node)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Leaves cleanly.
    pub async fn leave(self) {
        self.recorder.abort();
        let _ = self.cluster.leave().await;
    }

    /// Stops without deregistering, as a crash does.
    pub fn crash(self) {
        self.recorder.abort();
        self.cluster.abandon();
    }
}
