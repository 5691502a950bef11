//! Bursts of changes are read in batches (`cluster.etcd.watch_coalesce`, issue 17): a watch
//! open while hundreds of nodes register, then leave, sees every change once, in order, in far
//! fewer answers than changes; with `0s`, or in a cluster smaller than
//! `watch_coalesce_members`, it sees each change in an answer of its own. The figure this was
//! built for (1,000 real agents on one etcd) is in docs/benchmarks.md; this checks what a user
//! relies on: nothing lost, nothing repeated, nothing out of order, and batches.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use autocluster_plugin::{BoxStream, Change, Discovery, Lease, Result, WatchBatch};
use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::*;
use futures::{stream, StreamExt};

fn watcher(etcd: &EtcdServer, settings: &[(&str, &str)]) -> Arc<dyn Discovery> {
    backend(etcd, settings)
}

fn name(i: usize) -> String {
    format!("n{i}@10.0.{}.{}", i / 200, i % 200)
}

/// Registers `n` nodes from `writer`, 16 at a time.
async fn register_all(writer: &Arc<dyn Discovery>, n: usize) -> Vec<Lease> {
    stream::iter(0..n)
        .map(|i| {
            let w = writer.clone();
            async move { bounded(w.register(&reg(&name(i)))).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Reads `watch` until `done` holds for what it saw; every change in order of arrival, and
/// the number of answers (batches with changes) they came in.
async fn read_until(
    watch: &mut BoxStream<Result<WatchBatch>>,
    seen: &mut Vec<(u64, Change)>,
    done: impl Fn(&[(u64, Change)]) -> bool,
) -> usize {
    let mut answers = 0;
    let mut last_revision = 0;
    while !done(seen) {
        let batch = next_changes(watch).await.expect("the watch failed");
        assert!(
            batch.revision.0 > last_revision,
            "a batch at revision {} after one at {last_revision}",
            batch.revision.0
        );
        last_revision = batch.revision.0;
        answers += 1;
        seen.extend(batch.changes.into_iter().map(|c| (batch.revision.0, c)));
    }
    answers
}

/// Each node's changes, in the order the watch passed them on.
fn per_node(seen: &[(u64, Change)]) -> BTreeMap<String, Vec<&'static str>> {
    let mut m: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for (_, c) in seen {
        let (node, what) = match c {
            Change::Put(member) => (member.node.to_string(), "put"),
            Change::Delete { node, .. } => (node.to_string(), "delete"),
        };
        m.entry(node).or_default().push(what);
    }
    m
}

/// A burst of `n` registrations, then `n` leaves, through a watch with `settings`: every
/// node put once, then deleted once, nothing else. Returns the answers the two bursts came in.
async fn bursts(settings: &[(&str, &str)], n: usize) -> (usize, usize) {
    let etcd = EtcdServer::start().await.unwrap();
    let a = watcher(&etcd, settings);
    let snap = bounded(a.snapshot()).await.unwrap();
    assert!(snap.members.is_empty());
    let mut watch = a.watch(snap.revision);
    let writer = backend(&etcd, &[]);

    let mut seen = Vec::new();
    let (leases, joins) = tokio::join!(
        register_all(&writer, n),
        read_until(&mut watch, &mut seen, |s| s.len() >= n)
    );
    let nodes = per_node(&seen);
    assert_eq!(nodes.len(), n, "every registered node, once");
    assert!(
        nodes.values().all(|v| v == &["put"]),
        "each node put exactly once: {:?}",
        nodes.iter().find(|(_, v)| *v != &["put"])
    );

    let mut gone = Vec::new();
    let (_, leaves) = tokio::join!(
        stream::iter(leases).for_each_concurrent(16, |l| {
            let w = writer.clone();
            async move { bounded(w.deregister(&l)).await.unwrap() }
        }),
        read_until(&mut watch, &mut gone, |s| s.len() >= n)
    );
    let nodes = per_node(&gone);
    assert_eq!(nodes.len(), n, "every node's leave, once");
    assert!(nodes.values().all(|v| v == &["delete"]));

    // After the bursts, a single change still comes through (the watch is open again, or
    // reopens): nothing was left behind by a pause.
    let late = bounded(writer.register(&reg("late@10.9.9.9")))
        .await
        .unwrap();
    let mut more = Vec::new();
    read_until(&mut watch, &mut more, |s| !s.is_empty()).await;
    assert!(matches!(&more[..], [(_, Change::Put(m))] if m.node.to_string() == "late@10.9.9.9"));
    bounded(writer.deregister(&late)).await.unwrap();
    println!("{settings:?}: {n} joins in {joins} answers, {n} leaves in {leaves}");
    (joins, leaves)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_comes_in_batches_complete_and_in_order() {
    const N: usize = 300;
    let (joins, leaves) = bursts(&[("watch_coalesce_members", "0")], N).await;
    // One answer per change is what etcd sends a watcher that keeps up; batches are the
    // point. A burst of N takes a few pauses of about a second: far fewer answers than N.
    assert!(joins <= N / 4, "{N} joins came in {joins} answers");
    assert!(leaves <= N / 4, "{N} leaves came in {leaves} answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coalescing_every_change_comes_too() {
    const N: usize = 300;
    let (joins, leaves) = bursts(&[("watch_coalesce", "0s")], N).await;
    // One answer per change, but for what etcd itself batches for a reader that falls
    // behind (a test process short of CPU: under load, down to about half); batches of
    // pauses would be a handful of answers, under N / 4 (the test above).
    assert!(
        joins > N / 4 && leaves > N / 4,
        "{joins} and {leaves} answers"
    );
}

/// By default (`watch_coalesce_members = 200`) a cluster of 50 sees each change as it is
/// written: the watch never pauses. Not one answer per change: etcd itself sends a watcher
/// that falls behind several changes in one answer (under CI's load it sent this test 50
/// leaves in 29 answers). A pause would put a burst in two or three answers; more than a
/// quarter of the changes' count is "no pause".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cluster_sees_each_change_in_an_answer_of_its_own() {
    const N: usize = 50;
    let (joins, leaves) = bursts(&[], N).await;
    assert!(
        joins > N / 4 && leaves > N / 4,
        "a cluster of {N}: {joins} and {leaves} answers"
    );
}

/// The default, in a cluster that grows past 200: one answer per change up to about 200
/// nodes, batches after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_grows_large_starts_batching() {
    const N: usize = 400;
    let (joins, leaves) = bursts(&[], N).await;
    assert!(
        (150..N - 50).contains(&joins),
        "{N} joins came in {joins} answers: about 200 alone, then batches"
    );
    // The first 200 leaves (at least 200 nodes) are read in batches; the rest may come alone.
    assert!(leaves < N - 100, "{N} leaves came in {leaves} answers");
}
