//! A member's own data, end to end: two real `autocluster agent` processes on a real etcd,
//! labels and endpoints from the `.conf` file and from `AUTOCLUSTER_NODE__LABELS__*`, seen by
//! the peer in `/members`, `status --json`, the `status` table, `/events`, the hook's
//! environment and the JSON members file.
#![cfg(feature = "etcd")]

mod common;

use std::path::Path;

use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::etcd::etcd_body;
use common::{http_get, node_conf, run, text, wait_for, Agent, Events};
use serde_json::{json, Value};

const N1: &str = "a1@127.0.0.1";
const N2: &str = "a2@127.0.0.1";
const N3: &str = "a3@127.0.0.1";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The member `node` in a JSON array of members.
fn member<'a>(members: &'a Value, node: &str) -> Option<&'a Value> {
    members.as_array()?.iter().find(|m| m["node"] == node)
}

fn meta_of(members: &Value, node: &str) -> Value {
    member(members, node).map_or(
        Value::Null,
        |m| json!({"labels": m["meta"]["labels"], "endpoints": m["meta"]["endpoints"]}),
    )
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_peer_sees_the_labels_and_endpoints_of_the_configuration_everywhere() {
    let etcd = block_on(EtcdServer::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = etcd_body(&etcd.endpoint(), "3s");
    let conf1 = node_conf(
        dir.path(),
        "node1",
        N1,
        &format!(
            "{body}node.labels.zone = eu-1\nnode.labels.role = core\n\
             node.advertise.mqtt = 10.0.0.5:1883\nnode.advertise.grpc = [fd00::5]:50051\n"
        ),
    );
    let conf2 = node_conf(dir.path(), "node2", N2, &body);
    let hook_log = dir.path().join("hook.log");
    let members_file = dir.path().join("members.json");
    let on_change = format!(
        "printf '%s %s %s %s\\n' \"$AUTOCLUSTER_EVENT\" \"$AUTOCLUSTER_NODE\" \
         \"$AUTOCLUSTER_LABELS\" \"$AUTOCLUSTER_ENDPOINTS\" >> {}",
        hook_log.display()
    );
    let members_flag = members_file.display().to_string();
    let a2 = Agent::start_with(
        &conf2,
        &[
            "--on-change",
            &on_change,
            "--members-file",
            &members_flag,
            "--members-file-format",
            "json",
        ],
        &[("AUTOCLUSTER_NODE__LABELS__ZONE", "eu-2")],
    );
    a2.wait_ready();
    let mut events = Events::subscribe(a2.admin());
    let a1 = Agent::start(&conf1);
    a1.wait_ready();

    let want1 = json!({
        "labels": {"zone": "eu-1", "role": "core"},
        "endpoints": {"mqtt": "10.0.0.5:1883", "grpc": "[fd00::5]:50051"},
    });
    // /events: the join carries the metadata.
    let joined = events.expect("joined", N1, &|| a1.diag());
    assert_eq!(
        json!({"labels": joined["member"]["meta"]["labels"], "endpoints": joined["member"]["meta"]["endpoints"]}),
        want1,
        "{joined}"
    );
    // /members of the peer.
    let members = wait_for(
        "a1 with its labels in a2's /members",
        || {
            let (code, body) = http_get(a2.admin(), "/members").ok()?;
            let members: Value = serde_json::from_str(&body).ok()?;
            (code == 200 && meta_of(&members, N1) == want1).then_some(members)
        },
        || a2.diag(),
    );
    // The peer's label from its environment, seen by a1.
    let (_, seen) = http_get(a1.admin(), "/members").unwrap();
    let from_a1: Value = serde_json::from_str(&seen).unwrap();
    wait_for(
        "a2's zone from AUTOCLUSTER_NODE__LABELS__ZONE in a1's /members",
        || {
            let (_, seen) = http_get(a1.admin(), "/members").ok()?;
            let m: Value = serde_json::from_str(&seen).ok()?;
            (member(&m, N2)?["meta"]["labels"] == json!({"zone": "eu-2"})).then_some(())
        },
        || format!("{from_a1}\n{}", a1.diag()),
    );
    assert!(member(&members, N2).is_some());

    // status --json and the table.
    let status = a2.status_json();
    assert_eq!(meta_of(&status["members"], N1), want1, "{status}");
    let (code, table) = a2.status_cli();
    assert_eq!(code, Some(0));
    let row = table
        .lines()
        .find(|l| l.starts_with(N1))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("role=core,zone=eu-1")
            && row.contains("grpc=[fd00::5]:50051,mqtt=10.0.0.5:1883"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .starts_with("Cluster status"),
        "{table}"
    );

    // The hook's environment and the JSON members file.
    let line = wait_for(
        "the hook's line for a1",
        || {
            read_lines(&hook_log)
                .into_iter()
                .find(|l| l.starts_with(&format!("joined {N1} ")))
        },
        || a2.diag(),
    );
    assert_eq!(
        line,
        format!(
            "joined {N1} {{\"role\":\"core\",\"zone\":\"eu-1\"}} \
             {{\"grpc\":\"[fd00::5]:50051\",\"mqtt\":\"10.0.0.5:1883\"}}"
        )
    );
    wait_for(
        "a1 with its labels in the members file",
        || {
            let text = std::fs::read_to_string(&members_file).ok()?;
            let m: Value = serde_json::from_str(&text).ok()?;
            (meta_of(&m, N1) == want1 && member(&m, N2).is_some()).then_some(())
        },
        || a2.diag(),
    );

    // `check` shows them, with where they came from.
    let out = run(&["check", "-c", a1.conf()]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("node.labels.zone = eu-1")
            && shown.contains("node.advertise.mqtt = 10.0.0.5:1883"),
        "{shown}"
    );

    // A third node with a label a peer can see only escaped.
    let conf3 = node_conf(
        dir.path(),
        "node3",
        N3,
        &format!("{body}node.labels.note = a\u{7f}b\n"),
    );
    let out = run(&["check", "-c", conf3.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "a control character is refused");
    assert!(
        text(&out.stderr)
            .contains("node.labels.note = a\\u{7f}b: the value has a control character"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_runtime_update_is_one_updated_event_on_a_real_agent() {
    runtime_update("v3");
}

#[test]
fn a_runtime_update_is_one_updated_event_on_a_real_agent_with_etcd_v2() {
    runtime_update("v2");
}

/// A program embedding the library sets labels with the builder and changes them at run
/// time: a real agent on the same etcd (`api`: v3 or v2) sees the join with the builder's
/// labels, then exactly one `updated` per update, under the same registration (v3: lease;
/// v2: the key's createdIndex), then the leave.
fn runtime_update(api: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let etcd = rt
        .block_on(EtcdServer::builder().v2(api == "v2").start())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}cluster.etcd.api = {api}\n",
        etcd_body(&etcd.endpoint(), "3s")
    );
    let agent = Agent::start(&node_conf(dir.path(), "agent", N2, &body));
    agent.wait_ready();
    let mut events = Events::subscribe(agent.admin());

    let settings = autocluster::Settings::from_pairs([
        ("node.name", "lib@127.0.0.1"),
        ("cluster.discovery", "etcd"),
        ("cluster.etcd.server", etcd.endpoint().as_str()),
        ("cluster.etcd.prefix", "emqxcl"),
        ("cluster.etcd.node_ttl", "3s"),
        ("cluster.etcd.api", api),
        ("node.labels.zone", "eu-1"),
    ])
    .unwrap();
    let diag = || agent.diag();
    let seen = common::embedded::join_update_twice_and_leave(
        &rt,
        &settings,
        "127.0.0.1:50051",
        &mut events,
        &diag,
    );
    for updated in &seen.updates {
        assert_eq!(
            updated["member"]["incarnation"], seen.joined["member"]["incarnation"],
            "written again under the same lease"
        );
    }
}
