//! The command line, and the plan of a run it resolves to (sizes, counts, windows).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::verdict::keep_alive_bounds;

#[derive(Parser, Debug)]
#[command(
    name = "autocluster-bench",
    about = "End-to-end benchmarks of autocluster on a real etcd (docs/benchmarks.md)"
)]
pub struct Args {
    /// Small sizes, done in seconds: what CI runs to keep the harness working.
    #[arg(long)]
    pub quick: bool,
    /// Member counts of the convergence runs; the largest stays as the cluster the other
    /// figures are taken in (default 1000,5000,10000; with --quick 100,500).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub sizes: Option<Vec<usize>>,
    /// Observer nodes watching each cluster (default 3; with --quick 2).
    #[arg(long, value_name = "K")]
    pub observers: Option<usize>,
    /// Join/leave samples (default 300; with --quick 30).
    #[arg(long, value_name = "S")]
    pub samples: Option<usize>,
    /// Crashed members (default 10; with --quick 2).
    #[arg(long, value_name = "M")]
    pub crashes: Option<usize>,
    /// `node_ttl` of the crashed members, in seconds (default 3; with --quick 2).
    #[arg(long, value_name = "SECS")]
    pub crash_ttl: Option<u64>,
    /// `node_ttl` of every other node, in seconds; they send a keep-alive every third of it
    /// (default 60, the engine's default; with --quick 6).
    #[arg(long, value_name = "SECS")]
    pub node_ttl: Option<u64>,
    /// The steady-state window, in seconds; it must hold at least one keep-alive period
    /// (default 45; with --quick 5).
    #[arg(long, value_name = "SECS")]
    pub steady_secs: Option<u64>,
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The `autocluster` binary whose agent RSS is measured (default: the one next to this
    /// binary; build it with `cargo build --release -p autocluster-cli`).
    #[arg(long, value_name = "FILE")]
    pub agent_bin: Option<PathBuf>,
    /// The etcd binary (default: the testkit's choice, /usr/bin/etcd first).
    #[arg(long, value_name = "FILE")]
    pub etcd_bin: Option<PathBuf>,
    /// Internal: measure the engine's memory for this many members, print it and exit.
    #[arg(long, hide = true, value_name = "N")]
    pub table_memory: Option<usize>,
    /// Internal, with --table-memory: with an event subscriber that never reads.
    #[arg(long, hide = true)]
    pub subscribed: bool,
}

/// What one run measures, with every default resolved.
pub struct Plan {
    pub quick: bool,
    pub sizes: Vec<usize>,
    pub observers: usize,
    pub samples: usize,
    pub crashes: usize,
    pub crash_ttl: Duration,
    pub node_ttl: Duration,
    pub steady: Duration,
    pub memory_sizes: Vec<usize>,
}

impl Plan {
    /// The plan for `a`; an error names the option that makes the run unable to measure.
    pub fn from_args(a: &Args) -> Result<Plan, String> {
        let q = a.quick;
        let pick = |given: Option<u64>, full: u64, quick: u64| {
            given.unwrap_or(if q { quick } else { full })
        };
        let mut sizes = a.sizes.clone().unwrap_or_else(|| {
            if q {
                vec![100, 500]
            } else {
                vec![1_000, 5_000, 10_000]
            }
        });
        sizes.retain(|&n| n > 0);
        if sizes.is_empty() {
            sizes.push(100);
        }
        let node_ttl = pick(a.node_ttl, 60, 6);
        if node_ttl < 3 {
            return Err(format!(
                "--node-ttl {node_ttl}: etcd leases need at least 3 s here (a keep-alive every \
                 third of it, on a loaded machine)"
            ));
        }
        let plan = Plan {
            quick: q,
            sizes,
            observers: a.observers.unwrap_or(if q { 2 } else { 3 }).max(1),
            samples: a.samples.unwrap_or(if q { 30 } else { 300 }).max(1),
            crashes: a.crashes.unwrap_or(if q { 2 } else { 10 }).max(1),
            crash_ttl: Duration::from_secs(pick(a.crash_ttl, 3, 2).max(2)),
            node_ttl: Duration::from_secs(node_ttl),
            steady: Duration::from_secs(pick(a.steady_secs, 45, 5).max(1)),
            memory_sizes: if q {
                vec![10_000]
            } else {
                vec![10_000, 100_000]
            },
        };
        let (least, _) = keep_alive_bounds(1, plan.steady, plan.keep_alive_every());
        if least < 1.0 {
            return Err(format!(
                "--steady-secs {}: the window must hold at least one keep-alive period \
                 (node_ttl / 3 = {:.1} s, plus 10 %), or a node may send none in it",
                plan.steady.as_secs(),
                plan.keep_alive_every().as_secs_f64()
            ));
        }
        Ok(plan)
    }

    /// The largest cluster: the one the figures after convergence are taken in.
    pub fn largest(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(100)
    }

    /// How often a node with `node_ttl` sends a keep-alive (the etcd backend's choice).
    pub fn keep_alive_every(&self) -> Duration {
        self.node_ttl / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["autocluster-bench"];
        argv.extend_from_slice(args);
        Plan::from_args(&Args::try_parse_from(argv).expect("valid arguments"))
    }

    #[test]
    fn quick_and_full_windows_hold_keep_alives() {
        let q = plan(&["--quick"]).expect("quick plan");
        assert_eq!(q.keep_alive_every(), Duration::from_secs(2));
        assert_eq!(q.steady, Duration::from_secs(5));
        let full = plan(&[]).expect("full plan");
        assert_eq!(full.keep_alive_every(), Duration::from_secs(20));
        assert_eq!(full.largest(), 10_000);
    }

    #[test]
    fn a_window_shorter_than_a_keep_alive_period_is_refused() {
        let e = plan(&["--steady-secs", "4"]).err().expect("refused");
        assert!(e.contains("--steady-secs 4"), "{e}");
        assert!(e.contains("20.0 s"), "{e}");
        assert!(plan(&["--node-ttl", "2"]).is_err());
    }
}
