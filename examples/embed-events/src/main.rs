//! Embeds autocluster and reacts to membership events: one line per `Joined` / `Left` /
//! `Updated`, an application-side map of the running members kept from the events alone, and
//! a check of that map against `Cluster::view()` after each event.
//!
//! ```sh
//! cargo run -p embed-events -- -c examples/conf/mcast.conf
//! ```
//!
//! The three rules of consuming events correctly:
//! 1. subscribe (`Cluster::events`) *before* reading the view, so nothing falls in between;
//! 2. apply events idempotently (insert on `Joined`/`Updated`, remove on `Left`), so an event
//!    the first view already reflected does no harm;
//! 3. on `RecvError::Lagged` (the subscriber fell more than the channel's capacity behind)
//!    events were lost: rebuild the map from `Cluster::view()` and carry on.

mod members;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use autocluster::{Cluster, Event, EventKind, Settings};
use tokio::sync::broadcast::error::RecvError;

use members::Members;
use shutdown::Shutdown;

/// How long to wait for the node to be registered and its view fresh.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The config used without `-c`.
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
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cluster = match Cluster::start(&settings).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };

    // Rule 1: subscribe first, then read the view. Events sent in between are delivered and
    // applied again, which rule 2 makes harmless.
    let mut events = cluster.events();
    tokio::select! {
        ready = cluster.ready(READY_TIMEOUT) => if !ready {
            println!(
                "not ready after {READY_TIMEOUT:?} (last error: {}); following events anyway",
                cluster.health().last_error.as_deref().unwrap_or("none")
            );
        },
        _ = shutdown.recv() => return leave(cluster).await,
    }
    let mut members = Members::from_view(&cluster.view());
    println!(
        "{} ({}): {} running at start: {}",
        cluster.node(),
        cluster.backend_name(),
        members.len(),
        members.names()
    );

    loop {
        let received = tokio::select! {
            r = events.recv() => r,
            _ = shutdown.recv() => break,
        };
        match received {
            Ok(event) => {
                println!("{}", describe(&event));
                members.apply(&event);
            }
            // Rule 3: events were lost; the view is the truth, rebuild from it.
            Err(RecvError::Lagged(missed)) => {
                println!("lagged: {missed} events missed; re-reading the view");
                members = Members::from_view(&cluster.view());
            }
            Err(RecvError::Closed) => break, // the engine stopped
        }
        // The engine publishes a view before sending its events, so a view may run ahead of
        // the events still queued: compare only once the queue is drained.
        if events.is_empty() {
            match members.diff(&cluster.view()) {
                None => println!("  map agrees with view(): {}", members.names()),
                Some(diff) => println!("  map differs from view() (events in flight?): {diff}"),
            }
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

/// One line: what happened, to whom, and why.
fn describe(event: &Event) -> String {
    let incarnation = event.member.incarnation;
    let why = match event.kind {
        EventKind::Joined => format!("incarnation {incarnation}"),
        EventKind::Left => match event.reason {
            Some(reason) => format!("reason {reason:?}"),
            None => "reason unknown".to_string(),
        },
        EventKind::Updated => match &event.previous {
            Some(p) if p.incarnation != incarnation => {
                format!("restarted: incarnation {} -> {incarnation}", p.incarnation)
            }
            Some(p) if p.meta != event.member.meta => "metadata changed".to_string(),
            _ => "changed".to_string(),
        },
    };
    format!(
        "{:<7} {} ({why}, revision {})",
        event.kind.as_str(),
        event.node,
        event.revision.0
    )
}

/// `-c FILE`, or the default config.
fn config_path() -> Result<PathBuf, String> {
    let usage = format!("usage: embed-events [-c FILE]   (default: {DEFAULT_CONFIG})");
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
