//! `autocluster demo`: three nodes in this process find each other, one crashes and is
//! expired, one leaves cleanly; the story is printed as it happens, with timestamps, a
//! matrix of who sees whom, and the measured times.
//!
//! Over UDP multicast on loopback by default (a random group, port, cookie and cluster name,
//! so it never mixes with a real cluster or another demo), or over an etcd (a random prefix).
//!
//! `backend` sets up how the nodes find each other, `nodes` starts, crashes and stops them and
//! keeps what they saw, `story` is the scripted steps, `render` what is printed of them, and
//! `terminal` the stdout they are printed on.

mod backend;
mod nodes;
mod render;
mod story;
mod terminal;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::DemoArgs;
use crate::Failure;
use backend::Backend;
use nodes::Demo;

/// Runs the demo; exit 0 at the end of the story, 1 when discovery does not work here.
pub async fn run(args: &DemoArgs) -> Result<(), Failure> {
    init_logging();
    let backend = Backend::choose(args)?;
    let mut demo = Demo::new(backend)?;
    let result = demo.story().await;
    if result.is_err() {
        demo.abandon_all();
    }
    result
}

/// Quiet unless `RUST_LOG` asks: the story is on stdout, the engine's logs would drown it.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
