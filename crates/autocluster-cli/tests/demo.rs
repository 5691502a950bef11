//! `autocluster demo`, run for real: three nodes over multicast on loopback (and over a real
//! etcd) find each other, one crashes and is expired, one leaves cleanly, and the binary exits
//! 0 by itself; with an etcd that does not answer it fails with a clear message.
#![cfg(feature = "mcast")]

mod common;

use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{autocluster, Proc};

/// The demo must end by itself well within this.
const BOUND: Duration = Duration::from_secs(60);

/// Runs the binary to its end, at most `within`: (status, stdout, stderr, how long).
fn run_within(args: &[&str], within: Duration) -> (ExitStatus, String, String, Duration) {
    let started = Instant::now();
    let child = autocluster(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut proc = Proc(child);
    // Read both pipes on threads, so a full pipe never stalls the demo.
    let mut out = proc.0.stdout.take().unwrap();
    let mut err = proc.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let Some(status) = proc.wait_exit(within) else {
        drop(proc);
        panic!(
            "`autocluster {}` still runs after {within:?}; its output:\n{}",
            args.join(" "),
            out.join().unwrap()
        );
    };
    let took = started.elapsed();
    (status, out.join().unwrap(), err.join().unwrap(), took)
}

/// The lines of `out` that contain every one of `parts`.
fn lines_with<'a>(out: &'a str, parts: &[&str]) -> Vec<&'a str> {
    out.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// Checks the story: joins, the crash expired by both others, the clean leave seen by the
/// last one, a summary, and no false leave.
fn assert_story(out: &str, crash_reason: &str, leave_reason: &str) {
    for (observer, node) in [
        ("demo1", "demo2"),
        ("demo2", "demo1"),
        ("demo1", "demo3"),
        ("demo3", "demo1"),
        ("demo2", "demo3"),
        ("demo3", "demo2"),
    ] {
        let line = format!("{observer} sees {node} joined");
        assert_eq!(lines_with(out, &[&line]).len(), 1, "{line}:\n{out}");
    }
    for observer in ["demo1", "demo3"] {
        let lines = lines_with(
            out,
            &[&format!("{observer} sees demo2 left ({crash_reason}")],
        );
        assert_eq!(lines.len(), 1, "{observer} expires demo2:\n{out}");
    }
    let lines = lines_with(out, &["demo1 sees demo3 left", leave_reason]);
    assert_eq!(lines.len(), 1, "demo1 sees demo3 leave:\n{out}");
    // Every event line starts with its time since the start.
    let events = out
        .lines()
        .filter(|l| l.contains(" sees ") && (l.contains(" joined") || l.contains(" left (")));
    for line in events {
        let stamp = line.split_whitespace().next().unwrap_or("");
        assert!(
            stamp.starts_with('+') && stamp.ends_with('s'),
            "a timestamp first: {line:?}"
        );
    }
    assert!(out.contains("Summary"), "{out}");
    assert!(out.contains(", 0 false leaves"), "{out}");
    assert!(out.contains("autocluster agent -c examples/conf/"), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no colors when stdout is not a terminal:\n{out}"
    );
}

#[test]
fn the_demo_tells_joins_a_crash_and_a_clean_leave_then_exits_0() {
    let (status, out, err, took) = run_within(&["demo"], BOUND);
    println!("{out}\n(took {took:?})");
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("over UDP multicast on loopback"), "{out}");
    assert_story(&out, "expired", "said goodbye");
    // The crash is noticed after the member TTL (2s) counted from the last heartbeat, so
    // within 2s of the crash and not much before it.
    for line in lines_with(&out, &["noticed the crash"]) {
        let secs: f64 = line
            .split("crash ")
            .nth(1)
            .and_then(|r| r.split(" s ").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("a time in seconds: {line:?}"));
        assert!((1.0..4.0).contains(&secs), "{line}");
    }
    assert!(err.trim().is_empty(), "nothing on stderr: {err}");
}

#[test]
fn the_demo_refuses_an_etcd_url_for_multicast_and_a_bad_url() {
    let (status, _, err, _) = run_within(
        &[
            "demo",
            "--discovery",
            "mcast",
            "--etcd",
            "http://127.0.0.1:2379",
        ],
        BOUND,
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--etcd is for --discovery etcd"), "{err}");

    let (status, _, err, _) = run_within(&["demo", "--etcd", "127.0.0.1:2379"], BOUND);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("expected an http:// or https:// URL"), "{err}");
}

#[cfg(feature = "etcd")]
#[test]
fn the_demo_over_an_etcd_that_does_not_answer_fails_clearly() {
    let url = format!("http://{}", common::free_addr());
    let (status, _, err, took) =
        run_within(&["demo", "--discovery", "etcd", "--etcd", &url], BOUND);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("etcd at {url} does not answer")),
        "{err}"
    );
    assert!(
        err.contains("cannot reach etcd"),
        "the backend's error: {err}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[cfg(feature = "etcd")]
#[test]
fn the_demo_runs_over_a_real_etcd() {
    use autocluster_testkit::fixtures::etcd::EtcdServer;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let etcd = rt
        .block_on(EtcdServer::start())
        .unwrap_or_else(|e| panic!("etcd does not start: {e}"));
    let (status, out, err, took) = run_within(&["demo", "--etcd", &etcd.endpoint()], BOUND);
    println!("{out}\n(took {took:?})");
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("over etcd"), "{out}");
    assert_story(&out, "its lease ran out", "revoked its lease");
}
