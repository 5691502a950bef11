//! A slow or distant etcd (issue 13, item 7): behind a proxy that holds each chunk 2 to 5 s,
//! an agent with `cluster.call_timeout = 30s` registers, keeps its lease and its watch: the
//! transport's timeouts (connect, HTTP/2 pings, the failover's shares) follow the call
//! timeout instead of fixed 3 s and 5 s bounds that killed every connection.

mod common;

use std::time::{Duration, Instant};

use autocluster_plugin::{BackendContext, Change};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::proxy::Proxy;
use common::*;
use futures::StreamExt;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Bounds a call as the engine does with `cluster.call_timeout = 30s`.
async fn call<T>(f: impl std::future::Future<Output = autocluster_plugin::Result<T>>) -> T {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .expect("a call did not finish within cluster.call_timeout")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_behind_a_slow_link_registers_and_stays() {
    let etcd = EtcdServer::start().await.unwrap();
    let addr = format!("127.0.0.1:{}", etcd.port()).parse().unwrap();
    let proxy = Proxy::start(addr).await.unwrap();
    proxy.delay(Duration::from_secs(2), Duration::from_secs(5));
    let ctx: BackendContext = ctx(
        "emqx1@192.168.1.162",
        "emqxcl",
        section(&proxy.endpoint(), &[("node_ttl", "60s")]),
    )
    .with_call_timeout(CALL_TIMEOUT);
    let a = autocluster_etcd::build(&ctx).unwrap();

    let start = Instant::now();
    let lease = call(a.register(&reg("emqx1@192.168.1.162"))).await;
    let registered = start.elapsed();
    let snap = call(a.snapshot()).await;
    eprintln!(
        "behind a 2-5 s per chunk proxy: registered in {registered:?}, snapshot after {:?}",
        start.elapsed()
    );
    assert_eq!(snap.members.len(), 1);

    // For a while (past the ping interval, several keep-alives): the lease is renewed, and
    // the watch stays open and delivers.
    let mut watch = a.watch(snap.revision);
    let keeper = {
        let a = a.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                call(a.keep_alive(&lease)).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(40);
    let mut put = false;
    let mut seen = false;
    while Instant::now() < until {
        if !put && Instant::now() + Duration::from_secs(25) > until {
            etcd.etcdctl(&["put", "/emqxcl/emqxcl/nodes/late@h", ""])
                .await
                .unwrap();
            put = true;
        }
        match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
            Ok(Some(Ok(b))) => {
                seen |= b
                    .changes
                    .iter()
                    .any(|c| matches!(c, Change::Put(m) if m.node.as_str() == "late@h"))
            }
            other => panic!("the watch broke behind the slow link: {other:?}"),
        }
    }
    assert!(
        seen,
        "the put made 25 s before the end never reached the watch"
    );
    keeper.await.unwrap();
    let snap = call(a.snapshot()).await;
    assert_eq!(snap.members.len(), 2);
    call(a.deregister(&lease)).await;
}
