//! The ekka pattern, done right: a starting node takes the cluster lock (bounded, on its own
//! lease), reads the oldest running member, joins it (or starts a new cluster when it is the
//! oldest itself), releases the lock, and keeps running.
//!
//! ```sh
//! cargo run -p embed-join-oldest -- -c examples/conf/etcd.conf
//! ```
//!
//! With a backend that has no lock (static, dns, mcast) it says so and decides by the oldest
//! member alone.

mod decide;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use autocluster::{Cluster, Settings};

/// How long to wait for the node to be registered and its view fresh.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The lock wait when the config does not set `cluster.etcd.lock_timeout`.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The config used without `-c`.
const DEFAULT_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/etcd.conf");

#[tokio::main]
async fn main() -> ExitCode {
    let path = match config_path() {
        Ok(p) => p,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let lock_timeout = lock_timeout(&settings);
    let cluster = match Cluster::start(&settings).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}: started with backend {}",
        cluster.node(),
        cluster.backend_name()
    );

    decide::join_or_start(&cluster, READY_TIMEOUT, lock_timeout).await;

    println!("running; Ctrl-C to leave");
    let mut events = cluster.events();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => println!("{} {}", e.kind.as_str(), e.node),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    println!("{}", cluster.view().emqx_status_line());
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = &mut shutdown => break,
        }
    }

    println!("leaving the cluster");
    match cluster.leave().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leave: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cluster.etcd.lock_timeout` when the backend is etcd (a backend's own keys come as a
/// section of the settings, each value with its origin), else the default.
fn lock_timeout(settings: &Settings) -> Duration {
    if settings.discovery != "etcd" {
        return DEFAULT_LOCK_TIMEOUT;
    }
    match settings.section("cluster.etcd").duration("lock_timeout") {
        Ok(Some(d)) => d,
        Ok(None) => DEFAULT_LOCK_TIMEOUT,
        Err(e) => {
            eprintln!("{e}; using {DEFAULT_LOCK_TIMEOUT:?}");
            DEFAULT_LOCK_TIMEOUT
        }
    }
}

/// `-c FILE`, or the default config.
fn config_path() -> Result<PathBuf, String> {
    let usage = format!("usage: embed-join-oldest [-c FILE]   (default: {DEFAULT_CONFIG})");
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from(DEFAULT_CONFIG);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => path = args.next().ok_or(usage.clone())?.into(),
            _ => return Err(usage),
        }
    }
    Ok(path)
}

/// Ctrl-C, or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
