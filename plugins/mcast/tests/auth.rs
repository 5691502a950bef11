//! The cookie and the cluster name decide who is admitted.

mod common;

use autocluster_plugin::Discovery;
use common::{eventually, registration, Net, Node, Watcher};

fn names(w: &Watcher) -> Vec<&str> {
    w.members.keys().map(|n| n.as_str()).collect()
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
    // Every node listens before anyone announces.
    let mut wa = Watcher::start(&a).await;
    let mut wb = Watcher::start(&b).await;
    let mut wc = Watcher::start(&c).await;
    let mut wd = Watcher::start(&d).await;
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

    // Each backend passes on its peers (the engine lists the node itself): whatever was
    // heard by now is in.
    wb.until_members(&["a@127.0.0.21"]).await;
    for w in [&mut wa, &mut wb, &mut wc, &mut wd] {
        while w
            .next(std::time::Duration::from_millis(300))
            .await
            .is_some()
        {}
    }
    assert_eq!(names(&wa), ["b@127.0.0.22"]);
    assert_eq!(names(&wb), ["a@127.0.0.21"]);
    assert!(names(&wc).is_empty());
    assert!(names(&wd).is_empty());
}
