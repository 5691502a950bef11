//! Formation against a real etcd: in-process `Cluster`s over the real etcd backend.
//!
//! - nodes that start together decide on exactly one seed, and a node arriving later joins
//!   that cluster at once (without waiting for a stable set);
//! - `cluster.formation.new_cluster = off` refuses to seed, and writes no record;
//! - a member of the same `cluster.name` carrying another cluster id is noticed.

use std::time::Duration;

use autocluster::{Cluster, Role, Settings};
use autocluster_testkit::fixtures::etcd::EtcdServer;

const WAIT: Duration = Duration::from_secs(30);

fn node(etcd: &EtcdServer, prefix: &str, name: &str, extra: &[(&str, &str)]) -> Settings {
    let endpoint = etcd.endpoint();
    let mut pairs: Vec<(String, String)> = vec![
        ("node.name".into(), format!("{name}@127.0.0.1")),
        ("cluster.name".into(), "formtest".into()),
        ("cluster.discovery".into(), "etcd".into()),
        ("cluster.etcd.server".into(), endpoint),
        ("cluster.etcd.prefix".into(), prefix.into()),
        ("cluster.etcd.node_ttl".into(), "10s".into()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_pairs(pairs).expect("settings")
}

async fn form(c: &Cluster) -> autocluster::Formation {
    tokio::time::timeout(WAIT, c.form())
        .await
        .expect("form() is bounded by the formation timeout")
        .unwrap_or_else(|e| panic!("{}: formation failed: {e}", c.node()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_seed_once_and_a_late_node_joins_that_cluster() {
    let etcd = EtcdServer::start().await.unwrap();
    let opts = [
        ("cluster.formation.min_members", "3"),
        ("cluster.formation.stable_for", "300ms"),
        ("cluster.formation.timeout", "20s"),
    ];
    let mut nodes = Vec::new();
    for n in ["f1", "f2", "f3"] {
        nodes.push(
            Cluster::start(&node(&etcd, "late", n, &opts))
                .await
                .unwrap(),
        );
    }
    let decisions = futures::future::join_all(nodes.iter().map(form)).await;
    let seeds: Vec<_> = decisions.iter().filter(|f| f.role == Role::Seed).collect();
    assert_eq!(seeds.len(), 1, "exactly one seed: {decisions:?}");
    let seed = seeds[0].target.clone();
    for f in &decisions {
        assert_eq!(f.target, seed, "every node joins the seed: {decisions:?}");
        assert_eq!(f.cluster_id, decisions[0].cluster_id, "one cluster id");
    }
    let record = etcd
        .etcdctl(&["get", "/late/formtest/formed", "--print-value-only"])
        .await
        .unwrap();
    assert!(
        record.contains(&decisions[0].cluster_id) && record.contains(&seed.to_string()),
        "the record names the cluster and its seed: {record}"
    );

    // A node arriving after formation joins at once: with a stable_for longer than its
    // timeout it could not decide by waiting for a stable set.
    let late_opts = [
        ("cluster.formation.min_members", "3"),
        ("cluster.formation.stable_for", "1h"),
        ("cluster.formation.timeout", "20s"),
    ];
    let late = Cluster::start(&node(&etcd, "late", "f0", &late_opts))
        .await
        .unwrap();
    let f = form(&late).await;
    assert_eq!(f.role, Role::Join, "{f:?}");
    assert!(f.existing, "{f:?}");
    assert_eq!(f.target, seed);
    assert_eq!(f.cluster_id, decisions[0].cluster_id);

    // The id travels in the registrations: every node sees every other carry it.
    for c in nodes.iter().chain([&late]) {
        let mut rx = c.watch();
        let all_carry = |v: &autocluster::View| {
            v.members().count() == 4
                && v.members().all(|e| {
                    e.member.meta.as_ref().and_then(|m| m.cluster_id.as_deref())
                        == Some(f.cluster_id.as_str())
                })
        };
        tokio::time::timeout(WAIT, rx.wait_for(all_carry))
            .await
            .expect("every member carries the cluster id")
            .unwrap();
        assert!(c.foreign_members().is_empty());
    }
    for c in nodes.iter().chain([&late]) {
        c.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_cluster_off_refuses_to_seed() {
    let etcd = EtcdServer::start().await.unwrap();
    let opts = [
        ("cluster.formation.new_cluster", "off"),
        ("cluster.formation.stable_for", "100ms"),
        ("cluster.formation.timeout", "20s"),
    ];
    let c = Cluster::start(&node(&etcd, "refuse", "r1", &opts))
        .await
        .unwrap();
    let err = tokio::time::timeout(WAIT, c.form())
        .await
        .expect("bounded")
        .expect_err("a node that may not seed, alone, must not seed");
    assert_eq!(err.kind(), autocluster::ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("cluster.formation.new_cluster"),
        "{err}"
    );
    assert!(c.formation().is_none());
    let record = etcd
        .etcdctl(&["get", "/refuse/formtest/formed", "--print-value-only"])
        .await
        .unwrap();
    assert!(record.trim().is_empty(), "no record written: {record}");

    // Once a cluster is formed (by a node that may seed), the same setting joins it.
    let seed = Cluster::start(&node(
        &etcd,
        "refuse",
        "r0",
        &[("cluster.formation.stable_for", "100ms")],
    ))
    .await
    .unwrap();
    let s = form(&seed).await;
    assert_eq!(s.role, Role::Seed);
    let again = Cluster::start(&node(&etcd, "refuse", "r2", &opts))
        .await
        .unwrap();
    let j = form(&again).await;
    assert_eq!((j.role, &j.target), (Role::Join, &s.target));
    for c in [&c, &seed, &again] {
        c.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_cluster_id_is_noticed() {
    let etcd = EtcdServer::start().await.unwrap();
    let opts = [("cluster.formation.stable_for", "100ms")];
    let c = Cluster::start(&node(&etcd, "two", "t1", &opts))
        .await
        .unwrap();
    let f = form(&c).await;
    assert_eq!(f.role, Role::Seed);
    assert_eq!(c.foreign_sightings(), 0);
    let mut foreign = c.watch_foreign_members();
    // A node of the same cluster.name registered by another cluster (as after an etcd
    // restored from another cluster's backup): its registration carries another id.
    etcd.etcdctl(&[
        "put",
        "/two/formtest/nodes/t9@127.0.0.1",
        r#"{"node":"t9@127.0.0.1","cluster_id":"0123456789abcdef0123456789abcdef"}"#,
    ])
    .await
    .unwrap();
    let seen = tokio::time::timeout(WAIT, foreign.wait_for(|f| !f.is_empty()))
        .await
        .expect("the other cluster's member is noticed")
        .unwrap()
        .clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].node.to_string(), "t9@127.0.0.1");
    assert_eq!(seen[0].cluster_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(c.foreign_sightings(), 1);
    etcd.etcdctl(&["del", "/two/formtest/nodes/t9@127.0.0.1"])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, foreign.wait_for(|f| f.is_empty()))
        .await
        .expect("cleared once it is gone")
        .unwrap();
    c.leave().await.unwrap();
}
