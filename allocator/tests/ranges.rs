//! Property test: a family with several overlapping and disjoint ranges (ServiceCIDRs)
//! against a plain set of addresses as model. An address is one thing whichever ranges
//! hold it: given once, freed once, never handed out from a range that is not usable.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use allocator::{ClusterIpAllocator, Error, IpRange};
use proptest::prelude::*;

/// The primary range, a wider one holding it, and a disjoint one.
const RANGES: [&str; 3] = ["10.0.0.0/28", "10.0.0.0/27", "10.0.1.0/29"];
/// Addresses from 10.0.0.0 on: past every range's end.
const SPAN: u32 = 266;

#[derive(Clone, Debug)]
enum Op {
    Allocate(u32),
    AllocateNext,
    Release(u32),
    /// Which of the three ranges are usable (bit i for range i).
    Usable(u8),
    /// Snapshot, restore into a fresh allocator given the same ranges, go on with it.
    RoundTrip,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SPAN).prop_map(Op::Allocate),
        4 => Just(Op::AllocateNext),
        2 => (0..SPAN).prop_map(Op::Release),
        1 => (0u8..8).prop_map(Op::Usable),
        1 => Just(Op::RoundTrip),
    ]
}

fn ip(index: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 0, 0, 0)) + index,
    ))
}

fn ranges() -> Vec<IpRange> {
    RANGES.iter().map(|r| r.parse().unwrap()).collect()
}

fn listed(usable: u8) -> Vec<(IpRange, bool)> {
    ranges()
        .into_iter()
        .enumerate()
        .map(|(i, range)| (range, usable & (1 << i) != 0))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn several_ranges_act_as_one_set_of_addresses(ops in prop::collection::vec(op(), 1..200)) {
        let all = ranges();
        let mut usable: u8 = 0b111;
        let mut ips = ClusterIpAllocator::new(all[0]);
        ips.set_ranges(&listed(usable));
        let mut model: BTreeSet<IpAddr> = BTreeSet::new();
        let in_usable = |usable: u8, ip: IpAddr| {
            all.iter().enumerate().any(|(i, r)| usable & (1 << i) != 0 && r.contains(ip))
        };
        for op in ops {
            match op {
                Op::Allocate(index) => {
                    let ip = ip(index);
                    let result = ips.allocate(ip);
                    if !in_usable(usable, ip) {
                        prop_assert!(matches!(result, Err(Error::IpNotInRange { .. })), "{ip}: {result:?}");
                    } else if model.contains(&ip) {
                        prop_assert_eq!(result, Err(Error::IpAllocated));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        model.insert(ip);
                    }
                }
                Op::AllocateNext => match ips.allocate_next() {
                    Ok(ip) => {
                        prop_assert!(in_usable(usable, ip), "{} is in no usable range", ip);
                        prop_assert!(model.insert(ip), "{} handed out twice", ip);
                    }
                    Err(err) => {
                        prop_assert_eq!(err, Error::Full);
                        let free = (0..SPAN).map(ip).find(|&ip| in_usable(usable, ip) && !model.contains(&ip));
                        prop_assert_eq!(free, None);
                    }
                },
                Op::Release(index) => {
                    let ip = ip(index);
                    prop_assert_eq!(ips.release(ip), model.remove(&ip));
                }
                Op::Usable(mask) => {
                    usable = mask;
                    prop_assert!(ips.set_ranges(&listed(usable)).is_empty(), "no pools here");
                }
                Op::RoundTrip => {
                    let mut restored = ClusterIpAllocator::new(all[0]);
                    restored.set_ranges(&listed(usable));
                    restored.restore(&ips.snapshot()).unwrap();
                    ips = restored;
                }
            }
            for index in 0..SPAN {
                let ip = ip(index);
                prop_assert_eq!(ips.has(ip), model.contains(&ip), "{}", ip);
            }
            prop_assert_eq!(ips.used(), model.len() as u64);
        }
    }
}
