use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::EndpointConditions;

use super::*;

fn capacity(pairs: &[(&str, f64)]) -> ZoneCapacity {
    ZoneCapacity::Zones(pairs.iter().map(|(z, r)| (z.to_string(), *r)).collect())
}

fn endpoint(ip: &str, zone: Option<&str>, ready: Option<bool>) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        zone: zone.map(str::to_string),
        conditions: ready.map(|ready| EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(format!("pod-{ip}")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ready_in(ip: &str, zone: &str) -> Endpoint {
    endpoint(ip, Some(zone), Some(true))
}

fn hinted_zone(endpoint: &Endpoint) -> Option<&str> {
    let zones = endpoint.hints.as_ref()?.for_zones.as_ref()?;
    assert_eq!(zones.len(), 1);
    Some(zones[0].name.as_str())
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(z, n)| (z.to_string(), *n)).collect()
}

/// What the Auto mode does to one address type whose endpoints all go into one new slice:
/// the hints per zone, or why there are none.
fn auto(
    capacity: &ZoneCapacity,
    endpoints: &mut [Endpoint],
) -> Result<BTreeMap<String, usize>, HintsDisabled> {
    let mut create = [slice("new", endpoints.to_vec())];
    let decision = add_zone_hints(capacity, &mut create, &mut Vec::new(), &[]);
    endpoints.clone_from_slice(create[0].endpoints.as_deref().unwrap());
    match decision {
        HintsDecision::Enabled(_) => {
            let mut counts = BTreeMap::new();
            for zone in endpoints.iter().filter_map(hinted_zone) {
                *counts.entry(zone.to_string()).or_default() += 1;
            }
            Ok(counts)
        }
        HintsDecision::Disabled(reason) => {
            assert!(endpoints.iter().all(|e| e.hints.is_none()));
            Err(reason)
        }
    }
}

fn slice(name: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(endpoints),
        ports: None,
    }
}

fn hinted(ip: &str, zone: &str, hinted_to: &str) -> Endpoint {
    let mut endpoint = ready_in(ip, zone);
    endpoint.hints = hint(hinted_to);
    endpoint
}

/// Slice name -> each endpoint's hinted zone.
fn hinted_zones(slices: &[EndpointSlice]) -> Vec<(String, Vec<Option<&str>>)> {
    slices
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                endpoints_of(s).iter().map(hinted_zone).collect(),
            )
        })
        .collect()
}

/// `getAllocations` (k8s.io/endpointslice topologycache/topologycache.go): no CPU ratios
/// (insufficient Node information) or Nodes ready in one zone only turn hints off.
#[test]
fn without_node_information_hints_are_disabled() {
    let mut endpoints = vec![ready_in("10.1.2.3", "zone-a")];
    assert_eq!(
        auto(&ZoneCapacity::InsufficientNodeInfo, &mut endpoints),
        Err(HintsDisabled::InsufficientNodeInfo)
    );
    assert_eq!(
        auto(&ZoneCapacity::SingleZone, &mut endpoints),
        Err(HintsDisabled::NodesReadyInOneZoneOnly)
    );
    assert_eq!(
        auto(&ZoneCapacity::InsufficientNodeInfo, &mut []),
        Err(HintsDisabled::InsufficientNodeInfo)
    );
}

/// `getAllocations` (topologycache.go): fewer ready endpoints (`getTotalReadyEndpoints`,
/// sliceinfo.go) than zones turn hints off.
#[test]
fn fewer_endpoints_than_zones_disable_hints() {
    // In-tree: "slice to create with 2 endpoints, zone ratios require 3".
    let mut endpoints = vec![
        ready_in("10.1.2.3", "zone-a"),
        ready_in("10.1.2.4", "zone-b"),
    ];
    let three = capacity(&[("zone-a", 0.3), ("zone-b", 0.4), ("zone-c", 0.3)]);
    let reason = auto(&three, &mut endpoints).unwrap_err();
    assert_eq!(
        reason,
        HintsDisabled::InsufficientNumberOfEndpoints {
            endpoints: 2,
            zones: 3
        }
    );
    assert_eq!(
        reason.to_string(),
        "Insufficient number of endpoints (2 endpoints, 3 zones)"
    );
    // Not-ready endpoints do not count.
    endpoints.push(endpoint("10.1.2.5", Some("zone-c"), Some(false)));
    assert!(matches!(
        auto(&three, &mut endpoints),
        Err(HintsDisabled::InsufficientNumberOfEndpoints { endpoints: 2, .. })
    ));
}

