//! Load: N agents (in-process `Cluster`s over the real etcd backend) churn against one etcd for
//! D seconds: agents start and stop at random, some leaving cleanly, some crashing (their
//! key stays until its lease runs out), names coming back while an earlier life's key is
//! still there. At the end, once `node_ttl` has let the crashed ones expire, every live
//! agent's view is exactly the set of live agents (each at its current incarnation), etcd
//! holds exactly their keys, and no live agent was ever reported `Left` in its current life.
//!
//! CI: N = 50, D = 15 s. `AUTOCLUSTER_LONG=1`: N = 200, D = 60 s. The figures are printed
//! (`cargo test -p autocluster-testkit --test faults_churn -- --nocapture`).

mod fault_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use autocluster::EventKind;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use autocluster_testkit::suite::Node;
use fault_common::*;
use rand::Rng;

struct Live {
    node: Node,
    started: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_converges_to_exactly_the_live_agents() {
    let long = std::env::var("AUTOCLUSTER_LONG").is_ok_and(|v| v == "1");
    let (n, duration) = if long {
        (200usize, Duration::from_secs(60))
    } else {
        (50usize, Duration::from_secs(15))
    };
    let etcd = EtcdServer::start().await.unwrap();
    let opts = Opts {
        ttl: Duration::from_secs(3),
        call_timeout: Duration::from_secs(5),
        grace: None,
    };
    // More names than agents: a name often comes back, sometimes while its crashed life's
    // key is still in etcd.
    let pool: Vec<String> = (0..n + n / 2)
        .map(|i| format!("churn{i}@127.0.0.1"))
        .collect();
    let mut live: BTreeMap<String, Live> = BTreeMap::new();
    let mut leaving = Vec::new();
    let mut rng = rand::rng();
    let (mut started, mut crashed, mut left, mut comebacks) = (0u32, 0u32, 0u32, 0u32);
    let mut crashed_names: BTreeSet<String> = BTreeSet::new();

    // Half the agents up front.
    for name in pool.iter().take(n / 2) {
        live.insert(
            name.clone(),
            Live {
                node: agent(&etcd.endpoint(), name, &opts),
                started: Instant::now(),
            },
        );
        started += 1;
    }
    let t0 = Instant::now();
    // About N/5 operations a second.
    let tick = Duration::from_millis((5000 / n as u64).max(5));
    while t0.elapsed() < duration {
        tokio::time::sleep(tick).await;
        let start = live.len() < n / 3 || (live.len() < n && rng.random_bool(0.5));
        if start {
            let free: Vec<&String> = pool.iter().filter(|p| !live.contains_key(*p)).collect();
            let name = free[rng.random_range(0..free.len())].clone();
            if crashed_names.remove(&name) {
                comebacks += 1;
            }
            live.insert(
                name.clone(),
                Live {
                    node: agent(&etcd.endpoint(), &name, &opts),
                    started: Instant::now(),
                },
            );
            started += 1;
        } else if !live.is_empty() {
            let names: Vec<String> = live.keys().cloned().collect();
            let name = names[rng.random_range(0..names.len())].clone();
            let gone = live.remove(&name).unwrap();
            if rng.random_bool(0.5) {
                leaving.push(tokio::spawn(gone.node.leave()));
                left += 1;
                crashed_names.remove(&name);
            } else {
                gone.node.crash();
                crashed += 1;
                crashed_names.insert(name);
            }
        }
    }
    let churn_end = Instant::now();
    for l in leaving {
        l.await.unwrap();
    }
    let want: BTreeMap<String, u64> = {
        // Every live agent registered (the youngest may still be on its way).
        let mut m = BTreeMap::new();
        for (name, l) in &live {
            wait_health(&l.node, "registered", |h| h.registered).await;
            m.insert(name.clone(), l.node.cluster.health().incarnation.unwrap().0);
        }
        m
    };
    eprintln!(
        "churn: {n} agents max, {:?}: {started} started, {crashed} crashed, {left} left cleanly, \
         {comebacks} names back after a crash; {} live at the end",
        duration,
        live.len()
    );

    // Converged: every live view is exactly the live agents at their current incarnation,
    // and etcd holds exactly their keys (crashed ones expire within node_ttl).
    let deadline = churn_end + opts.ttl + WAIT;
    let mut views_done = None;
    let mut etcd_done = None;
    loop {
        if views_done.is_none() && live.values().all(|l| running(&l.node) == want) {
            views_done = Some(churn_end.elapsed());
        }
        if etcd_done.is_none() {
            let keys: BTreeMap<String, u64> =
                etcd_nodes(&etcd.endpoint()).await.0.into_iter().collect();
            if keys == want {
                etcd_done = Some(churn_end.elapsed());
            }
        }
        if views_done.is_some() && etcd_done.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let wrong: Vec<_> = live
                .iter()
                .filter(|(_, l)| running(&l.node) != want)
                .map(|(name, l)| {
                    let view = running(&l.node);
                    let extra: Vec<_> = view.keys().filter(|k| !want.contains_key(*k)).collect();
                    let missing: Vec<_> = want.keys().filter(|k| !view.contains_key(*k)).collect();
                    format!("{name}: extra {extra:?}, missing {missing:?}")
                })
                .collect();
            panic!(
                "no convergence {:?} after the churn; views off: {wrong:?}; etcd keys {:?}",
                churn_end.elapsed(),
                etcd_nodes(&etcd.endpoint()).await.0.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "churn: every live view exact {} after the churn, etcd exact {} (node_ttl {:?})",
        ms(views_done.unwrap()),
        ms(etcd_done.unwrap()),
        opts.ttl
    );

    // No live agent was ever reported Left in its current life, by anyone live.
    let refs: Vec<&Node> = live.values().map(|l| &l.node).collect();
    settle(&refs).await;
    let mut events = 0;
    for (observer, l) in &live {
        let recorded = l.node.events.lock().unwrap().clone();
        events += recorded.len();
        for e in recorded {
            if e.kind == EventKind::Left {
                assert!(
                    want.get(e.node.as_str()) != Some(&e.member.incarnation.0),
                    "{observer} saw a false Left of {} (alive in that life): {e:?}",
                    e.node
                );
            }
        }
    }
    let oldest = live.values().map(|l| l.started).min();
    eprintln!(
        "churn: {events} events recorded by the {} live agents (oldest up {}); etcd at revision {}",
        live.len(),
        oldest.map(|t| ms(t.elapsed())).unwrap_or_default(),
        etcd_nodes(&etcd.endpoint()).await.1
    );
    for (_, l) in live {
        l.node.leave().await;
    }
    assert!(etcd_nodes(&etcd.endpoint()).await.0.is_empty());
}
