//! The engine's cost per change, by cluster size: one change applied to a table of 100,
//! 1,000 and 10,000 members, then the view and the events published, as the view task does
//! for each watch batch. The goal (docs/benchmarks.md) is a cost that does not grow with the
//! cluster.
//!
//! `cargo bench -p autocluster --bench table`

use std::hint::black_box;
use std::time::Duration;

use autocluster::bench_support::{member, node_name, TableBench};
use autocluster::plugin::{Change, Incarnation, Snapshot};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 3] = [100, 1_000, 10_000];

fn per_change(c: &mut Criterion) {
    let mut g = c.benchmark_group("change");
    g.throughput(Throughput::Elements(1));
    for &n in &SIZES {
        // A join followed by the same node's clean leave: two changes (two events, two
        // publishes) per iteration, and the table stays at n members.
        let mut t = TableBench::with_members(n);
        let mut lease = 10 * n as u64;
        g.bench_with_input(BenchmarkId::new("join_then_leave", n), &n, |b, &n| {
            b.iter(|| {
                lease += 1;
                let joined = t.apply(Change::Put(member(n, lease, lease)));
                let left = t.apply(Change::Delete {
                    node: node_name(n),
                    incarnation: Some(Incarnation(lease)),
                });
                black_box(joined + left)
            })
        });

        // New metadata for a member in the middle of the table: one Updated event.
        let mut t = TableBench::with_members(n);
        let mut version = 0u64;
        let middle = n / 2;
        g.bench_with_input(BenchmarkId::new("update", n), &n, |b, _| {
            b.iter(|| {
                version += 1;
                let mut m = member(middle, middle as u64 + 1, middle as u64 + 1);
                if let Some(meta) = m.meta.as_mut() {
                    meta.version = Some(version.to_string());
                }
                black_box(t.apply(Change::Put(m)))
            })
        });

        // What a reader pays for the current view (`Cluster::view`).
        let t = TableBench::with_members(n);
        g.bench_with_input(BenchmarkId::new("read_view", n), &n, |b, _| {
            b.iter(|| black_box(t.view().len()))
        });
    }
    g.finish();
}

fn first_sync(c: &mut Criterion) {
    // A first snapshot of n members (a node starting in a cluster of n): per member.
    let mut g = c.benchmark_group("first_snapshot");
    for &n in &SIZES {
        g.throughput(Throughput::Elements(n as u64));
        let members: Vec<_> = (0..n)
            .map(|i| member(i, i as u64 + 1, i as u64 + 1))
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let snap = Snapshot {
                        members: members.clone(),
                        revision: autocluster::plugin::Revision(n as u64),
                    };
                    (TableBench::new(), snap)
                },
                |(mut t, snap)| {
                    black_box(t.apply_snapshot(snap));
                    // Dropped after the measurement.
                    t
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = per_change, first_sync
}
criterion_main!(benches);
