//! The agent's hooks, run for real: `--members-file` and `--on-change` on `autocluster agent`
//! processes, with `cluster.discovery = manual` and over multicast on loopback (each test has
//! its own group, port and cookie), and handlers that are real `sh` processes.
//!
//! Conditions are awaited by polling files and the admin endpoint (at most [`WAIT`] each),
//! never by fixed sleeps; every agent is killed when its guard drops, also when a test fails.
#![cfg(feature = "mcast")]

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::UdpSocket;
use std::path::Path;

use common::{http_status, node_conf, wait_for, Agent, BIN, WAIT};

fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// Settings of a multicast cluster of its own: a random group, a free port, a random cookie.
fn mcast_cluster() -> String {
    let r = random();
    let port = UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        "node.cookie = hooks-{:016x}\ncluster.name = hooks{}\ncluster.discovery = mcast\n\
         cluster.mcast.addr = 239.255.{}.{}\ncluster.mcast.ports = {port}\n\
         cluster.mcast.iface = 127.0.0.1\ncluster.mcast.ttl = 1\n\
         cluster.mcast.heartbeat = 300ms\ncluster.mcast.member_ttl = 2s\n",
        random(),
        r % 1000,
        1 + (r >> 8) % 254,
        1 + (r >> 16) % 254,
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Starts `autocluster agent FLAGS...` on `<dir>/<short name>.conf`: `node.name = name`, an
/// admin endpoint, and `body`.
fn start_agent(dir: &Path, name: &str, body: &str, flags: &[&str]) -> Agent {
    let short = name.split('@').next().unwrap();
    Agent::start_with(&node_conf(dir, short, name, body), flags, &[])
}

/// Waits until the file at `path` reads `want`.
fn await_file(path: &Path, want: &str, diag: impl Fn() -> String) {
    wait_for(
        &format!("{} reads {want:?}", path.display()),
        || (read(path) == want).then_some(()),
        || format!("it reads {:?}\n{}", read(path), diag()),
    );
}

/// Waits until the file at `path` has a line starting with `prefix`; returns that line.
fn await_line(path: &Path, prefix: &str, diag: impl Fn() -> String) -> String {
    wait_for(
        &format!("a line {prefix:?} in {}", path.display()),
        || {
            read(path)
                .lines()
                .find(|l| l.starts_with(prefix))
                .map(str::to_string)
        },
        || format!("it reads {:?}\n{}", read(path), diag()),
    )
}

/// Whether process `pid` is gone (or a zombie no one reaped yet).
fn is_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_manual_agent_writes_itself_to_the_members_file() {
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("members");
    std::fs::write(&members, "stale@127.0.0.9\n").unwrap();
    // The handler runs `autocluster check` itself: the event variables it inherits
    // (AUTOCLUSTER_NODE, AUTOCLUSTER_CLUSTER) must not read as configuration.
    let check = dir.path().join("check.out");
    let conf = dir.path().join("emqx1.conf");
    let hook = format!(
        "{BIN} check -c {} > {} 2>&1; echo \"rc=$?\" >> {}",
        conf.display(),
        check.display(),
        check.display()
    );
    let mut agent = start_agent(
        dir.path(),
        "emqx1@127.0.0.1",
        "cluster.discovery = manual\n",
        &[
            "--members-file",
            members.to_str().unwrap(),
            "--on-change",
            &hook,
        ],
    );
    await_file(&members, "emqx1@127.0.0.1\n", || agent.log());
    let out = wait_for(
        "the handler's check ends",
        || Some(read(&check)).filter(|c| c.contains("rc=")),
        || agent.log(),
    );
    assert!(out.contains("rc=0"), "{out}");
    assert!(out.contains("node.name = emqx1@127.0.0.1"), "{out}");

    assert_eq!(agent.stop(), Some(0), "{}", agent.log());
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f.ends_with(".tmp")),
        "no temporary file left: {files:?}"
    );
}

#[test]
fn a_members_file_that_cannot_be_written_stops_the_agent_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("no/such/dir/members");
    let mut agent = start_agent(
        dir.path(),
        "emqx1@127.0.0.1",
        "cluster.discovery = manual\n",
        &["--members-file", members.to_str().unwrap()],
    );
    let status = agent.wait_exit(WAIT);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("--members-file") && log.contains("cannot write"),
        "{log}"
    );
    assert!(!log.contains("agent started"), "{log}");
}

