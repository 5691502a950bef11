//! The `autocluster` command: `agent` runs a node and its admin endpoint; `status`, `members`
//! and `check` are what an operator runs next to it.
//!
//! Exit codes: 0 success, 1 a runtime failure (no agent answers, the admin port is taken),
//! 2 a configuration error, 3 the agent stopped on its own after a failure (it left the
//! cluster first).

mod admin;
mod agent;
mod check;
mod cli;
mod client;
mod completions;
mod demo;
mod formation;
mod hooks;
mod limits;
mod logging;
mod members;
mod metrics;
mod signals;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command};

/// How long tasks still running at the end may take to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(200);
/// How long the agent's last log lines may take to be written (stderr may be a full pipe).
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print on stderr (one or more lines).
    pub message: String,
}

impl Failure {
    /// A configuration error: exit 2.
    pub fn config(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }

    /// A runtime failure: exit 1.
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }

    /// Exit 2 for a configuration error, 1 for anything else.
    pub fn from_error(e: &autocluster::Error) -> Self {
        if e.kind() == autocluster::ErrorKind::Config {
            Failure::config(e)
        } else {
            Failure::runtime(e)
        }
    }
}

/// Writes `text` to stdout and flushes; a closed stdout (`autocluster man | head`) ends the
/// output quietly rather than as an error.
pub fn print_out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::runtime(e)),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logging::last_words(
                &format!("cannot start the tokio runtime: {e}"),
                Duration::ZERO,
            );
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Check(args) => check::run(&args),
            Command::Agent(args) => agent::run(&args).await,
            Command::Status(args) => status::run(&args).await,
            Command::Members(args) => members::run(&args).await,
            Command::Demo(args) => demo::run(&args).await,
            Command::Completions { shell } => completions::completions(shell),
            Command::Man => completions::man(),
        }
    });
    // Work still pending (a backend's connection attempt) must not delay the exit.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    // A closed stderr must not turn the last words into a panic (`eprintln!` would).
    match result {
        Ok(()) => {
            logging::flush(LOG_FLUSH_TIMEOUT);
            ExitCode::SUCCESS
        }
        Err(f) => {
            logging::last_words(&f.message, LOG_FLUSH_TIMEOUT);
            ExitCode::from(f.code)
        }
    }
}