/// `AddHints` (topologycache.go): every ready endpoint is hinted to its own zone; not-ready
/// ones get none.
#[test]
fn two_endpoints_in_two_zones_get_their_own_zone() {
    // In-tree: "slice to create with 2 ready, 1 unready, 1 unknown endpoints, zone ratios only
    // require 2".
    let mut endpoints = vec![
        ready_in("10.1.2.3", "zone-a"),
        ready_in("10.1.2.4", "zone-b"),
        endpoint("10.1.2.5", Some("zone-b"), Some(false)),
        endpoint("10.1.2.6", Some("zone-b"), None),
    ];
    let hints = auto(
        &capacity(&[("zone-a", 0.45), ("zone-b", 0.55)]),
        &mut endpoints,
    );
    assert_eq!(hints, Ok(counts(&[("zone-a", 1), ("zone-b", 1)])));
    let hinted: Vec<Option<&str>> = endpoints.iter().map(hinted_zone).collect();
    assert_eq!(hinted, vec![Some("zone-a"), Some("zone-b"), None, None]);
}

/// `getGivingAndReceivingZones` and `redistributeHints` (topologycache/utils.go): a zone
/// above its desired share gives its first ready endpoints.
#[test]
fn three_zones_within_the_threshold_move_one_endpoint() {
    // In-tree: "slices to create and update within 3 zone threshold": 10 endpoints, 5 in
    // zone-a, 2 in zone-b, 3 in zone-c; zone-a gives one to zone-b.
    let mut endpoints = vec![
        ready_in("10.1.2.3", "zone-a"),
        ready_in("10.1.2.4", "zone-b"),
        ready_in("10.1.3.3", "zone-c"),
        ready_in("10.1.3.4", "zone-c"),
        ready_in("10.1.3.5", "zone-a"),
        ready_in("10.2.2.3", "zone-a"),
        ready_in("10.2.2.4", "zone-a"),
        ready_in("10.2.3.3", "zone-b"),
        ready_in("10.2.3.4", "zone-c"),
        ready_in("10.2.3.5", "zone-a"),
    ];
    let ratios = capacity(&[("zone-a", 0.35), ("zone-b", 0.35), ("zone-c", 0.30)]);
    let hints = auto(&ratios, &mut endpoints);
    assert_eq!(
        hints,
        Ok(counts(&[("zone-a", 4), ("zone-b", 3), ("zone-c", 3)]))
    );
    // The first zone-a endpoint in order is the one that moves.
    assert_eq!(hinted_zone(&endpoints[0]), Some("zone-b"));
    assert!(
        endpoints[1..]
            .iter()
            .all(|e| hinted_zone(e) == e.zone.as_deref())
    );
}

/// `getAllocations` (topologycache.go): each zone's desired share is its CPU ratio of the
/// ready endpoints, its minimum `ceil(desired / (1 + overloadThreshold))`.
#[test]
fn uneven_cpu_allocates_proportionally() {
    let ratios = capacity(&[("zone-a", 0.5), ("zone-b", 0.25), ("zone-c", 0.25)]);
    let assignment = zone_assignment(&ratios, 8).unwrap();
    let allocation = |zone: &str| assignment.zones[zone];
    assert_eq!(
        allocation("zone-a"),
        ZoneAllocation {
            minimum: 4,
            maximum: 4,
            desired: 4.0
        }
    );
    assert_eq!(
        allocation("zone-b"),
        ZoneAllocation {
            minimum: 2,
            maximum: 2,
            desired: 2.0
        }
    );

    let mut endpoints = vec![
        ready_in("10.0.0.1", "zone-a"),
        ready_in("10.0.0.2", "zone-a"),
        ready_in("10.0.0.3", "zone-b"),
        ready_in("10.0.0.4", "zone-b"),
        ready_in("10.0.0.5", "zone-b"),
        ready_in("10.0.0.6", "zone-c"),
        ready_in("10.0.0.7", "zone-c"),
        ready_in("10.0.0.8", "zone-c"),
    ];
    let hints = auto(&ratios, &mut endpoints);
    assert_eq!(
        hints,
        Ok(counts(&[("zone-a", 4), ("zone-b", 2), ("zone-c", 2)]))
    );
    assert_eq!(hinted_zone(&endpoints[2]), Some("zone-a"));
    assert_eq!(hinted_zone(&endpoints[5]), Some("zone-a"));
}

