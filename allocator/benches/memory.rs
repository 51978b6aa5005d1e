//! Heap used by the allocated-address sets, measured with a counting global allocator, and
//! the size of their snapshots. Prints `memory_bytes <id> <bytes>` and
//! `snapshot_bytes <id> <bytes>` lines.

use std::alloc::System;

use allocator::{ClusterIpAllocator, IpRange};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Builds an allocator of `cidr` holding `count` allocate_next results; returns the heap it
/// keeps (allocated minus freed bytes while it was built) and its snapshot size.
fn measure(cidr: &str, count: u64) -> (isize, usize) {
    let range: IpRange = cidr.parse().unwrap();
    let region = Region::new(GLOBAL);
    let mut alloc = ClusterIpAllocator::new(range).with_seed(1);
    for _ in 0..count {
        alloc.allocate_next().unwrap();
    }
    let change = region.change();
    // Reallocations are already counted in both totals.
    let heap = change.bytes_allocated as isize - change.bytes_deallocated as isize;
    (heap, alloc.snapshot_size())
}

fn main() {
    let slash_12 = 1_048_574;
    for (id, cidr, count) in [
        ("slash64_1M_allocated", "fd00:10:96::/64", 1_000_000),
        ("slash12_fill0.1", "10.96.0.0/12", slash_12 / 1000),
        ("slash12_fill1", "10.96.0.0/12", slash_12 / 100),
        ("slash12_fill50", "10.96.0.0/12", slash_12 / 2),
        ("slash12_fill99", "10.96.0.0/12", slash_12 * 99 / 100),
    ] {
        let (heap, snapshot) = measure(cidr, count);
        println!("memory_bytes {id} {heap}");
        println!("snapshot_bytes {id} {snapshot}");
    }
}
