//! Fault tests against one real etcd: agents are in-process `Cluster`s over the real etcd
//! backend, every event each one sees is recorded, and the assertions are what a user relies
//! on: no false `Left`, the view kept (marked stale) while etcd cannot be read, nothing lost,
//! nothing duplicated.
//!
//! - etcd killed and restarted with its data: no event at all at any peer;
//! - etcd wiped (a new, empty etcd at the same address): every node registers again within
//!   `node_ttl`, peers see `Updated`, never `Left`;
//! - an agent cut off (TCP proxy) while a node joins, one leaves and etcd compacts past its
//!   watch: it resyncs to exactly the net changes;
//! - garbage under the prefix: skipped, counted, never listed;
//! - a partition between one agent and etcd: stale view there, peers see it leave after
//!   `node_ttl` and join again (new incarnation) once healed.
//!
//! Measured figures are printed (`cargo test -p autocluster-testkit --test faults_etcd --
//! --nocapture`).

mod fault_common;

use std::time::{Duration, Instant};

use autocluster::EventKind;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::fixtures::proxy::Proxy;
use fault_common::*;

/// 1. etcd killed and restarted with its data, down for longer than `node_ttl`: no peer sees
///    any event (not even `Updated`), every view is kept and marked stale during the outage,
///    fresh after, and every node keeps its registration (same lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_with_its_data_is_invisible() {
    let etcd = EtcdServer::start().await.unwrap();
    let opts = Opts::default();
    let all = ["r1@127.0.0.1", "r2@127.0.0.1", "r3@127.0.0.1"];
    let nodes: Vec<_> = all
        .iter()
        .map(|n| agent(&etcd.endpoint(), n, &opts))
        .collect();
    let refs: Vec<_> = nodes.iter().collect();
    converge(&refs, &all).await;
    let mark = marks(&refs).await;
    let leases_before = etcd_nodes(&etcd.endpoint()).await.0;
    let incarnations: Vec<_> = nodes
        .iter()
        .map(|n| n.cluster.health().incarnation)
        .collect();

    etcd.kill();
    let down = Instant::now();
    for n in &nodes {
        let t = wait_view(n, "the view marked stale", |v| v.stale).await;
        eprintln!(
            "restart: {} stale {} after the kill",
            n.cluster.node(),
            ms(t)
        );
    }
    // Down for twice the TTL: etcd extends every lease when it comes back.
    while down.elapsed() < opts.ttl * 2 {
        for n in &nodes {
            let v = n.cluster.view();
            assert!(v.stale, "{}: fresh while etcd is down", n.cluster.node());
            assert_eq!(v.running_nodes(), names(&all), "the last view is kept");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let restarting = Instant::now();
    etcd.restart().await.unwrap();
    let up = Instant::now();
    for n in &nodes {
        assert!(n.cluster.ready(WAIT).await, "{:?}", n.cluster.health());
        eprintln!(
            "restart: {} fresh {} after etcd served again ({} after it was started; it took {} to serve; outage {})",
            n.cluster.node(),
            ms(up.elapsed()),
            ms(restarting.elapsed()),
            ms(up - restarting),
            ms(up - down)
        );
    }
    // Give a late event every chance to show: two keep-alive rounds.
    tokio::time::sleep(opts.ttl * 2 / 3 + Duration::from_millis(500)).await;
    settle(&refs).await;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            since(n, mark[i]),
            vec![],
            "{}: no event at all through an etcd restart",
            n.cluster.node()
        );
        assert_eq!(n.cluster.view().running_nodes(), names(&all));
        assert_eq!(
            n.cluster.health().incarnation,
            incarnations[i],
            "same registration"
        );
    }
    assert_eq!(etcd_nodes(&etcd.endpoint()).await.0, leases_before);
    for n in nodes {
        n.leave().await;
    }
}