/// `getAllocations` (topologycache.go): a zone's maximum is its minimum plus what is left once
/// every zone has its minimum.
#[test]
fn allocations_leave_room_above_the_minimum() {
    let assignment = zone_assignment(&capacity(&[("zone-a", 0.45), ("zone-b", 0.55)]), 10).unwrap();
    // zone-a: desired 4.5, minimum ceil(4.5 / 1.2) = 4; zone-b: 5.5 -> 5; 1 endpoint spare.
    assert_eq!(
        assignment.zones["zone-a"],
        ZoneAllocation {
            minimum: 4,
            maximum: 5,
            desired: 4.5
        }
    );
    assert_eq!(assignment.zones["zone-b"].maximum, 6);
    assert_eq!(assignment.ready_endpoints, 10);
}

/// `getAllocations` (topologycache.go): minimums that add up to more than the ready endpoints
/// turn hints off.
#[test]
fn overload_disables_hints() {
    // 1.5 desired per zone needs ceil(1.25) = 2 each: 4 > 3 endpoints.
    let halves = capacity(&[("zone-a", 0.5), ("zone-b", 0.5)]);
    let reason = zone_assignment(&halves, 3).unwrap_err();
    assert_eq!(
        reason,
        HintsDisabled::MinAllocationExceedsOverloadThreshold {
            endpoints: 3,
            zones: 2
        }
    );
    assert!(reason.to_string().starts_with(
        "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold"
    ));
    assert!(zone_assignment(&halves, 4).is_ok());
    let thirds = capacity(&[
        ("zone-a", 1.0 / 3.0),
        ("zone-b", 1.0 / 3.0),
        ("zone-c", 1.0 / 3.0),
    ]);
    assert!(matches!(
        zone_assignment(&thirds, 4),
        Err(HintsDisabled::MinAllocationExceedsOverloadThreshold { .. })
    ));
    assert!(zone_assignment(&thirds, 3).is_ok());
}

/// `AddHints` (topologycache.go): a ready endpoint without zone in a slice written turns hints
/// off; a not-ready one does not matter.
#[test]
fn an_endpoint_without_zone_disables_hints() {
    let mut endpoints = vec![
        ready_in("10.0.0.1", "zone-a"),
        ready_in("10.0.0.2", "zone-b"),
        ready_in("10.0.0.3", "zone-b"),
        endpoint("10.0.0.4", None, Some(true)),
    ];
    let halves = capacity(&[("zone-a", 0.5), ("zone-b", 0.5)]);
    assert_eq!(
        auto(&halves, &mut endpoints),
        Err(HintsDisabled::NoZoneSpecified)
    );
    // A zone-less endpoint that is not ready does not matter.
    endpoints[3].conditions.as_mut().unwrap().ready = Some(false);
    endpoints.push(ready_in("10.0.0.5", "zone-a"));
    assert_eq!(
        auto(&halves, &mut endpoints),
        Ok(counts(&[("zone-a", 2), ("zone-b", 2)]))
    );
    assert_eq!(endpoints[3].hints, None);
}

/// `getAllocatedHintsByZone` (k8s.io/endpointslice topologycache/sliceinfo.go): an unchanged
/// slice whose ready endpoints all carry hints to zones that get endpoints, within each zone's
/// maximum, keeps them and is not written; its hints count when the slices written are hinted
/// (`AddHints`, topologycache.go), so a zone it already serves gives from the new slice.
#[test]
fn unchanged_slices_keep_hints_that_fit() {
    let halves = capacity(&[("zone-a", 0.5), ("zone-b", 0.5)]);
    let kept = slice(
        "kept",
        vec![
            hinted("10.0.0.1", "zone-a", "zone-b"),
            hinted("10.0.0.2", "zone-a", "zone-a"),
        ],
    );
    let mut create = [slice(
        "new",
        vec![
            ready_in("10.0.0.3", "zone-b"),
            ready_in("10.0.0.4", "zone-b"),
        ],
    )];
    let mut update = Vec::new();
    let decision = add_zone_hints(&halves, &mut create, &mut update, &[&kept]);
    assert!(matches!(decision, HintsDecision::Enabled(_)));
    assert!(update.is_empty(), "the unchanged slice is not written");
    assert_eq!(
        hinted_zones(&create),
        [("new".to_string(), vec![Some("zone-a"), Some("zone-b")])]
    );
}

