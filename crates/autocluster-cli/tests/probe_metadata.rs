//! Static and DNS peers see a member's own data: real `autocluster agent` processes on
//! loopback hosts (127.0.0.61 and up), where the only way a peer learns labels, endpoints and
//! a run-time update is the peer probe's METADATA frame (a candidate list names nodes only).
//!
//! - two static agents: each one's `/members`, `status --json`, the `status` table and
//!   `/events` show the other's labels and endpoints from its configuration;
//! - a program on the library (`Cluster::builder` over static seeds) updates its labels at run
//!   time: the agent sees exactly one `updated` per update, then the leave;
//! - the same over DNS (dnsmasq serving the A records).
#![cfg(all(feature = "static", feature = "dns"))]

mod common;

use std::path::Path;

use autocluster_testkit::fixtures::dnsmasq::Dnsmasq;
use common::{cookie, free_port_on, node_conf, wait_for, Agent, Events};
use serde_json::{json, Value};

const N1: &str = "m1@127.0.0.61";
const N2: &str = "m2@127.0.0.62";

fn member<'a>(members: &'a Value, node: &str) -> Option<&'a Value> {
    members.as_array()?.iter().find(|m| m["node"] == node)
}

fn meta_of(members: &Value, node: &str) -> Value {
    member(members, node).map_or(
        Value::Null,
        |m| json!({"labels": m["meta"]["labels"], "endpoints": m["meta"]["endpoints"]}),
    )
}

fn start(dir: &Path, file: &str, node: &str, body: &str) -> Agent {
    let body = format!("cluster.probe_interval = 300ms\n{body}");
    Agent::start(&node_conf(dir, file, node, &body))
}

const LABELS_1: &str = "node.labels.zone = eu-1\nnode.labels.role = core\n\
                        node.advertise.mqtt = 10.0.0.5:1883\nnode.advertise.grpc = [fd00::5]:50051\n";

fn want_1() -> Value {
    json!({
        "labels": {"zone": "eu-1", "role": "core"},
        "endpoints": {"mqtt": "10.0.0.5:1883", "grpc": "[fd00::5]:50051"},
    })
}

/// a2 follows a1 from before it starts: the join, `/members`, `status --json` and the
/// table show a1's labels and endpoints; a1 sees a2's label.
fn a_peer_sees_the_configuration(names: [&str; 2], bodies: [&str; 2], dir: &Path) {
    let ([n1, n2], [a1_body, a2_body]) = (names, bodies);
    let a2 = start(
        dir,
        "m2",
        n2,
        &format!("{a2_body}node.labels.zone = eu-2\n"),
    );
    a2.wait_ready();
    let mut events = Events::subscribe(a2.admin());
    let a1 = start(dir, "m1", n1, &format!("{a1_body}{LABELS_1}"));
    let diag = || format!("{}\n{}", a1.diag(), a2.diag());
    let joined = events.expect("joined", n1, &diag);
    assert_eq!(
        json!({"labels": joined["member"]["meta"]["labels"], "endpoints": joined["member"]["meta"]["endpoints"]}),
        want_1(),
        "the join carries the metadata: {joined}"
    );
    let members = wait_for(
        "a1 with its labels in a2's /members",
        || {
            let (code, body) = common::http_get(a2.admin(), "/members").ok()?;
            let members: Value = serde_json::from_str(&body).ok()?;
            (code == 200 && meta_of(&members, n1) == want_1()).then_some(members)
        },
        diag,
    );
    assert!(member(&members, n2).is_some(), "{members}");
    wait_for(
        "a2's zone in a1's /members",
        || {
            let (_, body) = common::http_get(a1.admin(), "/members").ok()?;
            let m: Value = serde_json::from_str(&body).ok()?;
            (member(&m, n2)?["meta"]["labels"] == json!({"zone": "eu-2"})).then_some(())
        },
        diag,
    );
    let status = a2.status_json();
    assert_eq!(meta_of(&status["members"], n1), want_1(), "{status}");
    let (code, table) = a2.status_cli();
    assert_eq!(code, Some(0));
    let row = table
        .lines()
        .find(|l| l.starts_with(n1))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("role=core,zone=eu-1")
            && row.contains("grpc=[fd00::5]:50051,mqtt=10.0.0.5:1883"),
        "{table}"
    );
    // The metrics of an agent with a peer listener and probes pass Prometheus's linter.
    let (code, metrics) = common::http_get(a2.admin(), "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("autocluster_probe_connections_total"),
        "{metrics}"
    );
    common::promtool_check(&metrics);
    // Probed every 300 ms, unchanged: no event after the join but a1's own view of a2.
    let later = events.drain();
    assert!(
        later.iter().all(|e| e["event"] != "updated"),
        "unchanged metadata made events: {later:#?}"
    );
}