/// 2. etcd wiped (a new, empty etcd at the same address): every node registers again within
///    `node_ttl`, and no peer ever sees a `Left` (nor a `Joined`) for a node that came back
///    within the grace period: the new incarnation is an `Updated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_wipe_every_node_registers_again_within_ttl_without_a_left() {
    let etcd = EtcdServer::start().await.unwrap();
    let opts = Opts::default();
    let all = ["w1@127.0.0.1", "w2@127.0.0.1", "w3@127.0.0.1"];
    let nodes: Vec<_> = all
        .iter()
        .map(|n| agent(&etcd.endpoint(), n, &opts))
        .collect();
    let refs: Vec<_> = nodes.iter().collect();
    converge(&refs, &all).await;
    let mark = marks(&refs).await;
    let (before, old_rev) = etcd_nodes(&etcd.endpoint()).await;

    etcd.wipe().await.unwrap();
    let wiped = Instant::now();
    // Every key back in the new etcd, each on a new lease.
    let mut back: Vec<(String, Duration)> = Vec::new();
    while back.len() < all.len() {
        let (now, _) = etcd_nodes(&etcd.endpoint()).await;
        for (n, _) in &now {
            if !back.iter().any(|(b, _)| b == n) {
                back.push((n.clone(), wiped.elapsed()));
            }
        }
        assert!(
            wiped.elapsed() < WAIT,
            "not every node registered again: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (n, t) in &back {
        eprintln!("wipe: {n} registered again {} after the wipe", ms(*t));
        assert!(
            *t <= opts.ttl,
            "{n} registered again only after {} (node_ttl {:?})",
            ms(*t),
            opts.ttl
        );
    }
    let (after, new_rev) = etcd_nodes(&etcd.endpoint()).await;
    eprintln!("wipe: revision {old_rev} before, {new_rev} in the new etcd");
    for ((n0, l0), (n1, l1)) in before.iter().zip(&after) {
        assert_eq!(n0, n1);
        assert_ne!(l0, l1, "{n0} is on a new lease");
    }
    converge(&refs, &all).await;
    for (i, n) in nodes.iter().enumerate() {
        settle(&[n]).await;
        // Every observer knows every node's new incarnation...
        for (peer, lease) in &after {
            let peer_name = peer.as_str();
            wait_view(n, &format!("the new incarnation of {peer_name}"), |v| {
                v.get(&name(peer_name))
                    .is_some_and(|e| e.member.incarnation.0 == *lease && !e.vanishing)
            })
            .await;
        }
        settle(&[n]).await;
        // ... and learnt it as an update, never as a leave and a join.
        let seen = since(n, mark[i]);
        for peer in &all {
            assert_eq!(
                count_since(n, mark[i], EventKind::Left, peer),
                0,
                "{}: false Left of {peer} after a wipe; events {seen:?}",
                n.cluster.node()
            );
            assert_eq!(
                count_since(n, mark[i], EventKind::Joined, peer),
                0,
                "{}: a Joined of {peer} after a wipe; events {seen:?}",
                n.cluster.node()
            );
            assert!(
                count_since(n, mark[i], EventKind::Updated, peer) >= 1,
                "{}: no Updated of {peer}; events {seen:?}",
                n.cluster.node()
            );
        }
        eprintln!("wipe: {} saw {seen:?}", n.cluster.node());
        assert!(n.cluster.stats().resyncs() >= 1);
    }
    for n in nodes {
        n.leave().await;
    }
}

