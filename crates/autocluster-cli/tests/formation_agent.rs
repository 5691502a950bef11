//! Two clusters noticed by a real agent: `autocluster agent` on a real etcd with formation on
//! and an `--on-change` hook. It seeds; then a member of the same `cluster.name` registered by
//! another cluster (as after an etcd restored from another cluster's backup) appears under
//! the prefix. The hook runs once with `AUTOCLUSTER_EVENT=foreign_cluster`, the member and
//! `AUTOCLUSTER_FOREIGN_CLUSTER_ID`; `/events` has a `foreign_cluster` line; `/formation`
//! lists it and counts the sighting; a control character in the id arrives escaped.
#![cfg(feature = "etcd")]

mod common;

use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::etcd::etcd_body;
use common::{http_get, node_conf, wait_for, Agent, Events};
use serde_json::Value;

const N1: &str = "f1@127.0.0.1";
const FOREIGN: &str = "t9@127.0.0.1";

#[test]
fn a_member_of_another_cluster_is_an_event_for_hooks_and_for_events() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let etcd = rt.block_on(EtcdServer::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}cluster.formation.stable_for = 200ms\n",
        etcd_body(&etcd.endpoint(), "5s")
    );
    let hook_log = dir.path().join("hook.log");
    let on_change = format!(
        "printf '%s %s %s %s\\n' \"$AUTOCLUSTER_EVENT\" \"$AUTOCLUSTER_NODE\" \
         \"${{AUTOCLUSTER_FOREIGN_CLUSTER_ID:-none}}\" \"${{AUTOCLUSTER_FORMATION:-none}}\" >> {}",
        hook_log.display()
    );
    let agent = Agent::start_with(
        &node_conf(dir.path(), "f1", N1, &body),
        &["--on-change", &on_change],
        &[],
    );
    agent.wait_ready();
    let lines = || std::fs::read_to_string(&hook_log).unwrap_or_default();
    wait_for(
        "the formed event (seed)",
        || {
            lines()
                .contains(&format!("formed {N1} none seed"))
                .then_some(())
        },
        || format!("{}\n{}", lines(), agent.diag()),
    );
    let mut events = Events::subscribe(agent.admin());

    // Another cluster's member, its id with an escape sequence in it.
    let value = format!(r#"{{"node":"{FOREIGN}","cluster_id":"0123abcd\u001b[31m"}}"#);
    let key = format!("/emqxcl/emqxcl/nodes/{FOREIGN}");
    rt.block_on(etcd.etcdctl(&["put", &key, &value])).unwrap();

    let diag = || format!("{}\n{}", lines(), agent.diag());
    let line = events.expect("foreign_cluster", FOREIGN, &diag);
    assert_eq!(line["cluster_id"], "0123abcd\\u{1b}[31m", "escaped: {line}");
    let hook = wait_for(
        "the hook's foreign_cluster line",
        || {
            lines()
                .lines()
                .find(|l| l.starts_with("foreign_cluster "))
                .map(String::from)
        },
        diag,
    );
    assert_eq!(
        hook,
        format!("foreign_cluster {FOREIGN} 0123abcd\\u{{1b}}[31m seed")
    );
    let (code, body) = http_get(agent.admin(), "/formation").unwrap();
    assert_eq!(code, 200);
    let formation: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(formation["foreign_sightings"], 1, "{formation}");
    assert_eq!(
        formation["foreign_members"][0]["node"], FOREIGN,
        "{formation}"
    );

    // Once: the member stays, nothing more; gone and back, it is reported again.
    rt.block_on(etcd.etcdctl(&["del", &key])).unwrap();
    wait_for(
        "the foreign member gone from /formation",
        || {
            let (_, body) = http_get(agent.admin(), "/formation").ok()?;
            let f: Value = serde_json::from_str(&body).ok()?;
            (f["foreign_members"] == serde_json::json!([])).then_some(())
        },
        diag,
    );
    rt.block_on(etcd.etcdctl(&["put", &key, &value])).unwrap();
    events.expect("foreign_cluster", FOREIGN, &diag);
    wait_for(
        "the hook's second foreign_cluster line",
        || (lines().matches("foreign_cluster ").count() == 2).then_some(()),
        diag,
    );
}