/// `getHintsByZone` (topologycache/utils.go) refuses a slice with a hint to a zone that gets no
/// endpoints, a ready endpoint without hints, or more hints for a zone than its maximum; such
/// a slice is written with fresh hints. Not-ready endpoints are not looked at.
#[test]
fn unchanged_slices_whose_hints_no_longer_fit_are_rewritten() {
    let halves = capacity(&[("zone-a", 0.5), ("zone-b", 0.5)]);
    let mut not_ready = endpoint("10.0.0.9", Some("zone-a"), Some(false));
    not_ready.hints = hint("zone-z");
    let fits = slice(
        "fits",
        vec![
            hinted("10.0.0.1", "zone-a", "zone-a"),
            hinted("10.0.0.6", "zone-a", "zone-a"),
            not_ready,
        ],
    );
    let gone_zone = slice("gone-zone", vec![hinted("10.0.0.2", "zone-b", "zone-z")]);
    let unhinted = slice("unhinted", vec![ready_in("10.0.0.3", "zone-b")]);
    // 6 ready endpoints, 3 per zone at most: two more zone-a hints do not fit.
    let too_many = slice(
        "too-many",
        vec![
            hinted("10.0.0.4", "zone-b", "zone-a"),
            hinted("10.0.0.5", "zone-b", "zone-a"),
        ],
    );
    let mut update = Vec::new();
    add_zone_hints(
        &halves,
        &mut [],
        &mut update,
        &[&fits, &gone_zone, &unhinted, &too_many],
    );
    assert_eq!(
        hinted_zones(&update),
        [
            ("gone-zone".to_string(), vec![Some("zone-a")]),
            ("unhinted".to_string(), vec![Some("zone-b")]),
            ("too-many".to_string(), vec![Some("zone-b"), Some("zone-b")]),
        ]
    );
}

/// `redistributeHints` (topologycache/utils.go) over `ToCreate` then `ToUpdate`
/// (`AddHints`): a zone above its share gives its first ready endpoints in the slices created
/// before those in the slices updated; unchanged slices give nothing.
#[test]
fn endpoints_move_from_created_slices_first() {
    let halves = capacity(&[("zone-a", 0.5), ("zone-b", 0.5)]);
    let mut create = [slice("new", vec![ready_in("10.0.0.5", "zone-a")])];
    let mut update = vec![slice(
        "old",
        vec![
            ready_in("10.0.0.1", "zone-a"),
            ready_in("10.0.0.2", "zone-a"),
            ready_in("10.0.0.3", "zone-b"),
            ready_in("10.0.0.6", "zone-b"),
        ],
    )];
    let kept = slice("kept", vec![hinted("10.0.0.4", "zone-a", "zone-a")]);
    add_zone_hints(&halves, &mut create, &mut update, &[&kept]);
    // 6 ready: 3 each; zone-a holds 4 and gives 1, zone-b holds 2 and receives 1.
    assert_eq!(
        hinted_zones(&create),
        [("new".to_string(), vec![Some("zone-b")])]
    );
    assert_eq!(
        hinted_zones(&update),
        [(
            "old".to_string(),
            vec![
                Some("zone-a"),
                Some("zone-a"),
                Some("zone-b"),
                Some("zone-b")
            ]
        )]
    );
}

/// `RemoveHintsFromSlices` (topologycache/utils.go): when hints are off, the slices written lose
/// theirs and every unchanged slice carrying one is written without.
#[test]
fn disabled_hints_are_removed_from_unchanged_slices_too() {
    let hinted_slice = slice("hinted", vec![hinted("10.0.0.1", "zone-a", "zone-a")]);
    let plain = slice("plain", vec![ready_in("10.0.0.2", "zone-a")]);
    let mut create = [slice("new", vec![hinted("10.0.0.3", "zone-a", "zone-a")])];
    let mut update = Vec::new();
    let decision = add_zone_hints(
        &ZoneCapacity::SingleZone,
        &mut create,
        &mut update,
        &[&hinted_slice, &plain],
    );
    assert_eq!(
        decision,
        HintsDecision::Disabled(HintsDisabled::NodesReadyInOneZoneOnly)
    );
    assert_eq!(hinted_zones(&create), [("new".to_string(), vec![None])]);
    assert_eq!(hinted_zones(&update), [("hinted".to_string(), vec![None])]);
}

fn zone_map<T: Copy>(pairs: &[(&str, T)]) -> BTreeMap<String, T> {
    pairs.iter().map(|(z, v)| (z.to_string(), *v)).collect()
}

