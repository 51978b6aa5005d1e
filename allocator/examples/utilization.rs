//! Allocates cluster IPs from a /12 and prints how full the range is and how large its
//! snapshot gets.
//!
//! `cargo run -p allocator --example utilization -- [CIDR] [COUNT]`
//! (defaults: `10.96.0.0/12`, 100000).

use std::process::ExitCode;

use allocator::{ClusterIpAllocator, IpRange};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cidr = args.next().unwrap_or_else(|| "10.96.0.0/12".to_string());
    let count: u64 = match args.next().map(|s| s.parse()) {
        None => 100_000,
        Some(Ok(count)) => count,
        Some(Err(err)) => {
            eprintln!("COUNT: {err}");
            return ExitCode::FAILURE;
        }
    };
    let range: IpRange = match cidr.parse() {
        Ok(range) => range,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };

    let mut alloc = ClusterIpAllocator::new(range);
    println!(
        "range {range}: {} allocatable addresses, dynamic band from offset {}",
        alloc.size(),
        range.band_offset()
    );
    println!(
        "{:>12} {:>12} {:>10} {:>14}",
        "used", "free", "used %", "snapshot B"
    );
    let step = (count / 10).max(1);
    let mut allocated = 0;
    while allocated < count {
        let batch = step.min(count - allocated);
        for _ in 0..batch {
            if let Err(err) = alloc.allocate_next() {
                eprintln!("after {allocated} allocations: {err}");
                return ExitCode::FAILURE;
            }
            allocated += 1;
        }
        println!(
            "{:>12} {:>12} {:>9.3}% {:>14}",
            alloc.used(),
            alloc.free(),
            alloc.used() as f64 * 100.0 / alloc.size() as f64,
            alloc.snapshot_size()
        );
    }
    let static_used = alloc
        .iter()
        .filter(|ip| {
            range
                .offset_of(*ip)
                .is_some_and(|o| o < range.band_offset())
        })
        .count();
    println!("addresses taken from the static band: {static_used}");
    ExitCode::SUCCESS
}
