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
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use autocluster::{Cluster, Settings};
use tokio::sync::broadcast::error::RecvError;

use shutdown::Shutdown;

/// How long to wait for the node to be registered and its view fresh.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The lock wait when the config does not set `cluster.etcd.lock_timeout`.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The config used without `-c`.
const DEFAULT_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/etcd.conf");

#[tokio::main]
async fn main() -> ExitCode {
    let (path, join_time) = match args() {
        Ok(a) => a,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let mut shutdown = match Shutdown::listen() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen for signals: {e}");
            return ExitCode::FAILURE;
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

    // A signal while deciding still leaves cleanly; a lock held then is released when its
    // guard is dropped, and in any case when the lease is revoked by the leave.
    tokio::select! {
        _ = decide::join_or_start(&cluster, READY_TIMEOUT, lock_timeout, join_time) => {}
        _ = shutdown.recv() => return leave(cluster).await,
    }

    println!("running; Ctrl-C to leave");
    let mut events = cluster.events();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => println!("{} {}", e.kind.as_str(), e.node),
                Err(RecvError::Lagged(_)) => println!("{}", cluster.view().emqx_status_line()),
                Err(RecvError::Closed) => break,
            },
            _ = shutdown.recv() => break,
        }
    }
    leave(cluster).await
}

/// Deregisters at once: peers see this node leave within milliseconds, not after its TTL.
async fn leave(cluster: Cluster) -> ExitCode {
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

/// `-c FILE` (default: the etcd example) and `--join-time SECS` (default 1): how long the
/// stand-in for the application's join holds the lock.
fn args() -> Result<(PathBuf, Duration), String> {
    let usage = format!(
        "usage: embed-join-oldest [-c FILE] [--join-time SECS]   (default: {DEFAULT_CONFIG}, 1)"
    );
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from(DEFAULT_CONFIG);
    let mut join_time = Duration::from_secs(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(usage.clone());
        match arg.as_str() {
            "-c" | "--config" => path = value()?.into(),
            "--join-time" => {
                let secs: f64 = value()?.parse().map_err(|_| usage.clone())?;
                join_time = Duration::try_from_secs_f64(secs).map_err(|_| usage.clone())?;
            }
            _ => return Err(usage),
        }
    }
    Ok((path, join_time))
}
