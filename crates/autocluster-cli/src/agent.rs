//! `autocluster agent -c FILE`: a node that registers, keeps the view, and serves the admin
//! endpoint, until a stop signal (SIGHUP, SIGINT, SIGTERM, SIGQUIT) or a failure; either
//! way it then leaves the cluster before it exits: 0 after a signal, [`EXIT_FAILED`] after
//! a failure.
//!
//! A failure is anything that would leave a node that looks alive but is not: an engine task
//! that panicked or ended (the engine then marks itself failed and deregisters; the health
//! says why), the admin server or a hook task that ended, or a panic in the agent's own
//! supervising code.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use autocluster::{Cluster, Health};
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::admin::server::{self, Limits};
use crate::admin::{self, AdminState};
use crate::cli::AgentArgs;
use crate::hooks::{HookConfig, Hooks};
use crate::limits::FileBudget;
use crate::metrics::AgentMetrics;
use crate::signals::Signals;
use crate::Failure;

/// The exit code after a failure: the agent left the cluster and stopped on its own.
pub const EXIT_FAILED: u8 = 3;
/// The exit code when the backend refused this node for a reason the operator must fix: a
/// configuration it cannot serve, or this node's name held by another live node.
pub const EXIT_REFUSED: u8 = 2;

/// The exit code for an engine that failed as `health` says.
fn exit_code(health: &Health) -> u8 {
    match health.failed_kind {
        Some(autocluster::ErrorKind::Config | autocluster::ErrorKind::Conflict) => EXIT_REFUSED,
        _ => EXIT_FAILED,
    }
}

/// How long leaving may take (revoking the lease) before the agent exits anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open admin connections get to finish once the agent has left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the `--on-change` handlers of events still queued may run once the agent has
/// left; a handler still running then is killed.
const HOOKS_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an admin request head may take to arrive, also between kept-alive requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an admin response may wait for its client to read.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// Runs the agent.
pub async fn run(args: &AgentArgs) -> Result<(), Failure> {
    crate::logging::init(args.log_format);
    let signals = Signals::new().map_err(Failure::runtime)?;

    let settings = crate::check::load(&args.config)?;
    for line in settings.no_effect.iter().chain(&settings.warnings) {
        tracing::warn!("{line}");
    }
    let files = FileBudget::at_start();
    log_file_budget(&files);

    // Listen before registering: a node whose endpoint cannot start never joins.
    let addr = args.admin.unwrap_or(settings.admin_listen);
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Failure::runtime(format!(
            "cannot listen on {addr} for the admin endpoint: {e}; is another agent running? \
             (set node.admin_listen, or pass --admin ADDR)"
        ))
    })?;
    let bound = listener.local_addr().map_err(Failure::runtime)?;
    let warnings = warnings(&settings, bound);

    let mut hook_config = HookConfig {
        on_change: args.on_change.clone(),
        members_file: args.members_file.clone(),
        members_json: args.members_file_format == crate::cli::MembersFormat::Json,
        timeout: args.hook_timeout,
        cluster: settings.cluster_name.clone(),
        self_node: settings.node.clone(),
        open_files: files.raised_from,
        formation: None,
    };
    hook_config.prepare()?;

    let cluster = Cluster::start(&settings)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    tracing::info!(
        node = %cluster.node(),
        backend = cluster.backend_name(),
        cluster = %settings.cluster_name,
        "agent started"
    );
    hook_config.formation = Some(cluster.watch_formation());
    if crate::formation::configured(&settings) {
        crate::formation::spawn(&cluster);
    }
    if let Some(cmd) = &args.on_change {
        tracing::info!(timeout = ?args.hook_timeout, "running `{cmd}` on every membership event");
    }
    if let Some(path) = &args.members_file {
        tracing::info!("keeping the running members in {}", path.display());
    }
    let health = cluster.watch_health();
    let node = Node {
        cluster,
        name: settings.cluster_name.clone(),
        warnings,
        hooks: hook_config,
    };
    let running = Running::start(node, listener, files.admin_connections);
    tracing::info!(addr = %bound, "admin endpoint listening on http://{bound}");
    running.until_stopped(signals, health).await
}

