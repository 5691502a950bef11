//! A backend that authenticates peers with the cookie (here `static`, whose probe proves it)
//! running on the public default cookie: the agent says so at start, in `/status` and in
//! `autocluster status`; with a cookie of its own it says nothing of the kind.
#![cfg(feature = "static")]

mod common;

use std::path::Path;

use common::{free_addr, node_conf, run, text, Agent};

const NODE: &str = "w1@127.0.0.1";

/// A static node alone on a free loopback port, with `extra` lines.
fn start_agent(dir: &Path, file: &str, extra: &str) -> Agent {
    let listen = free_addr();
    let body = format!(
        "node.listen = {listen}\ncluster.discovery = static\ncluster.static.seeds = {NODE}\n\
         cluster.probe_interval = 500ms\n{extra}"
    );
    Agent::start(&node_conf(dir, file, NODE, &body))
}

/// The `warnings` of the agent's `/status`.
fn warnings(agent: &Agent) -> Vec<String> {
    let status = agent.status().expect("/status");
    status["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings array in /status: {status}"))
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_default_cookie_is_warned_of_at_start_in_status_and_by_the_status_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(dir.path(), "default", "");
    agent.wait_ready();

    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("node.cookie"))
        .unwrap_or_else(|| panic!("no warning about the cookie at start:\n{log}"));
    assert!(line.contains("public default"), "{line}");

    let listed = warnings(&agent);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].contains("node.cookie") && listed[0].contains("static"),
        "{listed:?}"
    );

    let (code, out) = agent.status_cli();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning:") && l.contains("node.cookie")),
        "{out}"
    );
    let json = agent.status_json();
    assert_eq!(json["warnings"][0], listed[0].as_str(), "{json}");
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn a_cookie_of_its_own_is_not_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(dir.path(), "own", "node.cookie = a-secret-of-this-test\n");
    agent.wait_ready();
    assert_eq!(warnings(&agent), Vec::<String>::new());
    assert!(!agent.log().contains("node.cookie"), "{}", agent.log());
    let out = run(&["status", "-c", agent.conf()]);
    assert!(
        !text(&out.stdout).contains("warning:"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(agent.stop(), Some(0));
}
