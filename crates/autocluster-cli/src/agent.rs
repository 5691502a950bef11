//! `autocluster agent -c FILE`: a node that registers, keeps the view, and serves the admin
//! endpoint, until SIGINT or SIGTERM; then it leaves the cluster and exits 0.

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use autocluster::Cluster;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::admin::{self, AdminState};
use crate::cli::{AgentArgs, LogFormat};
use crate::hooks::{HookConfig, Hooks};
use crate::Failure;

/// How long leaving may take (revoking the lease) before the agent exits anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open admin connections get to finish once the agent has left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the `--on-change` handlers of events still queued may run once the agent has
/// left; a handler still running then is killed.
const HOOKS_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the agent.
pub async fn run(args: &AgentArgs) -> Result<(), Failure> {
    init_logging(args.log_format);
    let mut signals = Signals::new().map_err(Failure::runtime)?;

    let settings = crate::check::load(&args.config)?;
    for line in settings.no_effect.iter().chain(&settings.warnings) {
        tracing::warn!("{line}");
    }

    // Listen before registering: a node whose endpoint cannot start never joins.
    let addr = args.admin.unwrap_or(settings.admin_listen);
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Failure::runtime(format!(
            "cannot listen on {addr} for the admin endpoint: {e}; is another agent running? \
             (set node.admin_listen, or pass --admin ADDR)"
        ))
    })?;
    let bound = listener.local_addr().map_err(Failure::runtime)?;

    let hook_config = HookConfig {
        on_change: args.on_change.clone(),
        members_file: args.members_file.clone(),
        timeout: args.hook_timeout,
        cluster: settings.cluster_name.clone(),
        self_node: settings.node.clone(),
    };
    hook_config.prepare()?;

    let cluster = Cluster::start(&settings)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    let hooks = Hooks::start(hook_config, &cluster);
    tracing::info!(
        node = %cluster.node(),
        backend = cluster.backend_name(),
        cluster = %settings.cluster_name,
        "agent started"
    );
    if let Some(cmd) = &args.on_change {
        tracing::info!(timeout = ?args.hook_timeout, "running `{cmd}` on every membership event");
    }
    if let Some(path) = &args.members_file {
        tracing::info!("keeping the running members in {}", path.display());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(AdminState::new(
        cluster,
        settings.cluster_name.clone(),
        stop_rx.clone(),
    ));
    let mut until_stopped = stop_rx;
    let server = axum::serve(listener, admin::router(state.clone()))
        .with_graceful_shutdown(async move {
            let _ = until_stopped.wait_for(|stop| *stop).await;
        })
        .into_future();
    let mut server = tokio::spawn(server);
    tracing::info!(addr = %bound, "admin endpoint listening on http://{bound}");
    if !bound.ip().is_loopback() {
        tracing::warn!(
            addr = %bound,
            "the admin endpoint listens beyond loopback and has no authentication: whoever \
             reaches {bound} reads the membership, the health and the metrics"
        );
    }

    let signal = tokio::select! {
        s = signals.next() => s,
        r = &mut server => {
            let why = match r {
                Ok(Ok(())) => "stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            leave(&state).await;
            hooks.stop(HOOKS_DRAIN_TIMEOUT).await;
            return Err(Failure::runtime(format!("the admin endpoint failed: {why}")));
        }
    };
    tracing::info!("{signal}: leaving the cluster");
    tokio::spawn(async move {
        let signal = signals.next().await;
        eprintln!("{signal} again: exiting without a clean leave");
        std::process::exit(130);
    });

    leave(&state).await;
    hooks.stop(HOOKS_DRAIN_TIMEOUT).await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
        tracing::warn!("admin connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Takes the cluster out of the admin state and leaves: peers see this node go at once.
async fn leave(state: &AdminState) {
    let Some(cluster) = state.take_cluster() else {
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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// SIGINT and SIGTERM (SIGINT only where there is no SIGTERM).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers now, so a signal that comes early is not lost.
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
