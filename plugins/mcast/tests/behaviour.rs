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
        let ctx = BackendContext {
            node: node.clone(),
            cluster: "suite".into(),
            cookie: "suite-cookie".into(),
            section,
        };
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
