//! Feeds arbitrary text to the EMQX `.conf` loader (`Settings::from_str` with
//! `FileFormat::Conf`): as it comes, and behind the lines of a valid node file so the fuzzer
//! also reaches key validation, the backend sections, durations, lists and suggestions.
//! Either way the loader must return (a `Settings` or a located `ConfigError`), never panic;
//! the line parser must account for every non-blank, non-comment line.
#![no_main]

use autocluster::config::{parse_conf, FileFormat};
use autocluster::Settings;
use libfuzzer_sys::fuzz_target;

const HEAD: &str = "node.name = emqx1@127.0.0.1\ncluster.discovery = etcd\n\
                    cluster.etcd.server = http://127.0.0.1:2379\n";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_conf(&text);
    let lines = text
        .strip_prefix('\u{feff}')
        .unwrap_or(&text)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .count();
    assert_eq!(parsed.entries.len() + parsed.errors.len(), lines);

    if let Err(e) = Settings::from_str(&text, FileFormat::Conf, "fuzz.conf") {
        let _ = e.to_string();
    }
    let full = format!("{HEAD}{text}");
    match Settings::from_str(&full, FileFormat::Conf, "fuzz.conf") {
        Ok(s) => {
            let _ = s.render();
            let _ = format!("{s:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