/// 5. Compaction end to end: an agent cut off from etcd (TCP proxy) while a node joins, one
///    leaves and `etcdctl compact` runs past its watch revision. Healed, it resyncs; its view
///    is exactly right and it saw exactly the net events: the new node joined once, the
///    departed one left once, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_while_cut_off_resyncs_to_exactly_the_net_changes() {
    let etcd = EtcdServer::start().await.unwrap();
    let proxy = Proxy::start(([127, 0, 0, 1], etcd.port()).into())
        .await
        .unwrap();
    // The cut is shorter than the TTL: the cut-off agent keeps its registration.
    let opts = Opts {
        ttl: Duration::from_secs(10),
        grace: Some(Duration::from_secs(2)),
        ..Opts::default()
    };
    let (a, b, c, d) = (
        "ca@127.0.0.1",
        "cb@127.0.0.1",
        "cc@127.0.0.1",
        "cd@127.0.0.1",
    );
    let na = agent(&etcd.endpoint(), a, &opts);
    let nb = agent(&etcd.endpoint(), b, &opts);
    let nc = agent(&proxy.endpoint(), c, &opts);
    converge(&[&na, &nb, &nc], &[a, b, c]).await;
    let mark_a = marks(&[&na]).await[0];
    let mark_c = marks(&[&nc]).await[0];
    let c_incarnation = nc.cluster.health().incarnation;

    proxy.cut();
    let cut = Instant::now();
    let t = wait_view(&nc, "stale once cut off", |v| v.stale).await;
    eprintln!("compaction: cut-off agent stale {} after the cut", ms(t));
    let watched = nc.cluster.view().revision.0;

    let nd = agent(&etcd.endpoint(), d, &opts);
    na.wait_for_running(&[a, b, c, d], WAIT).await;
    nb.leave().await;
    na.wait_for_running(&[a, c, d], WAIT).await;
    for i in 0..5 {
        etcd.etcdctl(&["put", "/elsewhere", &i.to_string()])
            .await
            .unwrap();
    }
    let (_, rev) = etcd_nodes(&etcd.endpoint()).await;
    assert!(
        rev > watched + 2,
        "the changes come after the agent's revision"
    );
    etcd.etcdctl(&["compact", &rev.to_string()]).await.unwrap();
    eprintln!(
        "compaction: agent watched from revision {watched}; compacted up to {rev}, {} after the cut",
        ms(cut.elapsed())
    );
    assert!(
        cut.elapsed() < opts.ttl - Duration::from_secs(3),
        "the cut must stay well within the TTL; the machine is too slow"
    );
    assert_eq!(
        nc.cluster.view().running_nodes(),
        names(&[a, b, c]),
        "cut off: the last view is kept"
    );

    proxy.heal();
    let healed = Instant::now();
    let t = wait_view(&nc, "exactly the live nodes, fresh", |v| {
        !v.stale && v.running_nodes() == names(&[a, c, d]) && v.members().all(|e| !e.vanishing)
    })
    .await;
    eprintln!(
        "compaction: resynced to the exact view {} after the heal (grace {:?})",
        ms(t),
        opts.grace.unwrap()
    );
    assert!(nc.cluster.ready(WAIT).await);
    // Settle: nothing more may come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle(&[&na, &nc]).await;
    let mut seen = since(&nc, mark_c);
    seen.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        seen,
        vec![
            (EventKind::Left, b.to_string()),
            (EventKind::Joined, d.to_string())
        ],
        "the cut-off agent sees exactly the net changes"
    );
    assert!(nc.cluster.stats().resyncs() >= 1, "it resynced");
    assert_eq!(nc.cluster.health().incarnation, c_incarnation);
    assert_eq!(count_since(&na, mark_a, EventKind::Left, c), 0);
    assert_eq!(na.lefts_of(a) + nd.lefts_of(c) + nd.lefts_of(a), 0);
    eprintln!("compaction: total heal-to-exact {}", ms(healed.elapsed()));
    for n in [na, nc, nd] {
        n.leave().await;
    }
}

