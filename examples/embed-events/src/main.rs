//! Embeds autocluster and reacts to membership events: one line per `Joined` / `Left` /
//! `Updated`, an application-side map of the running members kept from the events alone, and
//! a check of that map against `Cluster::view()` after each event.
//!
//! ```sh
//! cargo run -p embed-events -- -c examples/conf/mcast.conf
//! ```
//!
//! How it consumes them correctly, with `Cluster::changes()`:
//! 1. subscribe right after `start`: the stream's first item is a snapshot of the members now
//!    (empty before the first read of the backend), then every change after it, none twice,
//!    none missing; this node's own `joined` comes as an event;
//! 2. on `Lagged(n)` (the subscriber fell more than the event capacity behind) the next item
//!    is a fresh snapshot: rebuild the map from it and carry on;
//! 3. compare the map with `Cluster::view()` only when no item is queued: the engine
//!    publishes a view before it sends the events of that change.

mod members;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;

use std::pin::Pin;

use autocluster::{Cluster, Event, EventKind, Settings, Status, ViewChange};
use futures::{FutureExt, StreamExt};

use members::Members;
use shutdown::Shutdown;

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

    // Rule 1: subscribe at once. The first item is the snapshot; this node's own join, and
    // every change after the snapshot, come as events.
    let mut changes = cluster.changes().peekable();
    let mut members = Members::default();
    let mut first = true;
    loop {
        let item = tokio::select! {
            item = changes.next() => item,
            _ = shutdown.recv() => break,
        };
        let Some(item) = item else { break }; // the engine stopped
        match item {
            ViewChange::Snapshot(view) => {
                members = Members::from_view(&view);
                let when = if first {
                    "at start"
                } else {
                    "in the fresh snapshot"
                };
                println!(
                    "{} ({}): {} running {when}: {}",
                    cluster.node(),
                    cluster.backend_name(),
                    members.len(),
                    members.names()
                );
                // For the application, the members of the first snapshot have just joined
                // (this node's own join is here, or comes next as an event).
                if first {
                    for entry in view.members().filter(|e| e.status == Status::Running) {
                        println!(
                            "{} (in the first snapshot)",
                            describe(&Event::joined(entry, view.revision))
                        );
                    }
                }
                first = false;
                continue;
            }
            ViewChange::Event(event) => {
                println!("{}", describe(&event));
                members.apply(&event);
            }
            // Rule 2: events were dropped; a fresh snapshot comes next.
            ViewChange::Lagged(missed) => {
                println!("lagged: {missed} events missed; a fresh snapshot follows");
                continue;
            }
            _ => continue,
        }
        // Rule 3: the view may run ahead of the events still queued: compare only once the
        // stream has nothing ready.
        if Pin::new(&mut changes).peek().now_or_never().is_none() {
            match members.diff(&cluster.view()) {
                None => println!("  map agrees with view(): {}", members.names()),
                Some(diff) => println!("  map differs from view(): {diff}"),
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
