//! A family with several ranges, as a cluster's ServiceCIDRs give it (KEP-1880; the in-tree
//! behaviour is in `pkg/registry/core/service/ipallocator/cidrallocator.go` of Kubernetes
//! v1.37.2).

use std::net::IpAddr;

use super::*;

fn range(cidr: &str) -> IpRange {
    cidr.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A /29 primary range (six addresses) with every address taken.
fn full_primary() -> ClusterIpAllocator {
    let mut ips = ClusterIpAllocator::new(range("10.96.0.0/29"));
    while ips.allocate_next().is_ok() {}
    assert_eq!(ips.used(), 6);
    ips
}

#[test]
fn a_further_range_takes_over_when_the_primary_is_full() {
    let mut ips = full_primary();
    assert!(matches!(ips.allocate_next(), Err(Error::Full)));
    ips.set_ranges(&[
        (range("10.96.0.0/29"), true),
        (range("10.100.0.0/28"), true),
    ]);
    let next = ips.allocate_next().unwrap();
    assert!(range("10.100.0.0/28").contains(next), "{next}");
    let wanted = ["10.100.0.3", "10.100.0.4"]
        .map(ip)
        .into_iter()
        .find(|&wanted| wanted != next)
        .unwrap();
    ips.allocate(wanted).unwrap();
    assert!(ips.has(wanted));
    assert_eq!(ips.size(), 6 + 14);
    assert_eq!(ips.used(), 6 + 2);

    // What is stored carries the further range, and reads back.
    let snapshot = ips.snapshot();
    assert_eq!(snapshot.range, "10.96.0.0/29");
    assert_eq!(snapshot.extra.len(), 1);
    assert_eq!(snapshot.extra[0].range, "10.100.0.0/28");
    let restored = ClusterIpAllocator::from_snapshot(&snapshot).unwrap();
    assert!(restored.iter().eq(ips.iter()));
}

#[test]
fn the_primary_range_is_used_first_and_only_while_listed_usable() {
    let mut ips = ClusterIpAllocator::new(range("10.96.0.0/28"));
    ips.set_ranges(&[
        (range("10.96.0.0/28"), true),
        (range("10.100.0.0/28"), true),
    ]);
    assert!(range("10.96.0.0/28").contains(ips.allocate_next().unwrap()));
    // No ServiceCIDR lists the primary range any more: nothing new comes from it, a
    // requested address in it is refused as in-tree refuses it, what it holds stays.
    ips.set_ranges(&[(range("10.100.0.0/28"), true)]);
    for _ in 0..5 {
        assert!(range("10.100.0.0/28").contains(ips.allocate_next().unwrap()));
    }
    let err = ips.allocate(ip("10.96.0.9")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the provided network does not match the current range"
    );
    assert_eq!(ips.ranges()[0].used, 1);
}

#[test]
fn a_range_being_deleted_gives_nothing_new_and_keeps_what_it_holds() {
    let mut ips = full_primary();
    let further = range("10.100.0.0/28");
    ips.set_ranges(&[(range("10.96.0.0/29"), true), (further, true)]);
    let held = ips.allocate_next().unwrap();
    ips.set_ranges(&[(range("10.96.0.0/29"), true), (further, false)]);
    assert!(matches!(ips.allocate_next(), Err(Error::Full)));
    assert!(matches!(
        ips.allocate(ip("10.100.0.14")),
        Err(Error::IpNotInRange { .. })
    ));
    assert!(ips.has(held));
    assert!(ips.contains(ip("10.100.0.14")));
    // Its addresses are released as any other.
    assert!(ips.release(held));
    assert!(!ips.has(held));
    // Once no ServiceCIDR lists it, it is gone.
    ips.set_ranges(&[(range("10.96.0.0/29"), true)]);
    assert_eq!(ips.ranges().len(), 1);
    assert!(!ips.contains(ip("10.100.0.14")));
}

#[test]
fn overlapping_ranges_share_their_addresses() {
    // servicecidr.PrefixContainsIP: an address is in a range unless it is the network
    // address or, for IPv4, the broadcast address.
    let inner = range("10.0.0.0/24");
    let outer = range("10.0.0.0/16");
    let mut ips = ClusterIpAllocator::new(inner);
    ips.allocate(ip("10.0.0.5")).unwrap();
    // A range added later starts with what the others hold in it.
    ips.set_ranges(&[(inner, true), (outer, true)]);
    let outer_use = |ips: &ClusterIpAllocator| ips.ranges()[1].used;
    assert_eq!(outer_use(&ips), 1);
    assert!(matches!(
        ips.allocate(ip("10.0.0.5")),
        Err(Error::IpAllocated)
    ));
    // The inner range's broadcast address is an address of the outer one.
    ips.allocate(ip("10.0.0.255")).unwrap();
    assert!(matches!(
        ips.allocate(ip("10.0.0.0")),
        Err(Error::IpNotInRange { .. })
    ));
    // An address of both is taken in both, and freed in both.
    ips.allocate(ip("10.0.0.7")).unwrap();
    assert_eq!((ips.ranges()[0].used, outer_use(&ips)), (2, 3));
    assert_eq!(ips.used(), 3, "nested ranges are counted once");
    assert!(ips.release(ip("10.0.0.7")));
    assert_eq!((ips.ranges()[0].used, outer_use(&ips)), (1, 2));
    // Whatever the inner range gives is taken in the outer one.
    let mut inner_only = ips.clone();
    inner_only.set_ranges(&[(inner, true), (outer, false)]);
    let given = inner_only.allocate_next().unwrap();
    assert!(inner.contains(given));
    assert_eq!(inner_only.ranges()[1].used, 3);
}

#[test]
fn a_stored_copy_without_a_listed_range_leaves_it_derived_from_the_others() {
    let primary = range("10.96.0.0/24");
    let outer = range("10.96.0.0/16");
    let ranges = [(primary, true), (outer, true)];
    // Replica `knows` has seen the outer ServiceCIDR; replica `late` has not yet.
    let mut knows = ClusterIpAllocator::new(primary);
    knows.set_ranges(&ranges);
    let mut late = ClusterIpAllocator::new(primary);
    late.allocate(ip("10.96.0.20")).unwrap();
    knows.restore(&late.snapshot()).unwrap();
    assert_eq!(knows.ranges().len(), 2);
    assert_eq!(
        knows.ranges()[1].used,
        1,
        "the outer range holds 10.96.0.20"
    );
    assert!(knows.ranges()[1].usable);

    // The other way round: `late` carries the outer range from the stored copy, holds
    // what it holds, and gives nothing new from it until a ServiceCIDR lists it here.
    knows.allocate(ip("10.96.1.1")).unwrap();
    late.restore(&knows.snapshot()).unwrap();
    assert!(late.has(ip("10.96.1.1")));
    assert!(!late.ranges()[1].usable);
    assert!(matches!(
        late.allocate(ip("10.96.1.2")),
        Err(Error::IpNotInRange { .. })
    ));
    late.allocate(ip("10.96.0.30")).unwrap();
    assert_eq!(
        late.ranges()[1].used,
        3,
        "the carried range is kept in step"
    );

    // A range neither listed here nor in the stored copy is dropped.
    knows.set_ranges(&[(primary, true)]);
    late.restore(&knows.snapshot()).unwrap();
    assert_eq!(late.ranges().len(), 1);
}

#[test]
fn a_stored_copy_listing_the_primary_again_is_refused() {
    let mut ips = ClusterIpAllocator::new(range("10.96.0.0/24"));
    let mut snapshot = ips.snapshot();
    snapshot.extra.push(ips.snapshot());
    assert!(matches!(
        ips.restore(&snapshot),
        Err(Error::CorruptSnapshot { .. })
    ));
}

#[test]
fn a_primary_range_narrower_than_its_service_cidr_is_used_first() {
    // svcplane's flag range may be a share of the cluster's `kubernetes` ServiceCIDR; a
    // wider ServiceCIDR that holds it (the in-tree way to grow a full range) keeps it usable
    // and is allocated from once it is full.
    let mut ips = full_primary();
    ips.set_ranges(&[(range("10.96.0.0/24"), true)]);
    assert!(ips.ranges()[0].usable);
    let next = ips.allocate_next().unwrap();
    assert!(range("10.96.0.0/24").contains(next) && !range("10.96.0.0/29").contains(next));
    assert_eq!(
        ips.ranges()[1].used,
        7,
        "the wider range holds the primary's six"
    );
    ips.set_ranges(&[(range("10.96.0.0/24"), false)]);
    assert!(!ips.ranges()[0].usable);
}

#[test]
fn a_service_address_in_a_range_being_deleted_is_marked() {
    let mut ips = full_primary();
    let further = range("10.100.0.0/28");
    ips.set_ranges(&[(range("10.96.0.0/29"), true), (further, false)]);
    assert!(matches!(
        ips.allocate(ip("10.100.0.5")),
        Err(Error::IpNotInRange { .. })
    ));
    ips.mark(ip("10.100.0.5")).unwrap();
    assert!(ips.has(ip("10.100.0.5")));
    assert!(matches!(
        ips.mark(ip("10.100.0.5")),
        Err(Error::IpAllocated)
    ));
    assert!(matches!(
        ips.mark(ip("10.200.0.5")),
        Err(Error::IpNotInRange { .. })
    ));
}

#[test]
fn pools_of_a_range_no_longer_usable_are_given_up() {
    let mut ips = full_primary();
    let further = range("10.100.0.0/28");
    ips.set_ranges(&[(range("10.96.0.0/29"), true), (further, true)]);
    let pooled = ips.allocate_next().unwrap();
    assert!(ips.add_to_pool(pooled));
    let unpooled = ips.set_ranges(&[(range("10.96.0.0/29"), true), (further, false)]);
    assert_eq!(unpooled, [pooled]);
    assert_eq!(ips.pooled().len(), 0);
    assert!(ips.has(pooled), "still allocated: the caller frees it");
}
