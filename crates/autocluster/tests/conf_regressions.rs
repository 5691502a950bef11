//! Replays the inputs `tools/fuzz.sh` keeps from the `config_conf` fuzz target (crashes,
//! out-of-memory and time-outs of the `.conf` loader), so a fixed one stays fixed: each file of
//! `tests/regressions/conf/` must load or fail with a located error, never panic, and quickly.

use std::time::{Duration, Instant};

use autocluster::config::{parse_conf, FileFormat};
use autocluster::Settings;

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
        let _ = parse_conf(&text);
        let _ = Settings::from_str(&text, FileFormat::Conf, "fuzz.conf");
        let full = format!(
            "node.name = emqx1@127.0.0.1\ncluster.discovery = etcd\n\
             cluster.etcd.server = http://127.0.0.1:2379\n{text}"
        );
        if let Ok(s) = Settings::from_str(&full, FileFormat::Conf, "fuzz.conf") {
            let _ = s.render();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
    }
}
