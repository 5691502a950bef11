//! What the network can make the agent log, run for real: an `autocluster agent` with the
//! static backend, its stderr captured, and handshakes to its peer listener (`node.listen`)
//! crafted by the test: names that try to forge log lines, and a flood of handshakes with
//! the wrong cookie. Run with `--nocapture` to see the figures.
#![cfg(feature = "static")]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::flood::{self, HelloNames};
use common::{cookie, free_port_on, node_conf, wait_for, Agent};

/// A whole log line, as the agent writes one, that a name from the network tries to forge.
const FORGED: &str = "2099-01-01T00:00:00.000000Z  INFO autocluster::engine::shared: \
                      member joined event=\"joined\" node=evil@10.6.6.6";

/// An agent alone in its static cluster at `host`: (agent, its peer listener, its name).
fn lone_agent(dir: &Path, host: &str, env: &[(&str, &str)]) -> (Agent, SocketAddr, String) {
    let port = free_port_on(&[host]);
    let name = format!("emqx@{host}");
    let body = format!(
        "node.cookie = {}\nnode.listen = {host}:{port}\ncluster.discovery = static\n\
         cluster.static.seeds = {name}\n",
        cookie("logs")
    );
    let agent = Agent::start_with(&node_conf(dir, "node", &name, &body), &[], env);
    agent.wait_ready();
    (agent, format!("{host}:{port}").parse().unwrap(), name)
}

fn handshake(to: SocketAddr, cluster: &str, prober: &str, target: &str) -> Vec<u8> {
    let names = HelloNames {
        cluster: cluster.into(),
        prober: prober.into(),
        target: target.into(),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(flood::handshake(Ipv4Addr::LOCALHOST, to, &names))
}

#[test]
fn names_from_the_network_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("RUST_LOG", "info,autocluster=debug")];
    let (agent, listen, me) = lone_agent(dir.path(), "127.0.0.35", &env);
    let ansi = "\u{1b}[2K\u{1b}[1A";
    // The prober's name (refused for a wrong cookie, or as no node name), the node it asks
    // for (refused as another node), and its cluster (refused as another cluster).
    let attempts = [
        (
            "emqxcl",
            format!("emqx@127.0.0.1\n{FORGED}{ansi}"),
            me.clone(),
        ),
        (
            "emqxcl",
            "emqx@127.0.0.1".to_string(),
            format!("{me}\n{FORGED}{ansi}"),
        ),
        (
            &*format!("emqxcl\n{FORGED}{ansi}"),
            "emqx@127.0.0.1".to_string(),
            me.clone(),
        ),
    ];
    for (cluster, prober, target) in &attempts {
        let frames = handshake(listen, cluster, prober, target);
        assert_eq!(frames.last(), Some(&flood::REFUSED), "{frames:?}");
    }
    let log = wait_for(
        "the agent to log the three refusals",
        || {
            let log = agent.log();
            let first = log.contains("is not name@host") || log.contains("does not know");
            (first && log.contains("asked for") && log.contains("is in cluster")).then_some(log)
        },
        || agent.diag(),
    );
    for line in log.lines() {
        assert!(
            !line.starts_with("2099-"),
            "a forged line in the log:\n{line}\n{}",
            agent.diag()
        );
        assert!(
            line.starts_with("20") && line.as_bytes().get(10) == Some(&b'T'),
            "a line that is not the agent's own (no timestamp):\n{line}\n{}",
            agent.diag()
        );
    }
    assert!(!log.contains('\u{1b}'), "an ANSI escape in the log");
    // The operator still sees what was attempted, escaped.
    assert!(log.contains(r"\n2099-01-01T"), "{}", agent.diag());
}

#[test]
fn a_bad_cookie_flood_adds_a_bounded_number_of_log_lines() {
    const FLOOD: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();
    let (agent, listen, me) = lone_agent(dir.path(), "127.0.0.36", &[]);
    let (bytes_before, lines_before) = (agent.log().len(), agent.log().lines().count());
    let cpu_before = agent.cpu_time().unwrap_or_default();
    let names = HelloNames {
        cluster: "emqxcl".into(),
        prober: "intruder@127.0.3.1".into(),
        target: me,
    };
    let done = flood::bad_cookie(listen, 96, flood::sources(3, 24), names, FLOOD).join();
    let log = agent.log();
    let grown = log.len() - bytes_before;
    let lines = log.lines().count() - lines_before;
    let cpu = agent.cpu_time().unwrap_or_default() - cpu_before;
    eprintln!(
        "bad-cookie flood: {} handshakes refused in {FLOOD:?} ({:.0}/s); the log grew by {grown} \
         bytes ({:.0} B/s), {lines} lines; the agent used {:.0}% of a core",
        done.refused,
        done.refused as f64 / FLOOD.as_secs_f64(),
        grown as f64 / FLOOD.as_secs_f64(),
        cpu.as_secs_f64() * 100.0 / FLOOD.as_secs_f64(),
    );
    eprintln!(
        "the lines:\n{}",
        &log[bytes_before..log.len().min(bytes_before + 2000)]
    );
    assert!(done.refused >= 1000, "no flood: {done:?}");
    assert!(
        lines <= 3,
        "the log grew by {lines} lines:\n{}",
        agent.diag()
    );
    // Every refusal is counted, though not logged; still no more lines once all are in.
    let metric = "autocluster_probe_connections_total{outcome=\"bad_cookie\"}";
    wait_for(
        "every refusal counted in /metrics",
        || (agent.metric(metric)? as u64 >= done.refused).then_some(()),
        || agent.diag(),
    );
    let lines = agent.log().lines().count() - lines_before;
    assert!(
        lines <= 3,
        "the log grew by {lines} lines:\n{}",
        agent.diag()
    );
    assert!(agent.log().contains("does not know this cluster's cookie"));
}
