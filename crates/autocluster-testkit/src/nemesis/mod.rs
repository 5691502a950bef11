//! A nemesis: real agents over real servers, random overlapping faults drawn from a seed,
//! one history file per run, and a checker that proves from that file alone that every view
//! came back true (see `docs/reliability.md`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use autocluster_testkit::nemesis::{self, Settings};
//! let s = Settings::new("target/debug/autocluster".into(), 7, std::time::Duration::from_secs(90));
//! let outcome = nemesis::etcd(s).await?;
//! println!("{}", outcome.report); // faults by kind, checks per property, violations
//! assert!(outcome.report.violations.is_empty(), "history: {}", outcome.history.display());
//! # Ok(()) }
//! ```
//!
//! - [`history`]: the JSON-lines format, its writer and reader;
//! - [`checker`]: the six properties, proved from a history;
//! - [`faults`]: the kinds of fault and the seeded dice;
//! - [`agents`]: agent processes, their event streams, the poller of readiness and views;
//! - `etcd_run`, `etcd_ops`: the etcd harness and what it does to the data;
//! - `mcast_run`, [`netns`]: the multicast harness and its namespaces;
//! - `rounds`: what both do after a round's heal.

pub mod agents;
pub mod checker;
mod etcd_ops;
mod etcd_run;
pub mod faults;
pub mod history;
mod mcast_run;
pub mod netns;
mod rounds;

use std::path::PathBuf;
use std::time::Duration;

pub use checker::{check, Report, Violation};

/// How to run a nemesis.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The `autocluster` binary.
    pub bin: PathBuf,
    /// The seed of every random choice.
    pub seed: u64,
    /// How long to run rounds (the last round ends after it).
    pub duration: Duration,
    /// How long faults are injected in each round before everything is healed.
    pub round: Duration,
    /// How many agents.
    pub agents: usize,
    /// `node_ttl` of every agent.
    pub node_ttl: Duration,
    /// Where the history, the agents' configurations and logs go.
    pub dir: PathBuf,
}

impl Settings {
    /// Five agents, `node_ttl = 3s`, rounds of 12 s, files under the temporary directory.
    pub fn new(bin: PathBuf, seed: u64, duration: Duration) -> Settings {
        Settings {
            bin,
            seed,
            duration,
            round: Duration::from_secs(12),
            agents: 5,
            node_ttl: Duration::from_secs(3),
            dir: std::env::temp_dir()
                .join(format!("autocluster-nemesis-{}-{seed}", std::process::id())),
        }
    }

    /// Files under `dir` instead.
    pub fn dir(mut self, dir: PathBuf) -> Settings {
        self.dir = dir;
        self
    }
}

/// What a run left: its history file and the checker's report on it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// The history (JSON lines).
    pub history: PathBuf,
    /// The checker's report.
    pub report: Report,
}

/// Runs agents over a three-member etcd cluster with faults, then checks the history.
pub async fn etcd(s: Settings) -> std::io::Result<Outcome> {
    etcd_run::run(s).await
}

/// Runs agents over multicast in network namespaces with faults (Linux, root: see
/// [`netns::Net::available`]), then checks the history. `node_ttl` is the members' TTL.
pub async fn mcast(s: Settings) -> std::io::Result<Outcome> {
    mcast_run::run(s).await
}
