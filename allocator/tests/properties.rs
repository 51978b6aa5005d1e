//! Property tests: the allocators against a plain set as model, and the transaction rules.

use std::collections::BTreeSet;
use std::net::IpAddr;

use allocator::{
    Allocators, ClusterIpAllocator, Error, ExternalTrafficPolicy, IpFamily, IpFamilyPolicy,
    IpRange, NodePortAllocator, PortRange, ServicePort, ServiceSpec, ServiceType,
};
use proptest::prelude::*;

const CIDRS: &[&str] = &[
    "10.0.0.0/29",
    "10.0.0.0/28",
    "10.0.0.0/27",
    "192.168.0.0/24",
    "fd00::/125",
    "fd00::/120",
    "fd00:10:96::/64",
];

#[derive(Clone, Debug)]
enum Op {
    /// Allocate the address at this index of the CIDR (0 is the network address; indexes past
    /// the CIDR fall outside it).
    Allocate(u64),
    AllocateNext,
    Release(u64),
    /// Add the address at this index to the pool.
    Pool(u64),
    /// Snapshot, restore into a fresh allocator, and continue with that one.
    RoundTrip,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..300).prop_map(Op::Allocate),
        4 => Just(Op::AllocateNext),
        2 => (0u64..300).prop_map(Op::Release),
        2 => (0u64..300).prop_map(Op::Pool),
        1 => Just(Op::RoundTrip),
    ]
}

fn ip_at_index(range: &IpRange, index: u64) -> IpAddr {
    let network = range.cidr().network();
    match network {
        IpAddr::V4(ip) => IpAddr::V4((u32::from(ip).wrapping_add(index as u32)).into()),
        IpAddr::V6(ip) => IpAddr::V6((u128::from(ip) + u128::from(index)).into()),
    }
}

fn is_allocatable(range: &IpRange, ip: IpAddr) -> bool {
    let cidr = range.cidr();
    cidr.contains(&ip)
        && ip != cidr.network()
        && (range.family() == IpFamily::V6 || ip != cidr.broadcast())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ip_allocator_matches_a_set(
        cidr in prop::sample::select(CIDRS),
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let range: IpRange = cidr.parse().unwrap();
        let mut alloc = ClusterIpAllocator::new(range).with_seed(seed);
        let mut model = BTreeSet::new();
        // Allocated addresses not handed out yet, oldest first.
        let mut pool = std::collections::VecDeque::new();
        for op in ops {
            match op {
                Op::Allocate(index) => {
                    let ip = ip_at_index(&range, index);
                    let result = alloc.allocate(ip);
                    if let Some(at) = pool.iter().position(|&pooled| pooled == ip) {
                        prop_assert_eq!(result, Ok(()));
                        pool.remove(at);
                    } else if !is_allocatable(&range, ip) {
                        prop_assert_eq!(result, Err(Error::IpNotInRange { ip, cidr: range.cidr() }));
                    } else if model.contains(&ip) {
                        prop_assert_eq!(result, Err(Error::IpAllocated));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        model.insert(ip);
                    }
                }
                Op::AllocateNext if !pool.is_empty() => {
                    prop_assert_eq!(alloc.allocate_next(), Ok(pool.pop_front().unwrap()));
                }
                Op::AllocateNext => match alloc.allocate_next() {
                    Ok(ip) => {
                        prop_assert!(is_allocatable(&range, ip), "{} is not allocatable", ip);
                        prop_assert!(model.insert(ip), "{} handed out twice", ip);
                    }
                    Err(err) => {
                        prop_assert_eq!(err, Error::Full);
                        prop_assert_eq!(model.len() as u64, range.size());
                    }
                },
                Op::Release(index) => {
                    let ip = ip_at_index(&range, index);
                    prop_assert_eq!(alloc.release(ip), model.remove(&ip));
                    pool.retain(|&pooled| pooled != ip);
                }
                Op::Pool(index) => {
                    let ip = ip_at_index(&range, index);
                    let added = model.contains(&ip) && !pool.contains(&ip);
                    prop_assert_eq!(alloc.add_to_pool(ip), added);
                    if added {
                        pool.push_back(ip);
                    }
                }
                Op::RoundTrip => {
                    pool.clear();
                    let snapshot = alloc.snapshot();
                    prop_assert_eq!(snapshot.data.len(), alloc.snapshot_size());
                    alloc = ClusterIpAllocator::from_snapshot(&snapshot).unwrap().with_seed(seed);
                }
            }
            prop_assert_eq!(alloc.used(), model.len() as u64);
            prop_assert!(alloc.pooled().eq(pool.iter().copied()));
            prop_assert_eq!(alloc.used() + alloc.free(), range.size());
        }
        prop_assert!(alloc.iter().eq(model.iter().copied()));
        let restored = ClusterIpAllocator::from_snapshot(&alloc.snapshot()).unwrap();
        prop_assert!(restored.iter().eq(model.iter().copied()));
    }

    #[test]
    fn dynamic_band_fills_before_the_static_band(
        cidr in prop::sample::select(&CIDRS[..6]),
        seed in any::<u64>(),
        taken in prop::collection::btree_set(0u64..300, 0..40),
    ) {
        let range: IpRange = cidr.parse().unwrap();
        let mut alloc = ClusterIpAllocator::new(range).with_seed(seed);
        for offset in taken.iter().filter(|&&o| o < range.size()) {
            alloc.allocate(range.ip_at(*offset)).unwrap();
        }
        while let Ok(ip) = alloc.allocate_next() {
            let offset = range.offset_of(ip).unwrap();
            if offset < range.band_offset() {
                // Only once every dynamic offset is taken.
                for dynamic in range.band_offset()..range.size() {
                    prop_assert!(alloc.has(range.ip_at(dynamic)));
                }
            }
        }
        prop_assert_eq!(alloc.free(), 0);
    }
}