/// 6. Garbage under the prefix while agents run (keys that are no node name, a 1 MiB value,
///    a value that is neither empty nor metadata JSON, metadata naming another node, binary
///    junk): never listed, counted, never a panic, the view otherwise unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_the_prefix_is_skipped_counted_and_harmless() {
    let etcd = EtcdServer::start().await.unwrap();
    let opts = Opts::default();
    let (a, b, c) = ("ga@127.0.0.1", "gb@127.0.0.1", "gc@127.0.0.1");
    let na = agent(&etcd.endpoint(), a, &opts);
    let nb = agent(&etcd.endpoint(), b, &opts);
    converge(&[&na, &nb], &[a, b]).await;
    let mark = marks(&[&na, &nb]).await;

    let key = |s: &[u8]| {
        let mut k = NODES.as_bytes().to_vec();
        k.extend_from_slice(s);
        k
    };
    let garbage: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (key(b"not-a-node-name"), b"{}".to_vec()),
        (key(b"x@127.0.0.9/more/path"), Vec::new()),
        (key(b"big@127.0.0.9"), vec![b'a'; 1024 * 1024]),
        (key(b"text@127.0.0.9"), b"hello, not json".to_vec()),
        (
            key(b"liar@127.0.0.9"),
            br#"{"node":"someone-else@127.0.0.9"}"#.to_vec(),
        ),
        (
            key(&[0xff, 0xfe, 0x00, 0x01, b'@', 0x80]),
            vec![0, 159, 146, 150],
        ),
        (key(b"junk@127.0.0.9"), vec![0xde, 0xad, 0xbe, 0xef, 0x00]),
        (key(b""), b"{\"node\":".to_vec()),
    ];
    let mut client = client(&etcd.endpoint()).await;
    for (k, v) in &garbage {
        client.put(k.clone(), v.clone(), None).await.unwrap();
    }
    let n = garbage.len() as u64;
    for node in [&na, &nb] {
        eventually("the garbage counted by the running agents", || async {
            (node.cluster.invalid_entries() >= n).then_some(())
        })
        .await;
    }
    // A node starting now reads the garbage in its first snapshot.
    let nc = agent(&etcd.endpoint(), c, &opts);
    converge(&[&na, &nb, &nc], &[a, b, c]).await;
    assert!(
        nc.cluster.invalid_entries() >= n,
        "the snapshot counts the garbage: {}",
        nc.cluster.invalid_entries()
    );
    eprintln!(
        "garbage: {n} invalid entries written; counted {} / {} / {} (watch, watch, snapshot)",
        na.cluster.invalid_entries(),
        nb.cluster.invalid_entries(),
        nc.cluster.invalid_entries()
    );
    // A real change still goes through, and only real nodes ever made an event.
    nb.leave().await;
    na.wait_for_running(&[a, c], WAIT).await;
    nc.wait_for_running(&[a, c], WAIT).await;
    settle(&[&na, &nc]).await;
    assert_eq!(
        since(&na, mark[0]),
        vec![
            (EventKind::Joined, c.to_string()),
            (EventKind::Left, b.to_string())
        ]
    );
    for node in [&na, &nc] {
        for e in node.events.lock().unwrap().iter() {
            assert!(
                [a, b, c].contains(&e.node.as_str()),
                "an event for garbage: {e:?}"
            );
        }
        let v = node.cluster.view();
        assert!(!v.stale);
        assert_eq!(v.len(), 2, "{v:?}");
    }
    // Deleting the garbage is no event either.
    let marks_now = marks(&[&na, &nc]).await;
    for (k, _) in &garbage {
        client.delete(k.clone(), None).await.unwrap();
    }
    assert_eq!(
        etcd_node_names(&etcd.endpoint()).await,
        [a, c].iter().map(|s| s.to_string()).collect()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&[&na, &nc]).await;
    for (i, node) in [&na, &nc].into_iter().enumerate() {
        assert_eq!(since(node, marks_now[i]), vec![]);
        assert_eq!(node.cluster.view().len(), 2);
    }
    for n in [na, nc] {
        n.leave().await;
    }
}

/// 7. A network partition between one agent and etcd (etcd stays up for the others): the
///    agent keeps its last view, marked stale, and sees nobody leave; its peers see it leave
///    once its lease runs out (about `node_ttl`); healed, it registers again (a new
///    incarnation) and everyone converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_from_etcd_stale_there_left_elsewhere_then_rejoined() {
    let etcd = EtcdServer::start().await.unwrap();
    let proxy = Proxy::start(([127, 0, 0, 1], etcd.port()).into())
        .await
        .unwrap();
    let opts = Opts::default();
    let (a, b, c) = ("pa@127.0.0.1", "pb@127.0.0.1", "pc@127.0.0.1");
    let na = agent(&etcd.endpoint(), a, &opts);
    let nb = agent(&etcd.endpoint(), b, &opts);
    let nc = agent(&proxy.endpoint(), c, &opts);
    let all = [a, b, c];
    converge(&[&na, &nb, &nc], &all).await;
    let mark = marks(&[&na, &nb, &nc]).await;
    let before = nc.cluster.health().incarnation.unwrap();

    // A silent partition: nothing goes through, nothing is closed.
    proxy.blackhole();
    let cut = Instant::now();
    let t = wait_view(&nc, "stale while partitioned", |v| v.stale).await;
    eprintln!(
        "partition: the partitioned agent is stale {} after the cut",
        ms(t)
    );
    let mut gone = Vec::new();
    for peer in [&na, &nb] {
        peer.wait_for_running(&[a, b], WAIT).await;
        gone.push(cut.elapsed());
        eprintln!(
            "partition: {} saw {c} leave {} after the cut (node_ttl {:?})",
            peer.cluster.node(),
            ms(cut.elapsed()),
            opts.ttl
        );
    }
    let slowest = gone.iter().max().copied().unwrap_or_default();
    assert!(
        slowest <= opts.ttl + Duration::from_secs(2),
        "peers saw the partitioned node leave only after {}",
        ms(slowest)
    );
    // Partitioned for longer than that: its own view stays, stale, with everyone in it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle(&[&nc]).await;
    let v = nc.cluster.view();
    assert!(v.stale);
    assert_eq!(v.running_nodes(), names(&all), "the last view is kept");
    assert!(since(&nc, mark[2]).is_empty(), "{:?}", since(&nc, mark[2]));

    proxy.heal();
    let healed = Instant::now();
    let t = wait_health(&nc, "registered again with a new incarnation", |h| {
        h.registered && h.incarnation.is_some_and(|i| i != before)
    })
    .await;
    eprintln!("partition: registered again {} after the heal", ms(t));
    converge(&[&na, &nb, &nc], &all).await;
    let after = nc.cluster.health().incarnation.unwrap();
    eprintln!(
        "partition: everyone converged {} after the heal",
        ms(healed.elapsed())
    );
    settle(&[&na, &nb, &nc]).await;
    for (i, peer) in [&na, &nb].into_iter().enumerate() {
        assert_eq!(
            since(peer, mark[i]),
            vec![
                (EventKind::Left, c.to_string()),
                (EventKind::Joined, c.to_string())
            ],
            "{}: the partitioned node left once and joined once",
            peer.cluster.node()
        );
        assert_eq!(incarnation_in(peer, c), Some(after));
        assert_eq!(peer.lefts_of(a) + peer.lefts_of(b), 0);
    }
    assert_eq!(nc.lefts_of(a) + nc.lefts_of(b), 0, "{:?}", nc.summary());
    for n in [na, nb, nc] {
        n.leave().await;
    }
}

