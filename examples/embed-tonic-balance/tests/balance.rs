//! Requests over a channel that autocluster balances reach a server that has just joined, and
//! stop reaching one that has left: a real etcd, and the example's own gRPC servers and
//! client in this process. Prints how long after the join and the leave.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use autocluster::{Cluster, Settings};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use embed_tonic_balance::pb::whoami_client::WhoamiClient;
use embed_tonic_balance::pb::WhoRequest;
use embed_tonic_balance::{balanced_client, join, GrpcServer};
use tonic::transport::Channel;

/// Generous: each step takes milliseconds on an idle machine.
const WAIT: Duration = Duration::from_secs(60);
/// Answers in a row without the departed server that show it gets no more requests: with it
/// still in a balancer of three, 200 misses in a row would have a chance of (2/3)^200.
const IN_A_ROW: usize = 200;

fn settings(dir: &Path, etcd: &EtcdServer, name: &str) -> Settings {
    let conf = dir.join(format!("{name}.conf"));
    let body = format!(
        "node.name = {name}@127.0.0.1\ncluster.name = tonicbal\ncluster.discovery = etcd\n\
         cluster.etcd.server = {}\ncluster.etcd.prefix = tonicbal\ncluster.etcd.node_ttl = 10s\n",
        etcd.endpoint()
    );
    std::fs::write(&conf, body).unwrap();
    Settings::load(&conf).unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A gRPC server that joined the cluster advertising it.
async fn server(dir: &Path, etcd: &EtcdServer, name: &str) -> (Cluster, GrpcServer) {
    let s = settings(dir, etcd, name);
    let grpc = GrpcServer::start(s.node.as_str(), any_port())
        .await
        .unwrap();
    let cluster = join(&s, grpc.addr).await.unwrap();
    assert!(cluster.ready(WAIT).await, "{name} never ready");
    (cluster, grpc)
}

/// Who answers one request (each bounded: with no server in the balancer a request waits).
async fn who(client: &mut WhoamiClient<Channel>) -> Option<String> {
    let ask = client.who(WhoRequest {});
    match tokio::time::timeout(Duration::from_secs(5), ask).await {
        Ok(Ok(reply)) => Some(reply.into_inner().node),
        _ => None,
    }
}

/// Asks until `done` says so about the answers so far (node -> count, and the last answer);
/// fails after [`WAIT`].
async fn ask_until(
    client: &mut WhoamiClient<Channel>,
    what: &str,
    mut done: impl FnMut(&BTreeMap<String, usize>, &str) -> bool,
) -> BTreeMap<String, usize> {
    let give_up = Instant::now() + WAIT;
    let mut seen = BTreeMap::new();
    loop {
        assert!(Instant::now() < give_up, "{what}: answers so far {seen:?}");
        if let Some(node) = who(client).await {
            *seen.entry(node.clone()).or_default() += 1;
            if done(&seen, &node) {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_a_joined_server_and_stop_reaching_a_departed_one() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let dir = tempfile::tempdir().unwrap();
    let (a, a_grpc) = server(dir.path(), &etcd, "a").await;
    let (b, b_grpc) = server(dir.path(), &etcd, "b").await;
    let client_cluster = Cluster::start(&settings(dir.path(), &etcd, "client"))
        .await
        .unwrap();
    assert!(client_cluster.ready(WAIT).await, "the client never ready");
    let (mut client, feed) = balanced_client(&client_cluster);

    let both = |seen: &BTreeMap<String, usize>, _: &str| seen.len() == 2;
    let seen = ask_until(&mut client, "both a and b answer", both).await;
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["a@127.0.0.1", "b@127.0.0.1"]
    );

    // c joins: its server listens first, then it registers; time from the join.
    let s = settings(dir.path(), &etcd, "c");
    let c_grpc = GrpcServer::start(s.node.as_str(), any_port())
        .await
        .unwrap();
    let joining = Instant::now();
    let c = join(&s, c_grpc.addr).await.unwrap();
    let by_c = |_: &BTreeMap<String, usize>, node: &str| node == "c@127.0.0.1";
    let seen = ask_until(&mut client, "c answers after its join", by_c).await;
    let after_join = joining.elapsed();
    println!(
        "join: the first answer from c came {after_join:?} after it began to join ({} requests)",
        seen.values().sum::<usize>()
    );

    // c leaves, and its server keeps serving: a request the balancer still sent there would
    // be answered by c.
    let leaving = Instant::now();
    c.leave().await.unwrap();
    let leave_took = leaving.elapsed();
    let mut last_c: Option<Duration> = None;
    let mut in_a_row = 0;
    let seen = ask_until(
        &mut client,
        "c no longer answers after its leave",
        |_, node| {
            if node == "c@127.0.0.1" {
                last_c = Some(leaving.elapsed());
                in_a_row = 0;
            } else {
                in_a_row += 1;
            }
            in_a_row == IN_A_ROW
        },
    )
    .await;
    println!(
        "leave: leave() took {leave_took:?}; c answered {} more requests, the last {last_c:?} \
         after leave() began; then {IN_A_ROW} answers in a row from a and b ({seen:?})",
        seen.get("c@127.0.0.1").copied().unwrap_or(0)
    );
    assert!(seen.contains_key("a@127.0.0.1") && seen.contains_key("b@127.0.0.1"));

    feed.stop();
    for cluster in [a, b, client_cluster] {
        cluster.leave().await.unwrap();
    }
    for grpc in [a_grpc, b_grpc, c_grpc] {
        grpc.stop().await.unwrap();
    }
}
