//! The cookie and the cluster name decide who is admitted.

mod common;

use autocluster_plugin::Discovery;
use common::{eventually, registration, Net, Node, Watcher};

fn names(s: &autocluster_plugin::Snapshot) -> Vec<&str> {
    s.members.iter().map(|m| m.node.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cookie_or_cluster_admits_no_one_and_is_admitted_by_no_one() {
    let net = Net::new(11, 47111);
    let a = Node::new("a@127.0.0.21").build(net);
    let b = Node::new("b@127.0.0.22").build(net);
    let c = Node {
        cookie: "another secret",
        ..Node::new("c@127.0.0.23")
    }
    .build(net);
    let d = Node {
        cluster: "another",
        ..Node::new("d@127.0.0.24")
    }
    .build(net);
    let mut wa = Watcher::start(&a).await;
    // Every node listens before anyone announces.
    for x in [&b, &c, &d] {
        x.snapshot().await.unwrap();
    }
    let mut leases = Vec::new();
    for (backend, n) in [
        (&a, "a@127.0.0.21"),
        (&b, "b@127.0.0.22"),
        (&c, "c@127.0.0.23"),
        (&d, "d@127.0.0.24"),
    ] {
        leases.push(backend.register(&registration(n)).await.unwrap());
    }
    for (backend, lease) in [&c, &d].into_iter().zip(&leases[2..]) {
        backend.keep_alive(lease).await.unwrap();
    }
    wa.until_members(&["b@127.0.0.22"]).await;
    // a and b each heard c's announce and heartbeat, and d's.
    for x in [&a, &b] {
        eventually("the foreign packets counted", || {
            let drops = x.drops();
            drops.bad_mac >= 2 && drops.other_cluster >= 2
        })
        .await;
    }
    // c heard a, b and d's announces (and replies) but could read none of them; d read
    // a's and b's but they are of another cluster.
    eventually("c counts bad tags", || c.drops().bad_mac >= 3).await;
    eventually("d counts other clusters", || {
        let drops = d.drops();
        drops.other_cluster >= 2 && drops.bad_mac >= 2
    })
    .await;

    // Each backend reports its peers (the engine lists the node itself).
    assert_eq!(names(&a.snapshot().await.unwrap()), ["b@127.0.0.22"]);
    assert_eq!(names(&b.snapshot().await.unwrap()), ["a@127.0.0.21"]);
    assert!(names(&c.snapshot().await.unwrap()).is_empty());
    assert!(names(&d.snapshot().await.unwrap()).is_empty());
    assert!(!wa
        .members
        .keys()
        .any(|n| n.name() == "c" || n.name() == "d"));
}