/// 2b. etcd wiped while one agent is cut off, and the new etcd's revision overtakes the
///     agent's watch revision before it reconnects (another application writes to the same
///     etcd, or its watch was in backoff): its watch resumes "after R" in the new etcd without
///     any sign of a gap. It must still learn the new incarnations (as `Updated`), and see a
///     node that leaves afterwards leave. (Before the engine resynced on a lost lease, the
///     agent kept the old incarnations and ignored the later delete: a ghost member.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_wipe_whose_revision_overtakes_a_cut_off_watcher() {
    let etcd = EtcdServer::start().await.unwrap();
    let proxy = Proxy::start(([127, 0, 0, 1], etcd.port()).into())
        .await
        .unwrap();
    let opts = Opts::default();
    let (a, b, c) = ("oa@127.0.0.1", "ob@127.0.0.1", "oc@127.0.0.1");
    let na = agent(&etcd.endpoint(), a, &opts);
    let nb = agent(&etcd.endpoint(), b, &opts);
    let nc = agent(&proxy.endpoint(), c, &opts);
    converge(&[&na, &nb, &nc], &[a, b, c]).await;
    let mark = marks(&[&nc]).await[0];
    let watched = nc.cluster.view().revision.0;

    proxy.cut();
    etcd.wipe().await.unwrap();
    // a and b register again in the new etcd; another application writes a little.
    for n in [&na, &nb] {
        wait_health(n, "registered again", |h| h.registered && !h.stale).await;
    }
    let mut other = client(&etcd.endpoint()).await;
    loop {
        let (_, rev) = etcd_nodes(&etcd.endpoint()).await;
        if rev > watched + 3 {
            break;
        }
        other.put("/another-app/key", "v", None).await.unwrap();
    }
    let (keys, rev) = etcd_nodes(&etcd.endpoint()).await;
    eprintln!("overtaken: the agent watched from {watched}; the new etcd is at {rev}: {keys:?}");

    proxy.heal();
    let want_a = keys.iter().find(|(n, _)| n == a).unwrap().1;
    let t = wait_view(&nc, "the new incarnation of a", |v| {
        v.get(&name(a))
            .is_some_and(|e| e.member.incarnation.0 == want_a)
    })
    .await;
    eprintln!(
        "overtaken: the cut-off agent learnt a's new incarnation {} after the heal",
        ms(t)
    );
    // a leaves: everyone must see it.
    na.leave().await;
    nc.wait_for_running(&[b, c], WAIT).await;
    settle(&[&nc]).await;
    let seen = since(&nc, mark);
    eprintln!("overtaken: the cut-off agent saw {seen:?}");
    assert_eq!(count_since(&nc, mark, EventKind::Left, b), 0, "{seen:?}");
    assert_eq!(count_since(&nc, mark, EventKind::Left, a), 1, "{seen:?}");
    assert_eq!(count_since(&nc, mark, EventKind::Joined, a), 0, "{seen:?}");
    assert_eq!(count_since(&nc, mark, EventKind::Joined, b), 0, "{seen:?}");
    nb.leave().await;
    nc.leave().await;
}
