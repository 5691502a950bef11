//! Helpers shared by the CLI's integration tests: the binary and its configuration files
//! ([`mod.rs`](self)), bounded waits ([`wait`]), plain HTTP to the admin endpoint ([`http`]),
//! child processes killed on drop ([`process`]), a running agent ([`agent`]), a follower of
//! its events ([`events`]), etcd agents and in-process observers ([`etcd`]), and hostile
//! clients of its peer listener ([`flood`]).
//!
//! Each test file uses part of this, so what one of them leaves unused is not dead code.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod embedded;
pub mod etcd;
pub mod events;
pub mod flood;
pub mod http;
pub mod process;
pub mod wait;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub use agent::{Agent, Launch};
pub use events::Events;
pub use http::{http_get, http_status};
pub use process::Proc;
pub use wait::{wait_for, wait_within, WAIT};

/// The `autocluster` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_autocluster");

/// The binary with `args`, without any `AUTOCLUSTER_*` or `RUST_LOG` variable of the test's
/// environment (a test that wants one sets it on the command).
pub fn autocluster(args: &[&str]) -> Command {
    wrapped(&[], args)
}

/// [`autocluster`] run by `wrapper` (a program and its arguments, such as `prlimit
/// --nofile=1024:1024`), or directly when `wrapper` is empty.
pub fn wrapped(wrapper: &[&str], args: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    };
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k_text = k.to_string_lossy();
        if k_text.starts_with("AUTOCLUSTER_") || k_text == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs the binary with `args` to its end.
pub fn run(args: &[&str]) -> Output {
    autocluster(args).output().expect("the binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One TCP port that is free on every one of `hosts`, as a real port number shared by hosts.
pub fn free_port_on(hosts: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((hosts[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if hosts[1..]
            .iter()
            .all(|h| TcpListener::bind((*h, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?}");
}

/// A cookie no other test run shares.
pub fn cookie(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// Writes `body` to `<dir>/<name>`.
pub fn write_conf(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// Writes `<dir>/<file>.conf` for `node`: its name, an admin endpoint on a free loopback port,
/// then `body`.
pub fn node_conf(dir: &Path, file: &str, node: &str, body: &str) -> PathBuf {
    let admin = free_addr();
    write_conf(
        dir,
        &format!("{file}.conf"),
        &format!("node.name = {node}\nnode.admin_listen = {admin}\n{body}"),
    )
}

/// A duration in whole milliseconds, for the figures tests print.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `promtool check metrics` (Prometheus's own linter, from Debian's `prometheus`
/// package, which `tools/test.sh` installs) on a `/metrics` body; panics with what it found
/// unless it passes.
#[track_caller]
pub fn promtool_check(metrics: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus; tools/test.sh does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n---\n{metrics}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
