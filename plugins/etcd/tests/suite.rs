//! The shared behaviour suite (autocluster-testkit) through the real engine, on the v3 and
//! the v2 backend, each against its own etcd: join, clean leave, crash expiry, an outage
//! (etcd killed and restarted with its data), and a wipe (a new, empty etcd at the address).

mod common;

use std::sync::Arc;

use autocluster_plugin::{Discovery, NodeName};
use autocluster_testkit::fixtures::etcd::{available_binaries, EtcdServer};
use autocluster_testkit::suite::{self, Target};
use common::*;

struct EtcdTarget {
    etcd: EtcdServer,
    api: &'static str,
}

#[autocluster_plugin::async_trait]
impl Target for EtcdTarget {
    fn name(&self) -> String {
        format!("etcd {} ({})", self.etcd.version(), self.api)
    }

    async fn backend(&self, node: &NodeName) -> Arc<dyn Discovery> {
        let settings = [("api", self.api), ("node_ttl", "3s")];
        autocluster_etcd::build(&ctx(
            node.as_str(),
            "suite",
            section(&self.etcd.endpoint(), &settings),
        ))
        .unwrap()
    }

    async fn outage(&self, down: bool) -> bool {
        if down {
            self.etcd.kill();
        } else if !self.etcd.is_running() {
            self.etcd.restart().await.unwrap();
        }
        true
    }

    async fn lose_history(&self, now: bool) -> bool {
        if now {
            self.etcd.wipe().await.unwrap();
        }
        true
    }
}

/// On every etcd found: Debian's 3.4, and 3.5 where `tools/test.sh` fetched it.
#[tokio::test(flavor = "multi_thread")]
async fn behaviour_suite_v3() {
    let bins = available_binaries();
    assert!(!bins.is_empty(), "no etcd binary found");
    for bin in bins {
        eprintln!("behaviour suite v3 on etcd {}", bin.version);
        let etcd = EtcdServer::builder()
            .binary(&bin.etcd)
            .start()
            .await
            .unwrap();
        suite::run(&EtcdTarget { etcd, api: "v3" }).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn behaviour_suite_v2() {
    let etcd = EtcdServer::builder().v2(true).start().await.unwrap();
    suite::run(&EtcdTarget { etcd, api: "v2" }).await;
}