const PORTS: &[Option<u16>] = &[
    None,
    None,
    None,
    Some(30000),
    Some(30080),
    Some(32767),
    Some(80),
];
const IPS: &[&str] = &[
    "10.0.0.5", "10.0.0.6", "fd00::5", "fd00::6", "None", "10.9.9.9",
];

fn service() -> impl Strategy<Value = ServiceSpec> {
    let service_type = prop::sample::select(vec![
        ServiceType::ClusterIp,
        ServiceType::NodePort,
        ServiceType::LoadBalancer,
        ServiceType::ExternalName,
    ]);
    let policy = prop::sample::select(vec![
        None,
        Some(IpFamilyPolicy::SingleStack),
        Some(IpFamilyPolicy::PreferDualStack),
        Some(IpFamilyPolicy::RequireDualStack),
    ]);
    let port = (
        prop::sample::select(vec!["TCP", "UDP"]),
        prop::sample::select(vec![53, 80, 443]),
        prop::sample::select(PORTS),
    )
        .prop_map(|(protocol, port, node_port)| ServicePort {
            name: format!("{protocol}-{port}"),
            protocol: protocol.to_string(),
            port,
            node_port,
        });
    (
        service_type,
        prop::collection::vec(prop::sample::select(IPS), 0..3),
        policy,
        prop::collection::vec(port, 0..4),
        prop::sample::select(vec![None, Some(false), Some(true)]),
        any::<bool>(),
        prop::sample::select(vec![None, Some(31000), Some(30080)]),
        any::<bool>(),
    )
        .prop_map(
            |(service_type, ips, policy, ports, alloc_lb, local, hc, has_selector)| ServiceSpec {
                service_type,
                cluster_ips: ips.into_iter().map(String::from).collect(),
                ip_families: Vec::new(),
                ip_family_policy: policy,
                ports,
                allocate_load_balancer_node_ports: alloc_lb,
                external_traffic_policy: if local {
                    ExternalTrafficPolicy::Local
                } else {
                    ExternalTrafficPolicy::Cluster
                },
                health_check_node_port: hc,
                has_selector,
            },
        )
}

fn cluster(dual: bool, seed: u64) -> Allocators {
    let mut ranges = vec![ClusterIpAllocator::new("10.0.0.0/24".parse().unwrap()).with_seed(seed)];
    if dual {
        ranges.push(ClusterIpAllocator::new("fd00::/120".parse().unwrap()).with_seed(seed));
    }
    Allocators::new(
        ranges,
        NodePortAllocator::new(PortRange::default()).with_seed(seed),
    )
    .unwrap()
}

fn state(allocators: &Allocators) -> (Vec<Vec<IpAddr>>, Vec<u16>) {
    (
        allocators
            .cluster_ips()
            .iter()
            .map(|a| a.iter().collect())
            .collect(),
        allocators.node_ports().iter().collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn reverted_and_dry_run_transactions_leave_the_state_unchanged(
        dual in any::<bool>(),
        seed in any::<u64>(),
        existing in prop::collection::vec(service(), 0..4),
        old in service(),
        new in service(),
    ) {
        let mut allocs = cluster(dual, seed);
        for spec in &existing {
            if let Ok(txn) = allocs.create(spec, false) {
                txn.commit(&mut allocs);
            }
        }
        let before = state(&allocs);

        if let Ok(txn) = allocs.create(&new, true) {
            txn.commit(&mut allocs);
        }
        prop_assert_eq!(&state(&allocs), &before, "dry run changed the state");

        if let Ok(txn) = allocs.create(&new, false) {
            for value in txn.reserved() {
                prop_assert!(allocs.has(*value));
            }
            txn.revert(&mut allocs);
        }
        prop_assert_eq!(&state(&allocs), &before, "reverted create changed the state");

        // Updates: from a committed old Service.
        let Ok(txn) = allocs.create(&old, false) else { return Ok(()) };
        let old = txn.service().clone();
        txn.commit(&mut allocs);
        let with_old = state(&allocs);
        if let Ok(txn) = allocs.update(&old, &new, false) {
            txn.revert(&mut allocs);
        }
        prop_assert_eq!(&state(&allocs), &with_old, "reverted update changed the state");
        if let Ok(txn) = allocs.update(&old, &new, true) {
            txn.commit(&mut allocs);
        }
        prop_assert_eq!(&state(&allocs), &with_old, "dry-run update changed the state");

        // Committed update then delete gives back exactly what the Service held.
        let current = match allocs.update(&old, &new, false) {
            Ok(txn) => {
                let current = txn.service().clone();
                txn.commit(&mut allocs);
                current
            }
            Err(_) => old,
        };
        allocs.delete(&current).commit(&mut allocs);
        prop_assert_eq!(&state(&allocs), &before, "delete did not give back everything");
    }

    #[test]
    fn committed_services_never_share_a_value(
        seed in any::<u64>(),
        specs in prop::collection::vec(service(), 1..8),
    ) {
        let mut allocs = cluster(true, seed);
        let mut held = BTreeSet::new();
        for spec in &specs {
            if let Ok(txn) = allocs.create(spec, false) {
                let svc = txn.service().clone();
                txn.commit(&mut allocs);
                let mut mine = BTreeSet::new();
                for ip in svc.held_cluster_ips() {
                    mine.insert(ip.to_string());
                }
                for port in svc.held_ports() {
                    mine.insert(port.to_string());
                }
                for value in mine {
                    prop_assert!(held.insert(value.clone()), "{} held twice", value);
                }
            }
        }
    }
}
