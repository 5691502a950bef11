//! Embeds autocluster: loads a config, waits (bounded) until the node is ready, prints the
//! membership view every time it changes, and leaves the cluster cleanly on Ctrl-C.
//!
//! ```sh
//! cargo run -p embed-view -- -c examples/conf/mcast.conf
//! ```

mod shutdown;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use autocluster::{Cluster, Settings};

use shutdown::Shutdown;

/// How long to wait for the node to be registered and its view fresh before showing the view
/// anyway (marked stale): a node never blocks forever on its backend.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The config used without `-c`: the multicast example, so two instances on one host find
/// each other with no server to run.
const DEFAULT_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/mcast.conf");

#[tokio::main]
async fn main() -> ExitCode {
    let path = match config_path() {
        Ok(p) => p,
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
    // Loading first (rather than Cluster::from_file) reports every mistake in the file, each
    // with its line, before anything starts.
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    for warning in &settings.warnings {
        eprintln!("warning: {warning}");
    }
    let cluster = match Cluster::start(&settings).await {
        Ok(c) => c,
        Err(e) => {
            // e.g. `cluster.discovery = etcd requires the "etcd" feature of autocluster`
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}: started with backend {} ({}); waiting up to {READY_TIMEOUT:?} until ready",
        cluster.node(),
        cluster.backend_name(),
        path.display()
    );

    let started = Instant::now();
    tokio::select! {
        ready = cluster.ready(READY_TIMEOUT) => report_ready(&cluster, ready, started),
        _ = shutdown.recv() => return leave(cluster).await,
    }
    show_views(&cluster, started, &mut shutdown).await;
    leave(cluster).await
}

fn report_ready(cluster: &Cluster, ready: bool, started: Instant) {
    if ready {
        println!("ready after {:?}", started.elapsed());
        return;
    }
    let health = cluster.health();
    println!(
        "not ready after {READY_TIMEOUT:?} (registered: {}, synced: {}, last error: {}); \
         showing the view anyway, marked stale, until the backend answers",
        health.registered,
        health.synced,
        health.last_error.as_deref().unwrap_or("none")
    );
}

/// Prints the view whenever what it shows changes, until a signal (or the engine stops).
async fn show_views(cluster: &Cluster, started: Instant, shutdown: &mut Shutdown) {
    let mut views = cluster.watch();
    let mut shown = String::new();
    loop {
        // Clone the view out of the channel: a borrow held across an await would block the
        // engine's next publish.
        let view = views.borrow_and_update().clone();
        // The view is republished on every backend batch (a heartbeat, a member's TTL
        // refreshed): print it only when what the table shows changed.
        let signature = table::signature(&view);
        if signature != shown {
            print!(
                "{}",
                table::render(&view, cluster.node(), started.elapsed())
            );
            shown = signature;
        }
        tokio::select! {
            changed = views.changed() => {
                if changed.is_err() {
                    return; // the engine stopped
                }
            }
            _ = shutdown.recv() => return,
        }
    }
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

/// `-c FILE`, or the default config.
fn config_path() -> Result<PathBuf, String> {
    let usage = format!("usage: embed-view [-c FILE]   (default: {DEFAULT_CONFIG})");
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
