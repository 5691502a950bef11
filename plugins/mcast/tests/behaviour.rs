//! Through the real engine: the behaviour suite every backend passes, and the same story
//! told with waits that do not race the event recorder.

mod common;

use std::sync::Arc;
use std::time::Duration;

use autocluster_plugin::{BackendContext, Discovery, NodeName, Origin, Section};
use autocluster_testkit::suite::{self, Node, Target};
use common::eventually;

/// Nodes on loopback multicast, each test with its own group and port.
struct McastTarget {
    group: &'static str,
    port: u16,
}

#[autocluster_plugin::async_trait]
impl Target for McastTarget {
    fn name(&self) -> String {
        format!("mcast on loopback ({}:{})", self.group, self.port)
    }

    async fn backend(&self, node: &NodeName) -> Arc<dyn Discovery> {
        let mut section = Section::new("cluster.mcast");
        for (k, v) in [
            ("addr", self.group.to_string()),
            ("ports", common::port(self.port).to_string()),
            ("iface", "127.0.0.1".into()),
            ("heartbeat", "200ms".into()),
            ("member_ttl", "1s".into()),
        ] {
            section.set(k, v, Origin::Program);
        }
        let ctx = BackendContext::new(node.clone(), "suite", section).with_cookie("suite-cookie");
        autocluster_mcast::build(&ctx).expect("mcast backend")
    }
}

/// The shared behaviour suite, through the real engine, on real multicast sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviour_suite() {
    let target = McastTarget {
        group: "239.192.77.41",
        port: 47141,
    };
    suite::run(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_engine_nodes_join_leave_and_expire() {
    let target = McastTarget {
        group: "239.192.77.43",
        port: 47143,
    };
    let p = Duration::from_secs(30);
    let names = ["e-a@127.0.0.21", "e-b@127.0.0.22", "e-c@127.0.0.23"];
    let a = Node::start(&target, names[0]).await;
    let b = Node::start(&target, names[1]).await;
    let c = Node::start(&target, names[2]).await;
    for n in [&a, &b, &c] {
        n.wait_for_running(&names, p).await;
        n.wait_fresh(p).await;
    }
    // A clean leave: gone at once, as one Left.
    c.leave().await;
    a.wait_for_running(&names[..2], p).await;
    eventually("a records c's Left", || a.lefts_of(names[2]) == 1).await;
    // A crash: no more heartbeats, gone once its TTL runs out.
    b.crash();
    a.wait_for_running(&names[..1], p).await;
    eventually("a records b's Left", || a.lefts_of(names[1]) == 1).await;
    // Through all that, a kept hearing heartbeats and stayed fresh.
    a.wait_fresh(p).await;
    a.leave().await;
}

/// `Cluster::update_metadata` on a multicast node: the heartbeat it sends at once carries the
/// new labels, a peer sees one `Updated` (the same incarnation), and the heartbeats after it
/// (five periods of them) bring no other event before a third node's join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_one_updated_event_on_a_peer() {
    use autocluster::{EventKind, ViewChange};
    use futures::StreamExt;

    let target = McastTarget {
        group: "239.192.77.45",
        port: 47145,
    };
    let p = Duration::from_secs(30);
    let names = ["u-a@127.0.0.31", "u-b@127.0.0.32", "u-c@127.0.0.33"];
    let a = Node::start(&target, names[0]).await;
    let b = Node::start(&target, names[1]).await;
    b.wait_for_running(&names[..2], p).await;
    let mut changes = b.cluster.changes();
    assert!(matches!(changes.next().await, Some(ViewChange::Snapshot(v)) if v.len() == 2));

    let changed = a.cluster.update_metadata(|m| {
        m.labels.insert("zone".into(), "eu-1".into());
        m.endpoints.insert("mqtt".into(), "127.0.0.31:1883".into());
    });
    assert!(changed.unwrap());
    let mut next_event = async || loop {
        let item = tokio::time::timeout(p, changes.next()).await;
        if let Ok(Some(ViewChange::Event(e))) = item {
            return *e;
        }
        assert!(item.is_ok(), "no event within {p:?}");
    };
    let e = next_event().await;
    assert_eq!((e.kind, e.node.as_str()), (EventKind::Updated, names[0]));
    let meta = e.member.meta.clone().unwrap();
    assert_eq!(meta.labels.get("zone").map(String::as_str), Some("eu-1"));
    assert_eq!(
        meta.endpoints.get("mqtt").map(String::as_str),
        Some("127.0.0.31:1883")
    );
    assert_eq!(
        e.previous.map(|m| m.incarnation),
        Some(e.member.incarnation)
    );
    // a's own view has its new metadata at once.
    let own = a.cluster.view();
    let mine = own.members().find(|m| m.member.node.as_str() == names[0]);
    assert_eq!(mine.and_then(|m| m.member.meta.as_ref()), Some(&meta));

    // Heartbeats (every 200 ms) repeat the metadata: no event. The next one is c's join.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = Node::start(&target, names[2]).await;
    let e = next_event().await;
    assert_eq!((e.kind, e.node.as_str()), (EventKind::Joined, names[2]));
    for n in [a, b, c] {
        n.leave().await;
    }
}
