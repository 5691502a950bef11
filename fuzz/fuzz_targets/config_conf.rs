//! Feeds arbitrary text to the EMQX `.conf` loader (`Settings::from_str` with
//! `FileFormat::Conf`): as it comes, and behind the lines of a valid node file so the fuzzer
//! also reaches key validation, the backend sections, durations, lists and suggestions.
//! Either way the loader must return (a `Settings` or a `ConfigError`), never panic, and every
//! problem and warning must be located: `fuzz.conf:LINE: ...` with a line of the text, or
//! `fuzz.conf: ...` for what has no line (a required key that is missing).
//! (That every line is read, as an entry or an error, is a proptest of the line reader in
//! `crates/autocluster/src/config/conf_format.rs`.)
#![no_main]

use autocluster::config::FileFormat;
use autocluster::Settings;
use libfuzzer_sys::fuzz_target;

const HEAD: &str = "node.name = emqx1@127.0.0.1\ncluster.discovery = etcd\n\
                    cluster.etcd.server = http://127.0.0.1:2379\n";

/// Panics unless `message` names the file, and a line of `text` when it names one.
fn assert_located(message: &str, text: &str) {
    let rest = message
        .strip_prefix("fuzz.conf:")
        .unwrap_or_else(|| panic!("not located: {message}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !digits.is_empty() {
        let line: usize = digits.parse().unwrap_or(usize::MAX);
        let lines = text.lines().count().max(1);
        assert!(
            (1..=lines).contains(&line),
            "line {line} of {lines}: {message}"
        );
    }
}

fn load(text: &str) {
    match Settings::from_str(text, FileFormat::Conf, "fuzz.conf") {
        Ok(s) => {
            let _ = s.render();
            let _ = format!("{s:?}");
            for w in s.warnings.iter().chain(&s.no_effect) {
                assert_located(w, text);
            }
        }
        Err(e) => {
            for p in e.problems() {
                assert_located(p, text);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    load(&text);
    load(&format!("{HEAD}{text}"));
});
