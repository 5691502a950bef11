//! Checks nemesis histories from the files alone, as the nemesis test does at its end: faults
//! by kind, checks per property, violations (each with its property, agent, window and seed).
//! Exits 1 when a history has a violation, 2 when one cannot be read.
//!
//! ```console
//! $ AUTOCLUSTER_NEMESIS_DIR=/tmp/nemesis cargo test -p autocluster-cli --test nemesis -- --nocapture
//! $ cargo run -p autocluster-testkit --example nemesis_check -- /tmp/nemesis/etcd-1/nemesis-etcd-1.jsonl
//! ```
//!
//! A history still being written can be checked too (a run in progress): what the checker
//! says then is about the rounds healed so far.

use std::path::PathBuf;
use std::process::ExitCode;

use autocluster_testkit::nemesis::{check, history};

fn main() -> ExitCode {
    let files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        eprintln!("usage: nemesis_check HISTORY.jsonl...");
        return ExitCode::from(2);
    }
    let mut code = ExitCode::SUCCESS;
    for file in files {
        let entries = match history::read(&file) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let report = check(&entries);
        println!("{}: {report}", file.display());
        if !report.violations.is_empty() {
            code = ExitCode::from(1);
        }
    }
    code
}