/// What the agent warns of, at start and in `/status`: how it runs that its operator should
/// change.
fn warnings(settings: &autocluster::Settings, admin: std::net::SocketAddr) -> Vec<String> {
    let mut warnings: Vec<String> = settings.cookie_warning().into_iter().collect();
    if !admin.ip().is_loopback() {
        warnings.push(format!(
            "the admin endpoint listens beyond loopback and has no authentication: whoever \
             reaches {admin} reads the membership, the health and the metrics"
        ));
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    warnings
}

/// Logs the open-file limit and the admin connections it allows.
fn log_file_budget(files: &FileBudget) {
    let limit = files
        .limit
        .map_or("unlimited".to_string(), |l| l.to_string());
    let raised = files
        .raised_from
        .map_or(String::new(), |from| format!(" (raised from {from})"));
    tracing::info!(
        "open-file limit {limit}{raised}: at most {} admin connections at once",
        files.admin_connections
    );
}

/// Why the agent stops.
enum Stop {
    /// A stop signal, by name.
    Signal(&'static str),
    /// A failure, what it was, and the exit code that says so.
    Failed(String, u8),
}

/// A started node and what the agent adds to it.
struct Node {
    cluster: Cluster,
    /// `cluster.name`.
    name: String,
    /// What `/status` warns of.
    warnings: Vec<String>,
    hooks: HookConfig,
}

/// The agent once its node is started: every way out of it leaves the cluster first.
struct Running {
    state: Arc<AdminState>,
    hooks: Hooks,
    server: JoinHandle<()>,
    stop_tx: watch::Sender<bool>,
}

impl Running {
    /// Starts the hooks and the admin endpoint (on `listener`, at most `max_connections`).
    fn start(node: Node, listener: TcpListener, max_connections: usize) -> Running {
        let metrics = AgentMetrics::default();
        let hooks = Hooks::start(node.hooks, &node.cluster, metrics.hooks.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let admin = metrics.admin.clone();
        let state = AdminState::new(
            node.cluster,
            node.name,
            node.warnings,
            metrics,
            stop_rx.clone(),
        );
        let state = Arc::new(state);
        let limits = Limits {
            max_connections,
            header_timeout: HEADER_TIMEOUT,
            write_stall: WRITE_STALL,
        };
        let router = admin::router(state.clone());
        let server = tokio::spawn(server::serve(listener, router, limits, admin, stop_rx));
        Running {
            state,
            hooks,
            server,
            stop_tx,
        }
    }

    /// Waits for a stop signal or a failure, then leaves, lets the hooks and the admin
    /// connections finish (a second signal cuts that short), and says how it went.
    async fn until_stopped(
        mut self,
        mut signals: Signals,
        health: watch::Receiver<Health>,
    ) -> Result<(), Failure> {
        let waiting = self.wait(&mut signals, health);
        let stop = AssertUnwindSafe(waiting)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Stop::Failed("the agent's own code panicked".into(), EXIT_FAILED));
        let why = match &stop {
            Stop::Signal(signal) => {
                tracing::info!("{signal}: leaving the cluster");
                format!("{signal} received")
            }
            Stop::Failed(why, _) => {
                tracing::error!("{why}; leaving the cluster");
                why.clone()
            }
        };
        let hurry = Arc::new(Notify::new());
        let hurry_hooks = self.hooks.hurry();
        let notify = hurry.clone();
        let again = tokio::spawn(async move {
            let signal = signals.next().await;
            tracing::warn!(
                "{signal} again: not waiting for --on-change handlers or admin connections \
                 once the leave is done"
            );
            hurry_hooks();
            notify.notify_one();
        });

        leave(&self.state, &why).await;
        let _ = AssertUnwindSafe(self.hooks.stop(HOOKS_DRAIN_TIMEOUT))
            .catch_unwind()
            .await;
        let _ = self.stop_tx.send(true);
        tokio::select! {
            _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut self.server) => {}
            () = hurry.notified() => {}
        }
        if !self.server.is_finished() {
            tracing::warn!("closing the admin connections still open");
            self.server.abort();
        }
        again.abort();
        match stop {
            Stop::Signal(_) => {
                tracing::info!("stopped");
                Ok(())
            }
            Stop::Failed(why, code) => Err(Failure {
                code,
                message: format!("{why}; this node left the cluster"),
            }),
        }
    }

    /// Waits for the first of: a stop signal, the engine failing, the admin server or a hook
    /// task ending.
    async fn wait(&mut self, signals: &mut Signals, mut health: watch::Receiver<Health>) -> Stop {
        let failed = async {
            match health.wait_for(|h| h.failed.is_some()).await {
                Ok(h) => (h.failed.clone().unwrap_or_default(), exit_code(&h)),
                Err(_) => ("the engine stopped".to_string(), EXIT_FAILED),
            }
        };
        tokio::select! {
            signal = signals.next() => Stop::Signal(signal),
            (why, code) = failed => Stop::Failed(format!("the engine failed: {why}"), code),
            ended = &mut self.server => Stop::Failed(match ended {
                Ok(()) => "the admin endpoint stopped".to_string(),
                Err(e) => format!("the admin endpoint failed: {e}"),
            }, EXIT_FAILED),
            () = self.hooks.ended() => Stop::Failed("a hook task ended".to_string(), EXIT_FAILED),
        }
    }
}

/// Takes the cluster out of the admin state and leaves: peers see this node go at once.
async fn leave(state: &AdminState, why: &str) {
    let Some(cluster) = state.take_cluster(why) else {
        return;
    };
    match tokio::time::timeout(LEAVE_TIMEOUT, cluster.leave()).await {
        Ok(Ok(())) => tracing::info!("left the cluster"),
        Ok(Err(e)) => tracing::warn!("leaving the cluster failed: {e}"),
        Err(_) => tracing::warn!(
            "leaving the cluster took longer than {LEAVE_TIMEOUT:?}; peers will see this node \
             go when its registration expires"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    use autocluster::plugin::{
        async_trait, Capabilities, Discovery, Lease, Registration, Registrations, Result, Snapshot,
    };
    use autocluster::{EngineConfig, Metadata, NodeName};
    use tower_service::Service;

    /// A backend whose snapshot panics once this node is registered: the engine's view
    /// task dies.
    #[derive(Debug, Default)]
    struct Broken {
        registered: Notify,
        deregistered: AtomicBool,
    }

    #[async_trait]
    impl Discovery for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }

        fn capabilities(&self) -> Capabilities {
            let ttl = Duration::from_secs(60);
            Capabilities::push().with_registration(Registrations::ServerLease, ttl, ttl / 3)
        }

        async fn register(&self, _: &Registration) -> Result<Lease> {
            self.registered.notify_one();
            Ok(Lease {
                id: 7,
                ttl: Duration::from_secs(60),
                age: Duration::ZERO,
            })
        }

        async fn deregister(&self, _: &Lease) -> Result<()> {
            self.deregistered.store(true, Ordering::SeqCst);
            Ok(())
        }

        async fn snapshot(&self) -> Result<Snapshot> {
            self.registered.notified().await;
            panic!("the backend is broken");
        }
    }

    /// An engine task that panics: the agent notices at once, answers 503 with the reason,
    /// leaves (the node is deregistered) and fails with [`EXIT_FAILED`].
    #[tokio::test]
    async fn an_engine_task_that_panics_makes_the_agent_leave_and_fail() {
        let backend = Arc::new(Broken::default());
        let node = NodeName::parse("a@127.0.0.1").unwrap();
        let config = EngineConfig::new(Registration {
            node: node.clone(),
            meta: Metadata::of(node.clone()),
        });
        let cluster = Cluster::with_backend(backend.clone(), config);
        let health = cluster.watch_health();
        let dir = tempfile::tempdir().unwrap();
        let node = Node {
            cluster,
            name: "emqxcl".into(),
            warnings: Vec::new(),
            hooks: HookConfig {
                on_change: None,
                members_file: Some(dir.path().join("members")),
                members_json: false,
                timeout: Duration::from_secs(1),
                cluster: "emqxcl".into(),
                self_node: node,
                open_files: None,
                formation: None,
            },
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = Running::start(node, listener, 16);
        let state = running.state.clone();
        let signals = Signals::new().unwrap();
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            running.until_stopped(signals, health),
        )
        .await
        .expect("the agent stops on its own");
        let failure = outcome.expect_err("a failure");
        assert_eq!(failure.code, EXIT_FAILED);
        assert!(
            failure.message.contains("panicked: the backend is broken"),
            "{}",
            failure.message
        );
        assert!(backend.deregistered.load(Ordering::SeqCst), "deregistered");

        let ready = admin::router(state)
            .call(
                axum::http::Request::get("/health/ready")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
        let body = axum::body::to_bytes(ready.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("the backend is broken")),
            "{body}"
        );
    }
}
