//! Replays the inputs `tools/fuzz.sh` keeps from the `config_conf` fuzz target (crashes,
//! out-of-memory and time-outs of the `.conf` loader), so a fixed one stays fixed: each file of
//! `tests/regressions/conf/` must load or fail with located errors, never panic, and quickly.

use std::time::{Duration, Instant};

use autocluster::config::FileFormat;
use autocluster::{ConfigError, Settings};

/// Every problem names the file, and a line where it has one.
fn located(e: &ConfigError) {
    for p in e.problems() {
        assert!(p.starts_with("fuzz.conf:"), "not located: {p}");
    }
}

#[test]
fn conf_fuzz_regressions_load_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/conf");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // none kept yet
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let started = Instant::now();
        if let Err(e) = Settings::from_str(&text, FileFormat::Conf, "fuzz.conf") {
            located(&e);
        }
        let full = format!(
            "node.name = emqx1@127.0.0.1\ncluster.discovery = etcd\n\
             cluster.etcd.server = http://127.0.0.1:2379\n{text}"
        );
        match Settings::from_str(&full, FileFormat::Conf, "fuzz.conf") {
            Ok(s) => drop(s.render()),
            Err(e) => located(&e),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
    }
}
