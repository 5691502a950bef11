//! The agent's hooks, as Serf's event handlers: `--on-change CMD` runs a command on every
//! membership event, `--members-file PATH` keeps a file listing the running members.
//!
//! A handler runs through `sh -c`, one at a time in event order, with the event in
//! environment variables (`AUTOCLUSTER_EVENT`, `_NODE`, `_INCARNATION`, `_REASON`, `_CLUSTER`,
//! `_SELF`, and once formation decided `_FORMATION` (`seed` or `join`), `_FORMATION_TARGET`
//! and `_CLUSTER_ID`; with the event `foreign_cluster` (a member of this cluster's name seen
//! in another cluster: two clusters formed), `_FOREIGN_CLUSTER_ID`; none has the `__` of a configuration override, so an `autocluster`
//! command the handler runs does not read them as configuration), the member's JSON, labels
//! and endpoints (`AUTOCLUSTER_MEMBER`, `_LABELS`, `_ENDPOINTS`, JSON objects) and the running
//! members, one node name a line, on
//! its standard input. Each is bounded by `--hook-timeout`: past it, the handler's whole
//! process group is killed. A failing handler is logged, with its exit status and the tail of
//! its stderr, and never stops the agent. A handler that cannot start for want of
//! descriptors or processes is retried until it starts.
//!
//! | file | what |
//! |---|---|
//! | `queue.rs` | the queue: one handler at a time, in order; what a stop cuts short |
//! | `handler.rs` | one run: the process, its input, its timeout |
//! | `output.rs` | the tail of its stdout and stderr |
//! | `members_file.rs` | `--members-file` |

mod handler;
mod members_file;
mod output;
mod queue;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use autocluster::{Cluster, Formation, NodeName};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Failure;
pub use members_file::write_atomically;

/// How long a hook task may take past the stop deadline before it is aborted (it kills its
/// handler and reports at the deadline).
const STOP_SLACK: Duration = Duration::from_secs(2);

/// What the hooks do, from the agent's flags.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// `--on-change CMD`.
    pub on_change: Option<String>,
    /// `--members-file PATH`.
    pub members_file: Option<PathBuf>,
    /// `--members-file-format json`: the members file is a JSON array with metadata.
    pub members_json: bool,
    /// `--hook-timeout`.
    pub timeout: Duration,
    /// `cluster.name`, for `AUTOCLUSTER_CLUSTER`.
    pub cluster: String,
    /// This node, for `AUTOCLUSTER_SELF`.
    pub self_node: NodeName,
    /// The open-file soft limit a handler runs with, when the agent raised its own: the
    /// one it started with (a program that uses `select()` expects no more than 1,024).
    pub open_files: Option<u64>,
    /// The formation decision, once made: `AUTOCLUSTER_FORMATION`, `_FORMATION_TARGET` and
    /// `_CLUSTER_ID` of every handler after it, and one `formed` event when it is made.
    pub formation: Option<watch::Receiver<Option<Formation>>>,
}

impl HookConfig {
    /// Writes the members file once, empty (this node knows of no member yet), so that a
    /// path that cannot be written is a configuration error before the node registers.
    pub fn prepare(&self) -> Result<(), Failure> {
        if let Some(path) = &self.members_file {
            let empty = if self.members_json {
                vec!["[]".to_string()]
            } else {
                Vec::new()
            };
            write_atomically(path, &empty).map_err(|e| {
                Failure::config(format!(
                    "--members-file {}: cannot write it: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(())
    }
}

/// The hooks' counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct HookStats {
    /// Handlers that exited 0.
    pub runs_ok: AtomicU64,
    /// Handlers that exited non-zero, or could not run at all.
    pub runs_failed: AtomicU64,
    /// Handlers killed at `--hook-timeout`.
    pub runs_timed_out: AtomicU64,
    /// Spawns retried after a shortage of descriptors, processes or memory.
    pub spawn_retries: AtomicU64,
    /// Events skipped because the handlers fell behind the event buffer.
    pub dropped_lagged: AtomicU64,
    /// Events whose handler had not run when the stop deadline passed.
    pub dropped_at_stop: AtomicU64,
    /// Handlers killed while running when the stop deadline passed.
    pub killed_at_stop: AtomicU64,
    /// Members file writes that failed (each is retried).
    pub members_file_failures: AtomicU64,
}

/// The running hook tasks.
pub struct Hooks {
    tasks: Vec<JoinHandle<()>>,
    deadline: watch::Sender<Option<Instant>>,
    /// Turns true when a task ends (or panics).
    ended: watch::Receiver<bool>,
}

/// Raises its flag when dropped: when the task that owns it ends, also by a panic.
struct EndGuard(watch::Sender<bool>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Spawns `task`, raising `ended` when it ends.
fn spawn_watched(
    task: impl std::future::Future<Output = ()> + Send + 'static,
    ended: &watch::Sender<bool>,
) -> JoinHandle<()> {
    let guard = EndGuard(ended.clone());
    tokio::spawn(async move {
        let _guard = guard;
        task.await
    })
}

impl Hooks {
    /// Starts the hooks over `cluster`: they follow its view and events until it stops.
    pub fn start(config: HookConfig, cluster: &Cluster, stats: Arc<HookStats>) -> Hooks {
        let (deadline, deadline_rx) = watch::channel(None);
        let (ended_tx, ended) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(path) = config.members_file.clone() {
            let view = cluster.watch();
            let task =
                members_file::keep_members_file(path, config.members_json, view, stats.clone());
            tasks.push(spawn_watched(task, &ended_tx));
        }
        if config.on_change.is_some() {
            // Subscribe before reading the view: a member is then either in the view read
            // here or in an event received later (or both, which the queue sorts out).
            let events = cluster.events();
            let formation = cluster.watch_formation();
            let foreign = crate::formation::ForeignFollow::new(cluster.watch_foreign_members());
            let queue = queue::Queue {
                formation,
                foreign,
                config,
                stats,
                events,
                view: cluster.watch(),
                deadline: deadline_rx,
            };
            tasks.push(spawn_watched(queue.run(), &ended_tx));
        }
        Hooks {
            tasks,
            deadline,
            ended,
        }
    }

    /// Completes when a hook task has ended (before [`Hooks::stop`], none should); never
    /// when there is none.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            if ended.wait_for(|e| *e).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A handle that moves the stop deadline to now (a second signal).
    pub fn hurry(&self) -> impl Fn() + Send + 'static {
        let deadline = self.deadline.clone();
        move || {
            deadline.send_replace(Some(Instant::now()));
        }
    }

    /// Once the cluster has stopped: lets the handlers of the events still queued run until
    /// `within` has passed (or [`Hooks::hurry`] was called); then the one running is killed
    /// and the rest are dropped, both counted and logged.
    pub async fn stop(self, within: Duration) {
        let at = Instant::now() + within;
        self.deadline.send_if_modified(|d| {
            let earlier = d.is_none_or(|d| at < d);
            if earlier {
                *d = Some(at);
            }
            earlier
        });
        for mut task in self.tasks {
            let until = (*self.deadline.borrow()).unwrap_or(at) + STOP_SLACK;
            if tokio::time::timeout_at(until, &mut task).await.is_err() {
                tracing::warn!("a hook task did not stop by its deadline; aborting it");
                task.abort();
                let _ = task.await;
            }
        }
    }
}
