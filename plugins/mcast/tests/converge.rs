//! Nodes on loopback multicast find each other, see each other leave, and stop being
//! refreshed when they go silent.

mod common;

use std::time::Duration;

use autocluster_plugin::{Change, Discovery, Incarnation};
use common::{name, registration, Net, Node, Watcher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_right_after_register() {
    let net = Net::new(1, 47101);
    // Heartbeats are 10 s apart and never sent here: only announces and their replies can
    // make the nodes find each other.
    let names = ["n1@127.0.0.21", "n2@127.0.0.22", "n3@127.0.0.23"];
    let nodes: Vec<_> = names.iter().map(|n| Node::new(n).build(net)).collect();
    let mut watchers = Vec::new();
    for d in &nodes {
        watchers.push(Watcher::start(d).await);
    }
    for (d, n) in nodes.iter().zip(names) {
        let lease = d.register(&registration(n)).await.unwrap();
        assert_eq!(lease.id, d.incarnation());
        assert_eq!(lease.ttl, Duration::from_secs(30));
    }
    for (i, w) in watchers.iter_mut().enumerate() {
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != names[i]).collect();
        w.until_members(&others).await;
    }
    for (i, (w, d)) in watchers.iter().zip(&nodes).enumerate() {
        assert_eq!(w.members.len(), 2, "{i} hears exactly its two peers");
        // The backend reports its peers; the engine lists this node itself.
        assert!(!w.members.contains_key(&name(names[i])));
        for (j, n) in names.iter().enumerate().filter(|(j, _)| *j != i) {
            let m = &w.members[&name(n)];
            assert_eq!(
                m.incarnation,
                Incarnation(nodes[j].incarnation()),
                "{i} sees {n}"
            );
            assert_eq!(m.ttl, Some(Duration::from_secs(30)));
            assert_eq!(m.meta, Some(registration(n).meta));
        }
        // Our own packets loop back and are ignored, not counted.
        assert_eq!(d.invalid_entries(), 0, "{:?}", d.drops());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_is_seen_as_a_delete_of_that_incarnation() {
    let net = Net::new(2, 47102);
    let a = Node::new("a@127.0.0.21").build(net);
    let b = Node::new("b@127.0.0.22").build(net);
    let mut wa = Watcher::start(&a).await;
    a.register(&registration("a@127.0.0.21")).await.unwrap();
    let lease = b.register(&registration("b@127.0.0.22")).await.unwrap();
    wa.until_members(&["b@127.0.0.22"]).await;

    b.deregister(&lease).await.unwrap();
    let b_name = name("b@127.0.0.22");
    wa.until("b's leave", |w| !w.members.contains_key(&b_name))
        .await;
    assert!(wa.changes.contains(&Change::Delete {
        node: b_name.clone(),
        incarnation: Some(Incarnation(b.incarnation())),
    }));
    // The second leave of the same incarnation is neither passed on nor counted: once a
    // hears c, which registers after b left, both of b's leaves are in.
    let c = Node::new("c@127.0.0.23").build(net);
    c.register(&registration("c@127.0.0.23")).await.unwrap();
    wa.until_members(&["c@127.0.0.23"]).await;
    let deletes = wa
        .changes
        .iter()
        .filter(|ch| matches!(ch, Change::Delete { node, .. } if *node == b_name))
        .count();
    assert_eq!(deletes, 1);
    assert_eq!(a.invalid_entries(), 0, "{:?}", a.drops());
    // b itself is no longer registered: its heartbeats are refused.
    assert_eq!(
        b.keep_alive(&lease).await.unwrap_err().kind(),
        autocluster_plugin::ErrorKind::LeaseLost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_stops_producing_puts() {
    let net = Net::new(3, 47103);
    let node = |n| Node {
        heartbeat: "100ms",
        member_ttl: "1s",
        ..Node::new(n)
    };
    let a = node("a@127.0.0.21").build(net);
    let b = node("b@127.0.0.22").build(net);
    let c = node("c@127.0.0.23").build(net);
    let mut wa = Watcher::start(&a).await;
    a.register(&registration("a@127.0.0.21")).await.unwrap();
    let lease = b.register(&registration("b@127.0.0.22")).await.unwrap();
    for _ in 0..3 {
        b.keep_alive(&lease).await.unwrap();
    }
    wa.until("b's heartbeats", |w| w.puts("b@127.0.0.22") >= 4)
        .await;
    // b goes silent without a leave, as a crashed node does.
    drop(b);
    // c's announce comes after anything b sent: once a has it, b's packets are all in.
    c.register(&registration("c@127.0.0.23")).await.unwrap();
    wa.until_members(&["c@127.0.0.23"]).await;
    let puts = wa.puts("b@127.0.0.22");
    while wa.next(Duration::from_secs(2)).await.is_some() {}
    assert_eq!(wa.puts("b@127.0.0.22"), puts, "no Put after b went silent");
    // Every Put carried the TTL b advertised: the engine expires b by it (behaviour.rs).
    assert_eq!(
        wa.members[&name("b@127.0.0.22")].ttl,
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_a_new_incarnation() {
    let net = Net::new(4, 47104);
    let a = Node::new("a@127.0.0.21").build(net);
    let mut wa = Watcher::start(&a).await;
    a.register(&registration("a@127.0.0.21")).await.unwrap();
    let b1 = Node::new("b@127.0.0.22").build(net);
    b1.register(&registration("b@127.0.0.22")).await.unwrap();
    wa.until_members(&["b@127.0.0.22"]).await;
    let first = b1.incarnation();
    drop(b1);
    // Incarnations start with the start time in ms: a later process has a larger one.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b2 = Node::new("b@127.0.0.22").build(net);
    assert!(b2.incarnation() > first);
    b2.register(&registration("b@127.0.0.22")).await.unwrap();
    let b_name = name("b@127.0.0.22");
    wa.until("b's new incarnation", |w| {
        w.members[&b_name].incarnation == Incarnation(b2.incarnation())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observing_again_hears_from_then_on() {
    let net = Net::new(5, 47105);
    let a = Node::new("a@127.0.0.21").build(net);
    let b = Node::new("b@127.0.0.22").build(net);
    let mut first = Watcher::start(&a).await;
    a.register(&registration("a@127.0.0.21")).await.unwrap();
    let lease = b.register(&registration("b@127.0.0.22")).await.unwrap();
    first.until_members(&["b@127.0.0.22"]).await;
    // The engine opens the stream again after it broke: the new one hears what follows.
    drop(first);
    let mut again = Watcher::start(&a).await;
    assert!(again.members.is_empty(), "no history is replayed");
    b.keep_alive(&lease).await.unwrap();
    again.until_members(&["b@127.0.0.22"]).await;
    assert_eq!(a.invalid_entries(), 0, "{:?}", a.drops());
}
