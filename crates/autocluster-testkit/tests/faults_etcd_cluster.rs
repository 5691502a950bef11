//! Faults of a three-member etcd cluster: agents (in-process `Cluster`s over the real etcd
//! backend) are given all three endpoints in `cluster.etcd.server`, each in another order so
//! that every member serves one of them. The leader is killed (no false `Left`; a new node
//! still joins everywhere), then a second member (quorum lost: views kept and marked stale,
//! calls bounded by `call_timeout`, no `Left`), then both come back (fresh again, every node
//! registered with the lease it had, not one event).
//!
//! Measured figures are printed (`cargo test -p autocluster-testkit --test
//! faults_etcd_cluster -- --nocapture`).

mod fault_common;

use std::time::{Duration, Instant};

use autocluster::EventKind;
use autocluster_testkit::fixtures::etcd_cluster::EtcdCluster;
use fault_common::*;

/// The endpoints of `etcd` starting at member `first`.
fn rotated(etcd: &EtcdCluster, first: usize) -> String {
    (0..etcd.size())
        .map(|k| etcd.endpoint((first + k) % etcd.size()))
        .collect::<Vec<_>>()
        .join(",")
}

/// 3. Leader loss, then quorum loss, then recovery, on a three-member etcd cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_etcd_leader_loss_then_quorum_loss_then_recovery() {
    let etcd = EtcdCluster::start().await.unwrap();
    let opts = Opts {
        call_timeout: Duration::from_secs(2),
        // etcd grants leases only about TTL + an election timeout after a new leader, so
        // each agent must renew within that window once the quorum is back; 3 s left too
        // little room on a loaded 2-core machine (a lease expired in one CI run).
        ttl: Duration::from_secs(6),
        ..Opts::default()
    };
    let all = ["q1@127.0.0.1", "q2@127.0.0.1", "q3@127.0.0.1"];
    let nodes: Vec<_> = all
        .iter()
        .enumerate()
        .map(|(i, n)| agent(&rotated(&etcd, i), n, &opts))
        .collect();
    let refs: Vec<_> = nodes.iter().collect();
    converge(&refs, &all).await;
    let mark = marks(&refs).await;
    let incarnations: Vec<_> = nodes
        .iter()
        .map(|n| n.cluster.health().incarnation)
        .collect();

    // The leader dies: the others elect a new one; agents on it move to another endpoint.
    let leader = etcd.wait_leader(WAIT).await.unwrap();
    eprintln!(
        "etcd cluster {} of 3 members (etcd {}); the leader is {}",
        etcd.endpoints(),
        etcd.version(),
        etcd.name(leader)
    );
    etcd.kill(leader);
    let killed = Instant::now();
    let new_leader = etcd.wait_leader(WAIT).await.unwrap();
    eprintln!(
        "leader loss: {} leads {} after the kill",
        etcd.name(new_leader),
        ms(killed.elapsed())
    );
    for n in &nodes {
        assert!(n.cluster.ready(WAIT).await, "{:?}", n.cluster.health());
    }
    eprintln!(
        "leader loss: every agent fresh and registered {} after the kill",
        ms(killed.elapsed())
    );
    // The watches work: a node joining now is seen everywhere.
    let late = "q4@127.0.0.1";
    let n4 = agent(&rotated(&etcd, new_leader), late, &opts);
    let with_late = [all[0], all[1], all[2], late];
    for n in nodes.iter().chain([&n4]) {
        n.wait_for_running(&with_late, WAIT).await;
    }
    eprintln!(
        "leader loss: a new node seen by everyone {} after the kill",
        ms(killed.elapsed())
    );
    settle(&refs).await;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            since(n, mark[i]),
            vec![(EventKind::Joined, late.to_string())],
            "{}: the leader's death is no event",
            n.cluster.node()
        );
    }
    let mut everyone: Vec<_> = nodes.iter().collect();
    everyone.push(&n4);
    let mark = marks(&everyone).await;
    // Its own key can reach every watch (its own included) before the answer to its put
    // reaches its registration task: its incarnation is the one it has once it says ready.
    assert!(n4.cluster.ready(WAIT).await, "{:?}", n4.cluster.health());
    let incarnation4 = n4.cluster.health().incarnation;
    assert!(incarnation4.is_some(), "{:?}", n4.cluster.health());

    // A second member dies: no quorum. Views are kept, stale; calls fail within their bound.
    let second = (0..3).find(|&i| i != leader).unwrap();
    etcd.kill(second);
    let lost = Instant::now();
    // The last member leads on until it finds it has no quorum (etcd's check-quorum, about an
    // election timeout); until then it still renews leases and serves watches.
    while etcd.leader().await.is_some() {
        assert!(lost.elapsed() < WAIT, "the last member still leads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "quorum loss: the last member stopped leading {} after the second kill",
        ms(lost.elapsed())
    );
    for n in &everyone {
        wait_health(n, "stale without a quorum", |h| h.stale).await;
        wait_view(n, "the view marked stale without a quorum", |v| v.stale).await;
        eprintln!(
            "quorum loss: {} stale {} after the second kill",
            n.cluster.node(),
            ms(lost.elapsed())
        );
    }
    let stale_at = Instant::now();
    // Longer than the TTL: nothing may expire without a leader, and the views stay stale.
    let before: Vec<u64> = everyone
        .iter()
        .map(|n| n.cluster.health().consecutive_failures)
        .collect();
    while stale_at.elapsed() < opts.ttl * 2 {
        for n in &everyone {
            let v = n.cluster.view();
            assert!(v.stale, "{}: fresh without a quorum", n.cluster.node());
            assert_eq!(
                v.running_nodes(),
                names(&with_late),
                "the last view is kept"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (i, n) in everyone.iter().enumerate() {
        let h = n.cluster.health();
        eprintln!(
            "quorum loss: {} after {}: {} failed calls in a row, last error ({}) {}",
            n.cluster.node(),
            ms(lost.elapsed()),
            h.consecutive_failures,
            h.last_error_kind.map_or("-", |k| k.as_str()),
            h.last_error.clone().unwrap_or_default()
        );
        assert!(
            h.consecutive_failures > before[i],
            "{}: the engine keeps trying",
            n.cluster.node()
        );
        assert!(h.last_error_kind.is_some());
    }

    // Both come back: a quorum again, every view fresh, every registration the one it was.
    let restarting = Instant::now();
    etcd.restart(&[leader, second]).await.unwrap();
    let leader_again = etcd.wait_leader(WAIT).await.unwrap();
    eprintln!(
        "recovery: members served again {} after their restart; {} leads",
        ms(restarting.elapsed()),
        etcd.name(leader_again)
    );
    for n in &everyone {
        assert!(n.cluster.ready(WAIT).await, "{:?}", n.cluster.health());
    }
    eprintln!(
        "recovery: every agent fresh {} after the restart (quorum lost for {})",
        ms(restarting.elapsed()),
        ms(restarting - lost)
    );
    // Give a late event every chance: two keep-alive rounds.
    tokio::time::sleep(opts.ttl * 2 / 3 + Duration::from_millis(500)).await;
    settle(&everyone).await;
    for (i, n) in everyone.iter().enumerate() {
        assert_eq!(
            since(n, mark[i]),
            vec![],
            "{}: no event through the loss and return of the quorum",
            n.cluster.node()
        );
        assert_eq!(n.cluster.view().running_nodes(), names(&with_late));
    }
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n.cluster.health().incarnation, incarnations[i]);
    }
    assert_eq!(n4.cluster.health().incarnation, incarnation4);
    let keys = etcd
        .etcdctl(&["get", "--prefix", "--keys-only", NODES])
        .await
        .unwrap();
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys.len(), 4, "every node registered: {keys:?}");
    for n in nodes.into_iter().chain([n4]) {
        n.leave().await;
    }
}