#[test]
fn two_agents_over_multicast_keep_the_members_file_and_run_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mcast_cluster();
    let members = dir.path().join("members");
    let events = dir.path().join("events");
    let hook = format!(
        "echo \"$AUTOCLUSTER_EVENT $AUTOCLUSTER_NODE $(wc -l) reason=$AUTOCLUSTER_REASON \
         self=$AUTOCLUSTER_SELF cluster=$AUTOCLUSTER_CLUSTER inc=$AUTOCLUSTER_INCARNATION\" >> {}",
        events.display()
    );
    let n1 = "hooks1@127.0.0.31";
    let n2 = "hooks2@127.0.0.32";
    let a1 = start_agent(
        dir.path(),
        n1,
        &cluster,
        &[
            "--members-file",
            members.to_str().unwrap(),
            "--on-change",
            &hook,
        ],
    );
    a1.wait_ready();
    await_file(&members, &format!("{n1}\n"), || a1.log());
    let line = await_line(&events, &format!("joined {n1} "), || a1.log());
    assert!(line.contains(&format!("self={n1} ")), "{line}");

    let mut a2 = start_agent(dir.path(), n2, &cluster, &[]);
    a2.wait_ready();
    await_file(&members, &format!("{n1}\n{n2}\n"), || a1.log());
    let line = await_line(&events, &format!("joined {n2} "), || a1.log());
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "2", "both members on stdin: {line}");
    assert_eq!(fields[3], "reason=", "no reason for a join: {line}");
    assert_eq!(fields[4], format!("self={n1}"), "{line}");
    assert!(fields[5].starts_with("cluster=hooks"), "{line}");
    assert!(fields[6].len() > "inc=".len(), "an incarnation: {line}");

    assert_eq!(a2.stop(), Some(0), "{}", a2.log());
    await_file(&members, &format!("{n1}\n"), || a1.log());
    let line = await_line(&events, &format!("left {n2} "), || a1.log());
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "1", "one member left on stdin: {line}");
    assert_eq!(fields[3], "reason=deregistered", "{line}");

    let order: Vec<String> = read(&events)
        .lines()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        order,
        [
            format!("joined {n1}"),
            format!("joined {n2}"),
            format!("left {n2}")
        ],
        "one handler per event, in order"
    );
}

#[test]
fn failing_and_slow_handlers_do_not_stop_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mcast_cluster();
    let members = dir.path().join("members");
    let events = dir.path().join("events");
    let sleeper = dir.path().join("sleeper.pid");
    // Its own join fails (exit 1, with a word on stderr); the next join hangs in a child
    // process past the timeout; the leave succeeds.
    let hook = format!(
        "echo \"$AUTOCLUSTER_EVENT $AUTOCLUSTER_NODE\" >> {events}\n\
         if [ \"$AUTOCLUSTER_NODE\" = \"$AUTOCLUSTER_SELF\" ]; then echo 'boom: no such service' >&2; exit 1; fi\n\
         if [ \"$AUTOCLUSTER_EVENT\" = joined ]; then sleep 60 & echo $! > {sleeper}; wait; fi",
        events = events.display(),
        sleeper = sleeper.display(),
    );
    let n1 = "slow1@127.0.0.41";
    let n2 = "slow2@127.0.0.42";
    let a1 = start_agent(
        dir.path(),
        n1,
        &cluster,
        &[
            "--members-file",
            members.to_str().unwrap(),
            "--on-change",
            &hook,
            "--hook-timeout",
            "1s",
        ],
    );
    a1.wait_ready();
    await_line(&events, &format!("joined {n1}"), || a1.log());
    wait_for(
        "the failure is logged",
        || (a1.log().contains("handler failed")).then_some(()),
        || a1.log(),
    );
    let log = a1.log();
    assert!(log.contains("exit status: 1"), "{log}");
    assert!(
        log.contains("boom: no such service"),
        "the stderr tail: {log}"
    );

    let mut a2 = start_agent(dir.path(), n2, &cluster, &[]);
    a2.wait_ready();
    await_line(&events, &format!("joined {n2}"), || a1.log());
    wait_for(
        "the timeout is logged",
        || (a1.log().contains("did not finish within 1s")).then_some(()),
        || a1.log(),
    );
    let pid = wait_for(
        "the sleeper's pid",
        || Some(read(&sleeper).trim().to_string()).filter(|p| !p.is_empty()),
        || a1.log(),
    );
    wait_for(
        "the handler's child is killed with it",
        || is_gone(&pid).then_some(()),
        || format!("process {pid} still runs"),
    );

    // The agent goes on: it is alive, follows the membership and runs the next handler.
    assert_eq!(http_status(a1.admin(), "/health/live"), Some(200));
    await_file(&members, &format!("{n1}\n{n2}\n"), || a1.log());
    assert_eq!(a2.stop(), Some(0), "{}", a2.log());
    await_line(&events, &format!("left {n2}"), || a1.log());
    await_file(&members, &format!("{n1}\n"), || a1.log());
    assert_eq!(http_status(a1.admin(), "/health/ready"), Some(200));
}
