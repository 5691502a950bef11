//! Formation over static seeds, with the real peer listener and probe on loopback addresses
//! (127.0.0.41 and up, one host each, one port): the cluster id a node formed with travels
//! in the probe handshake, so
//!
//! - a node arriving after formation joins the cluster that runs, even when its name sorts
//!   before the seed's (by the order alone it would have seeded, or joined itself);
//! - two clusters formed apart (each node listing only itself) are noticed by a node that
//!   lists both: it joins one and reports the other's member as foreign.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use autocluster::{Cluster, Role, Settings};

const WAIT: Duration = Duration::from_secs(30);

/// A port free on every host `127.0.0.<first>` .. `127.0.0.<first + n - 1>`.
fn free_port(first: u8, n: u8) -> u16 {
    'outer: for _ in 0..50 {
        let probe = TcpListener::bind((Ipv4Addr::new(127, 0, 0, first), 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        for h in first + 1..first + n {
            if TcpListener::bind((Ipv4Addr::new(127, 0, 0, h), port)).is_err() {
                continue 'outer;
            }
        }
        return port;
    }
    panic!("no port free on 127.0.0.{first} and the {n} hosts after it");
}

/// A static node `name@127.0.0.<host>` listing `seeds`, probing every 200 ms.
fn node(name: &str, host: u8, port: u16, seeds: &[String], opts: &[(&str, &str)]) -> Settings {
    let mut pairs: Vec<(String, String)> = vec![
        ("node.name".into(), format!("{name}@127.0.0.{host}")),
        ("node.cookie".into(), "formation-static".into()),
        ("node.listen".into(), format!("127.0.0.{host}:{port}")),
        ("cluster.name".into(), "formstatic".into()),
        ("cluster.discovery".into(), "static".into()),
        ("cluster.static.seeds".into(), seeds.join(", ")),
        ("cluster.probe_interval".into(), "200ms".into()),
    ];
    pairs.extend(opts.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_pairs(pairs).expect("settings")
}

async fn form(c: &Cluster) -> autocluster::Formation {
    tokio::time::timeout(WAIT, c.form())
        .await
        .expect("form() is bounded by the formation timeout")
        .unwrap_or_else(|e| panic!("{}: formation failed: {e}", c.node()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_joins_the_cluster_formed_even_when_it_sorts_first() {
    let port = free_port(41, 4);
    let names = [("a0", 41), ("f1", 42), ("f2", 43), ("f3", 44)];
    let seeds: Vec<String> = names
        .iter()
        .map(|(n, h)| format!("{n}@127.0.0.{h}"))
        .collect();
    let opts = [
        ("cluster.formation.min_members", "3"),
        ("cluster.formation.stable_for", "300ms"),
        ("cluster.formation.timeout", "20s"),
    ];
    let mut nodes = Vec::new();
    for (n, h) in &names[1..] {
        nodes.push(
            Cluster::start(&node(n, *h, port, &seeds, &opts))
                .await
                .unwrap(),
        );
    }
    let decisions = futures::future::join_all(nodes.iter().map(form)).await;
    let seeds_chosen: Vec<_> = decisions.iter().filter(|f| f.role == Role::Seed).collect();
    assert_eq!(seeds_chosen.len(), 1, "exactly one seed: {decisions:?}");
    let (seed, id) = (decisions[0].target.clone(), decisions[0].cluster_id.clone());
    assert_eq!(
        seed.to_string(),
        "f1@127.0.0.42",
        "the first in order seeds"
    );
    for f in &decisions {
        assert_eq!((&f.target, &f.cluster_id), (&seed, &id), "{decisions:?}");
    }

    // a0 sorts before f1: by the order of names alone it would seed a second cluster. With
    // a stable_for longer than its timeout it cannot decide by waiting either: it must join
    // through the cluster id its peers serve in the probe.
    let late_opts = [
        ("cluster.formation.min_members", "3"),
        ("cluster.formation.stable_for", "1h"),
        ("cluster.formation.timeout", "20s"),
        ("cluster.formation.new_cluster", "off"),
    ];
    let late = Cluster::start(&node("a0", 41, port, &seeds, &late_opts))
        .await
        .unwrap();
    let f = form(&late).await;
    assert_eq!(
        (f.role, &f.target, &f.cluster_id, f.existing),
        (Role::Join, &seed, &id, true),
        "{f:?}"
    );
    assert!(late.foreign_members().is_empty());
    for c in nodes.iter().chain([&late]) {
        c.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_formed_apart_are_noticed_where_they_meet() {
    let port = free_port(51, 3);
    let name = |n: &str, h: u8| format!("{n}@127.0.0.{h}");
    let opts = [("cluster.formation.stable_for", "100ms")];
    // x1 and x2 each list only themselves: each seeds a cluster of its own.
    let x1 = Cluster::start(&node("x1", 51, port, &[name("x1", 51)], &opts))
        .await
        .unwrap();
    let x2 = Cluster::start(&node("x2", 52, port, &[name("x2", 52)], &opts))
        .await
        .unwrap();
    let (f1, f2) = (form(&x1).await, form(&x2).await);
    assert_eq!((f1.role, f2.role), (Role::Seed, Role::Seed));
    assert_ne!(f1.cluster_id, f2.cluster_id);

    // x3 lists all three: it sees both ids, joins one, and reports the other.
    let all = [name("x1", 51), name("x2", 52), name("x3", 53)];
    let x3 = Cluster::start(&node("x3", 53, port, &all, &opts))
        .await
        .unwrap();
    let mut foreign = x3.watch_foreign_members();
    let f3 = form(&x3).await;
    assert_eq!(f3.role, Role::Join, "{f3:?}");
    let (other, other_id) = if f3.cluster_id == f1.cluster_id {
        (x2.node().clone(), f2.cluster_id.clone())
    } else {
        assert_eq!(f3.cluster_id, f2.cluster_id, "{f3:?}");
        (x1.node().clone(), f1.cluster_id.clone())
    };
    let seen = tokio::time::timeout(WAIT, foreign.wait_for(|f| !f.is_empty()))
        .await
        .expect("the other cluster's member is noticed")
        .unwrap()
        .clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((&seen[0].node, &seen[0].cluster_id), (&other, &other_id));
    assert!(x3.foreign_sightings() >= 1);
    for c in [&x1, &x2, &x3] {
        c.leave().await.unwrap();
    }
}