/// `getGivingAndReceivingZones` (topologycache/utils.go), on the cases of its in-tree table.
#[test]
fn in_tree_giving_and_receiving_table() {
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, f64)>,
        Vec<(&'a str, i64)>,
        Vec<(&'a str, i64)>,
        Vec<(&'a str, i64)>,
    );
    let cases: Vec<Case> = vec![
        ("empty", vec![], vec![], vec![], vec![]),
        (
            "simple allocation with no need for rebalancing",
            vec![("zone-a", 1.2), ("zone-b", 1.1), ("zone-c", 1.0)],
            vec![("zone-a", 1), ("zone-b", 1), ("zone-c", 1)],
            vec![],
            vec![],
        ),
        (
            "preference for same zone even when giving an extra endpoint would result in slightly better distribution",
            vec![("zone-a", 5.1), ("zone-b", 5.1), ("zone-c", 5.8)],
            vec![("zone-a", 16)],
            vec![("zone-a", 10)],
            vec![("zone-b", 5), ("zone-c", 5)],
        ),
        (
            "when 2 zones need < 1 endpoint, give to zone that needs endpoint most",
            vec![("zone-a", 5.0), ("zone-b", 5.6), ("zone-c", 5.4)],
            vec![("zone-a", 16)],
            vec![("zone-a", 11)],
            vec![("zone-b", 6), ("zone-c", 5)],
        ),
        (
            "when 2 zones have extra endpoints, give from zone with most extra",
            vec![("zone-a", 5.0), ("zone-b", 5.6), ("zone-c", 5.4)],
            vec![("zone-b", 8), ("zone-c", 8)],
            vec![("zone-b", 2), ("zone-c", 3)],
            vec![("zone-a", 5)],
        ),
        (
            "more allocated than allocations",
            vec![("zone-a", 5.0), ("zone-b", 5.0), ("zone-c", 5.0)],
            vec![("zone-a", 6), ("zone-b", 6), ("zone-c", 6)],
            vec![],
            vec![],
        ),
        (
            "negative allocations",
            vec![("zone-a", -5.0), ("zone-b", -5.0), ("zone-c", -5.0)],
            vec![("zone-a", 6), ("zone-b", 6), ("zone-c", 6)],
            vec![],
            vec![],
        ),
        (
            "negative allocated",
            vec![("zone-a", 5.0), ("zone-b", 5.0), ("zone-c", 5.0)],
            vec![("zone-a", -4), ("zone-b", -3), ("zone-c", -2)],
            vec![],
            vec![],
        ),
        (
            "negative for 1 zone",
            vec![("zone-a", 5.0), ("zone-b", 5.0), ("zone-c", 5.0)],
            vec![("zone-a", -40), ("zone-b", 20), ("zone-c", 20)],
            vec![("zone-b", 15), ("zone-c", 15)],
            vec![("zone-a", 30)],
        ),
    ];
    for (name, desired, allocated, giving, receiving) in cases {
        let (actual_giving, actual_receiving) =
            giving_and_receiving(&zone_map(&desired), &zone_map(&allocated));
        assert_eq!(actual_giving, zone_map(&giving), "{name}: giving");
        assert_eq!(actual_receiving, zone_map(&receiving), "{name}: receiving");
    }
}

/// `redistributeHints` (topologycache/utils.go), on the cases of its in-tree table.
#[test]
fn in_tree_redistribution_table() {
    let own = |ip: &str, zone: &str| {
        let mut e = ready_in(ip, zone);
        e.hints = hint(zone);
        e
    };
    let mut single = [own("10.0.0.1", "zone-a")];
    let changes = redistribute(
        &mut single.iter_mut().collect::<Vec<_>>(),
        zone_map(&[("zone-a", 1)]),
        zone_map(&[("zone-b", 1)]),
    );
    assert_eq!(changes, zone_map(&[("zone-a", -1), ("zone-b", 1)]));
    assert_eq!(hinted_zone(&single[0]), Some("zone-b"));

    let mut three = [
        own("10.0.0.1", "zone-a"),
        own("10.0.0.2", "zone-a"),
        own("10.0.0.3", "zone-a"),
    ];
    let changes = redistribute(
        &mut three.iter_mut().collect::<Vec<_>>(),
        zone_map(&[("zone-a", 2)]),
        zone_map(&[("zone-b", 1), ("zone-c", 1)]),
    );
    assert_eq!(
        changes,
        zone_map(&[("zone-a", -2), ("zone-b", 1), ("zone-c", 1)])
    );
    let hinted: Vec<Option<&str>> = three.iter().map(hinted_zone).collect();
    assert_eq!(hinted, vec![Some("zone-b"), Some("zone-c"), Some("zone-a")]);

    let changes = redistribute(&mut [], BTreeMap::new(), BTreeMap::new());
    assert!(changes.is_empty());
}

/// The messages of topologycache/event.go.
#[test]
fn disabled_reasons_read_as_the_in_tree_events() {
    assert_eq!(
        HintsDisabled::InsufficientNodeInfo.to_string(),
        "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes"
    );
    assert_eq!(
        HintsDisabled::NodesReadyInOneZoneOnly.to_string(),
        "Nodes only ready in one zone"
    );
    assert_eq!(
        HintsDisabled::NoZoneSpecified.to_string(),
        "One or more endpoints do not have a zone specified"
    );
}
