//! Endpoint failover, v3 and v2: endpoints that hang (a silent partition, modelled by a
//! black-holed proxy) or refuse connections, listed before a healthy one, cost a share of
//! one call's time, not the call; and an answer that is not about the endpoint (a lost lease)
//! does not send the call on to the next one.
//!
//! The time register takes is printed (`cargo test -p autocluster-etcd --test failover --
//! --nocapture`).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use autocluster_plugin::{Change, Discovery, ErrorKind, Result};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::proxy::Proxy;
use common::*;

/// The engine's default `cluster.call_timeout`: the bound each call must finish within.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A call that goes straight to a healthy local etcd takes milliseconds; one that waited on
/// a hanging endpoint first takes that endpoint's share of the call time (1.67 s with three
/// endpoints, 2.5 s with two). The margin is for a loaded machine.
const STRAIGHT: Duration = Duration::from_secs(1);

const ME: &str = "emqx1@192.168.1.162";

/// Runs one backend call under the engine's bound; returns its value and how long it took.
async fn within_one_call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> (T, Duration) {
    let start = Instant::now();
    let r = tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            panic!("{what} did not finish within one call timeout ({CALL_TIMEOUT:?})")
        });
    let took = start.elapsed();
    (r.unwrap_or_else(|e| panic!("{what}: {e}")), took)
}

/// A port nobody listens on: connections to it are refused.
fn refused_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// A proxy to `etcd` that accepts connections and forwards nothing.
async fn hanging_endpoint(etcd: &EtcdServer) -> Proxy {
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], etcd.port())))
        .await
        .unwrap();
    proxy.blackhole();
    proxy
}

fn build(servers: &str, node: &str, extra: &[(&str, &str)]) -> Arc<dyn Discovery> {
    autocluster_etcd::build(&ctx(node, "emqxcl", section(servers, extra))).unwrap()
}

/// Register, snapshot, keep-alive, watch and deregister through `servers`, whose last
/// endpoint is `etcd` and whose others are unusable; each within one call timeout, and once
/// the healthy endpoint answered, the calls go straight to it. Returns how long register
/// took.
async fn every_call_reaches_the_healthy_endpoint(
    etcd: &EtcdServer,
    servers: &str,
    extra: &[(&str, &str)],
) -> Duration {
    let a = build(servers, ME, extra);
    let me = reg(ME);
    let (lease, took_register) = within_one_call("register", a.register(&me)).await;
    let (snap, took_snapshot) = within_one_call("snapshot", a.snapshot()).await;
    assert_eq!(snap.members.len(), 1, "{servers}");
    assert_eq!(snap.members[0].node, me.node);
    assert!(
        took_snapshot < STRAIGHT,
        "{servers}: the snapshot took {took_snapshot:?}: it did not stick to the endpoint that answered"
    );
    within_one_call("keep_alive", a.keep_alive(&lease)).await;

    let mut watch = a.watch(snap.revision);
    // Another node, configured with the healthy endpoint alone, joins: the watch sees it.
    let b = build(&etcd.endpoint(), "emqx2@192.168.1.163", extra);
    let other = reg("emqx2@192.168.1.163");
    bounded(b.register(&other)).await.unwrap();
    let batch = next_changes(&mut watch).await.unwrap();
    assert!(
        matches!(&batch.changes[..], [Change::Put(m)] if m.node == other.node),
        "{:?}",
        batch.changes
    );
    let (_, took_deregister) = within_one_call("deregister", a.deregister(&lease)).await;
    assert!(took_deregister < STRAIGHT, "{took_deregister:?}");
    took_register
}

async fn hanging_then_healthy(etcd: &EtcdServer, extra: &[(&str, &str)]) -> Duration {
    let (p1, p2) = (hanging_endpoint(etcd).await, hanging_endpoint(etcd).await);
    let servers = format!("{},{},{}", p1.endpoint(), p2.endpoint(), etcd.endpoint());
    let took = every_call_reaches_the_healthy_endpoint(etcd, &servers, extra).await;
    // The hanging endpoints were really tried (and forwarded nothing).
    assert!(p1.accepted() > 0 && p2.accepted() > 0);
    assert_eq!(p1.bytes() + p2.bytes(), 0);
    took
}

#[tokio::test]
async fn v3_two_hanging_endpoints_before_a_healthy_one() {
    let etcd = EtcdServer::start().await.unwrap();
    let took = hanging_then_healthy(&etcd, &[]).await;
    eprintln!("v3: register through two hanging endpoints took {took:?}");
}

#[tokio::test]
async fn v2_two_hanging_endpoints_before_a_healthy_one() {
    let etcd = EtcdServer::builder().v2(true).start().await.unwrap();
    let took = hanging_then_healthy(&etcd, &[("api", "v2")]).await;
    eprintln!("v2: register through two hanging endpoints took {took:?}");
}

#[tokio::test]
async fn v3_refused_endpoint_before_a_healthy_one() {
    let etcd = EtcdServer::start().await.unwrap();
    let servers = format!("{},{}", refused_endpoint(), etcd.endpoint());
    let took = every_call_reaches_the_healthy_endpoint(&etcd, &servers, &[]).await;
    eprintln!("v3: register through a refused endpoint took {took:?}");
    // A refusal is known at once: no share of the call time is spent waiting on it.
    assert!(took < STRAIGHT, "{took:?}");
}

#[tokio::test]
async fn v2_refused_endpoint_before_a_healthy_one() {
    let etcd = EtcdServer::builder().v2(true).start().await.unwrap();
    let servers = format!("{},{}", refused_endpoint(), etcd.endpoint());
    let took = every_call_reaches_the_healthy_endpoint(&etcd, &servers, &[("api", "v2")]).await;
    eprintln!("v2: register through a refused endpoint took {took:?}");
    assert!(took < STRAIGHT, "{took:?}");
}

/// A lost lease is etcd's answer, not the endpoint's failure: the call returns it at once
/// instead of trying the (hanging) next endpoint, and the next call stays on the healthy one.
async fn lease_lost_stays_on_the_endpoint(etcd: &EtcdServer, extra: &[(&str, &str)]) {
    let hanging = hanging_endpoint(etcd).await;
    let servers = format!("{},{}", etcd.endpoint(), hanging.endpoint());
    let a = build(&servers, ME, extra);
    let me = reg(ME);
    let (lease, _) = within_one_call("register", a.register(&me)).await;
    within_one_call("deregister", a.deregister(&lease)).await;
    let start = Instant::now();
    let e = tokio::time::timeout(CALL_TIMEOUT, a.refresh(&me, &lease))
        .await
        .expect("refresh did not finish within one call timeout")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    assert!(start.elapsed() < STRAIGHT, "{:?}", start.elapsed());
    assert_eq!(hanging.accepted(), 0, "the hanging endpoint was tried");
    let (_, took) = within_one_call("snapshot", a.snapshot()).await;
    assert!(took < STRAIGHT, "{took:?}");
}

#[tokio::test]
async fn v3_lease_lost_does_not_move_on() {
    let etcd = EtcdServer::start().await.unwrap();
    lease_lost_stays_on_the_endpoint(&etcd, &[]).await;
}

#[tokio::test]
async fn v2_lease_lost_does_not_move_on() {
    let etcd = EtcdServer::builder().v2(true).start().await.unwrap();
    lease_lost_stays_on_the_endpoint(&etcd, &[("api", "v2")]).await;
}
