//! Criterion benchmarks of the allocators, with the same workloads as the in-tree Go benchmarks
//! in `hack/go-bench` (run both with `hack/go-bench/compare.sh`).
//!
//! Ranges are filled with allocate_next (as a cluster fills them) or, for the `_uniform`
//! variants, with uniformly random addresses; seeds are fixed. Snapshot sizes are printed as
//! `snapshot_bytes <id> <bytes>` lines.

use std::hint::black_box;
use std::net::IpAddr;

use allocator::{ClusterIpAllocator, IpRange, NodePortAllocator, PortRange};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SLASH_12: &str = "10.96.0.0/12";
const SLASH_64: &str = "fd00:10:96::/64";

/// How a benchmark range gets filled.
#[derive(Clone, Copy)]
enum Fill {
    /// With allocate_next, as a cluster fills it: free addresses end up clustered, so the
    /// scan from a random start is longer than the fill suggests.
    Next,
    /// With addresses drawn uniformly at random.
    Uniform,
}

/// A /12 with `per_mille` thousandths of its addresses allocated.
fn slash_12(per_mille: u64, fill: Fill) -> ClusterIpAllocator {
    let range: IpRange = SLASH_12.parse().unwrap();
    let mut alloc = ClusterIpAllocator::new(range).with_seed(1);
    let target = range.size() * per_mille / 1000;
    let mut rng = SmallRng::seed_from_u64(2);
    while alloc.used() < target {
        match fill {
            Fill::Next => {
                alloc.allocate_next().unwrap();
            }
            Fill::Uniform => {
                let _ = alloc.allocate(range.ip_at(rng.random_range(0..range.size())));
            }
        }
    }
    alloc
}

/// allocate_next followed by the release of what it returned, so the fill stays constant.
fn allocate_next(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate_next");
    for (name, per_mille, fill) in [
        ("slash12_fill0", 0, Fill::Next),
        ("slash12_fill50", 500, Fill::Next),
        ("slash12_fill99", 990, Fill::Next),
        ("slash12_fill50_uniform", 500, Fill::Uniform),
        ("slash12_fill99_uniform", 990, Fill::Uniform),
    ] {
        let mut alloc = slash_12(per_mille, fill);
        group.bench_function(name, |b| {
            b.iter(|| {
                let ip = alloc.allocate_next().unwrap();
                alloc.release(black_box(ip));
            })
        });
    }

    let range: IpRange = SLASH_64.parse().unwrap();
    let mut alloc = ClusterIpAllocator::new(range).with_seed(1);
    for _ in 0..1_000_000 {
        alloc.allocate_next().unwrap();
    }
    println!(
        "snapshot_bytes slash64_1M_allocated {}",
        alloc.snapshot_size()
    );
    group.bench_function("slash64_1M_allocated", |b| {
        b.iter(|| {
            let ip = alloc.allocate_next().unwrap();
            alloc.release(black_box(ip));
        })
    });
    group.finish();
}

/// allocate then release of specific free addresses of a half-full /12.
fn allocate_specific(c: &mut Criterion) {
    let mut alloc = slash_12(500, Fill::Next);
    let range = alloc.range();
    let free: Vec<IpAddr> = (0..range.size())
        .map(|offset| range.ip_at(offset))
        .filter(|ip| !alloc.has(*ip))
        .take(1024)
        .collect();
    let mut next = free.iter().cycle();
    let mut group = c.benchmark_group("allocate_release_specific");
    group.bench_function("slash12_fill50", |b| {
        b.iter(|| {
            let ip = *next.next().unwrap();
            alloc.allocate(black_box(ip)).unwrap();
            alloc.release(ip);
        })
    });
    group.finish();
}

/// 2768 allocate_next on an empty default NodePort range.
fn node_port_fill(c: &mut Criterion) {
    let mut group = c.benchmark_group("nodeport_fill");
    group.bench_function("default_range", |b| {
        b.iter_batched_ref(
            || NodePortAllocator::new(PortRange::default()).with_seed(1),
            |alloc| {
                for _ in 0..2768 {
                    black_box(alloc.allocate_next().unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn slash_12_per_ten_thousand(per_ten_thousand: u64) -> ClusterIpAllocator {
    let range: IpRange = SLASH_12.parse().unwrap();
    let mut alloc = ClusterIpAllocator::new(range).with_seed(1);
    for _ in 0..range.size() * per_ten_thousand / 10_000 {
        alloc.allocate_next().unwrap();
    }
    alloc
}

/// Snapshot of a /12 filled with allocate_next.
fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    for (name, per_ten_thousand) in [
        ("slash12_fill0.1", 10),
        ("slash12_fill1", 100),
        ("slash12_fill50", 5000),
    ] {
        let alloc = slash_12_per_ten_thousand(per_ten_thousand);
        println!("snapshot_bytes {name} {}", alloc.snapshot().data.len());
        group.bench_function(name, |b| b.iter(|| black_box(alloc.snapshot())));
    }
    group.finish();
}

criterion_group!(
    benches,
    allocate_next,
    allocate_specific,
    node_port_fill,
    snapshot
);
criterion_main!(benches);