#[test]
fn static_peers_see_labels_and_endpoints_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&["127.0.0.61", "127.0.0.62"]);
    let cookie = cookie("probe-meta");
    let body = |host: &str| {
        format!(
            "node.cookie = {cookie}\nnode.listen = {host}:{port}\ncluster.discovery = static\n\
             cluster.static.seeds = {N1}, {N2}\n"
        )
    };
    a_peer_sees_the_configuration(
        [N1, N2],
        [&body("127.0.0.61"), &body("127.0.0.62")],
        dir.path(),
    );
}

#[test]
fn dns_peers_see_labels_and_endpoints_from_the_configuration() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dns = rt
        .block_on(
            Dnsmasq::builder()
                .host_record("meta.cluster.test", "127.0.0.61")
                .host_record("meta.cluster.test", "127.0.0.62")
                .start(),
        )
        .unwrap_or_else(|e| panic!("dnsmasq does not start: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&["127.0.0.61", "127.0.0.62"]);
    let cookie = cookie("probe-meta-dns");
    let body = |host: &str| {
        format!(
            "node.cookie = {cookie}\nnode.listen = {host}:{port}\ncluster.discovery = dns\n\
             cluster.dns.type = a\ncluster.dns.name = meta.cluster.test\ncluster.dns.app = m\n\
             cluster.dns.servers = {}\ncluster.dns.interval = 1s\n",
            dns.server_addr()
        )
    };
    a_peer_sees_the_configuration(
        ["m@127.0.0.61", "m@127.0.0.62"],
        [&body("127.0.0.61"), &body("127.0.0.62")],
        dir.path(),
    );
}

/// A program on the library changes its labels at run time; a static agent hears each
/// change at its next probe, as exactly one `updated`; the program leaves: `left`.
#[test]
fn a_runtime_update_reaches_static_peers_as_one_updated_event() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_on(&["127.0.0.61", "127.0.0.62"]);
    let cookie = cookie("probe-update");
    let seeds = format!("{N1}, {N2}");
    let agent = start(
        dir.path(),
        "m2",
        N2,
        &format!(
            "node.cookie = {cookie}\nnode.listen = 127.0.0.62:{port}\ncluster.discovery = static\n\
             cluster.static.seeds = {seeds}\n"
        ),
    );
    agent.wait_ready();
    let mut events = Events::subscribe(agent.admin());
    let listen = format!("127.0.0.61:{port}");
    let settings = autocluster::Settings::from_pairs([
        ("node.name", N1),
        ("node.cookie", cookie.as_str()),
        ("node.listen", listen.as_str()),
        ("cluster.discovery", "static"),
        ("cluster.static.seeds", seeds.as_str()),
        ("cluster.probe_interval", "300ms"),
        ("node.labels.zone", "eu-1"),
    ])
    .unwrap();
    let diag = || agent.diag();
    common::embedded::join_update_twice_and_leave(
        &rt,
        &settings,
        "127.0.0.61:50051",
        &mut events,
        &diag,
    );
}
