use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

use super::*;
use crate::fixtures::{
    NS, endpoints, endpoints_address, endpoints_port, labels, service, subset, targeting,
};

fn selectorless() -> Service {
    service("ext").no_selector().build()
}

fn mirror(endpoints: &Endpoints) -> DesiredMirroredSlices {
    desired_mirrored_slices(
        Some(&selectorless()),
        Some(endpoints),
        &MirroringParams::default(),
    )
    .unwrap()
}

fn mirror_with_cap(endpoints: &Endpoints, cap: i64) -> DesiredMirroredSlices {
    let params = MirroringParams {
        max_endpoints_per_subset: MaxEndpointsPerSlice::new(cap).unwrap(),
    };
    desired_mirrored_slices(Some(&selectorless()), Some(endpoints), &params).unwrap()
}

fn port(name: &str, number: i32, protocol: &str) -> EndpointPort {
    EndpointPort {
        name: Some(name.into()),
        port: Some(number),
        protocol: Some(protocol.into()),
        app_protocol: None,
    }
}

fn addresses(group: &EndpointGroup) -> Vec<&str> {
    group
        .endpoints
        .iter()
        .map(|e| e.addresses[0].as_str())
        .collect()
}

/// The two port sets of the in-tree reconciler tables.
fn web_ports() -> Vec<k8s_openapi::api::core::v1::EndpointPort> {
    vec![
        endpoints_port("http", 80, "TCP"),
        endpoints_port("https", 443, "UDP"),
    ]
}

fn app_ports() -> Vec<k8s_openapi::api::core::v1::EndpointPort> {
    vec![
        endpoints_port("http", 3000, "TCP"),
        endpoints_port("https", 3001, "UDP"),
    ]
}

#[test]
fn an_address_becomes_a_ready_endpoint_with_only_the_ready_condition() {
    let address = targeting(endpoints_address("10.0.0.1"), "db-0", "uid-db-0");
    let mut subset = subset(vec![endpoints_port("http", 80, "TCP")], &[], &[]);
    subset.addresses = Some(vec![address]);
    let desired = mirror(&endpoints("ext").subsets(vec![subset]).build());
    assert_eq!(desired.groups.len(), 1);
    let group = &desired.groups[0];
    assert_eq!(group.address_type, IpFamily::V4);
    assert_eq!(group.ports, vec![port("http", 80, "TCP")]);
    assert_eq!(
        group.endpoints,
        vec![Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: None,
                terminating: None,
            }),
            hostname: Some("host-1".into()),
            node_name: Some("node-1".into()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(NS.into()),
                name: Some("db-0".into()),
                uid: Some("uid-db-0".into()),
                ..Default::default()
            }),
            ..Default::default()
        }]
    );
    assert!(desired.events.is_empty());
    assert_eq!(desired.addresses_skipped, 0);
}

#[test]
fn not_ready_addresses_are_not_ready_endpoints() {
    let e = endpoints("ext")
        .subsets(vec![subset(
            web_ports(),
            &["10.1.1.1"],
            &["10.0.0.1", "10.0.0.2"],
        )])
        .build();
    let desired = mirror(&e);
    let ready: BTreeMap<&str, Option<bool>> = desired.groups[0]
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].as_str(),
                e.conditions.as_ref().unwrap().ready,
            )
        })
        .collect();
    assert_eq!(
        ready,
        BTreeMap::from([
            ("10.0.0.1", Some(false)),
            ("10.0.0.2", Some(false)),
            ("10.1.1.1", Some(true)),
        ])
    );
}

#[test]
fn dual_stack_subsets_give_one_slice_per_family_and_port_set() {
    // In-tree: "Endpoints with 2 subsets, multiple ports, and dual stack addresses" -> 4 slices.
    let e = endpoints("ext")
        .subsets(vec![
            subset(
                web_ports(),
                &["2001:db8:2222:3333:4444:5555:6666:7777", "10.0.0.2"],
                &[],
            ),
            subset(
                app_ports(),
                &[
                    "10.0.1.1",
                    "10.0.1.2",
                    "2001:db8:3333:4444:5555:6666:7777:8888",
                ],
                &[],
            ),
        ])
        .build();
    let desired = mirror(&e);
    let shape: Vec<(IpFamily, i32, Vec<&str>)> = desired
        .groups
        .iter()
        .map(|g| (g.address_type, g.ports[0].port.unwrap(), addresses(g)))
        .collect();
    assert_eq!(
        shape,
        vec![
            (IpFamily::V4, 80, vec!["10.0.0.2"]),
            (IpFamily::V4, 3000, vec!["10.0.1.1", "10.0.1.2"]),
            (
                IpFamily::V6,
                80,
                vec!["2001:db8:2222:3333:4444:5555:6666:7777"]
            ),
            (
                IpFamily::V6,
                3000,
                vec!["2001:db8:3333:4444:5555:6666:7777:8888"]
            ),
        ]
    );
}

#[test]
fn ipv6_only_subsets_give_ipv6_slices_only() {
    let e = endpoints("ext")
        .subsets(vec![
            subset(web_ports(), &["2001:db8:1111::1", "2001:db8:2222::1"], &[]),
            subset(app_ports(), &["2001:db8:3333::1"], &[]),
        ])
        .build();
    let desired = mirror(&e);
    assert_eq!(desired.groups.len(), 2);
    assert!(
        desired
            .groups
            .iter()
            .all(|g| g.address_type == IpFamily::V6)
    );
}

#[test]
fn invalid_ips_are_skipped_with_an_event() {
    // In-tree: "Endpoints with 2 subsets, multiple ports, some invalid addresses".
    let e = endpoints("ext")
        .subsets(vec![
            subset(
                web_ports(),
                &[
                    "2001:db8:1111:3333:4444:5555:6666:7777",
                    "this-is-not-an-ip",
                ],
                &[],
            ),
            subset(
                app_ports(),
                &[
                    "this-is-also-not-an-ip",
                    "2001:db8:4444:3333:4444:5555:6666:7777",
                    "2001:db8:5555:3333:4444:5555:6666:7777",
                ],
                &[],
            ),
        ])
        .build();
    let desired = mirror(&e);
    let mirrored: usize = desired.groups.iter().map(|g| g.endpoints.len()).sum();
    assert_eq!((desired.groups.len(), mirrored), (2, 3));
    assert_eq!(desired.addresses_skipped, 2);
    assert_eq!(
        desired.events,
        vec![MirroringEvent {
            reason: REASON_INVALID_IP_ADDRESS,
            message: "Skipped 2 invalid IP addresses when mirroring to EndpointSlices".into(),
        }]
    );
}

#[test]
fn only_invalid_ips_mirror_nothing() {
    let e = endpoints("ext")
        .subsets(vec![
            subset(web_ports(), &["not-an-ip-1", "not-an-ip-2"], &[]),
            subset(
                app_ports(),
                &["not-an-ip-11", "not-an-ip-12"],
                &["not-an-ip-3"],
            ),
        ])
        .build();
    let desired = mirror(&e);
    assert!(desired.groups.is_empty());
    assert_eq!(desired.addresses_skipped, 5);
    assert_eq!(desired.events.len(), 1);
    assert_eq!(desired.events[0].reason, REASON_INVALID_IP_ADDRESS);
}

#[test]
fn a_subset_over_the_cap_is_cut_with_an_event() {
    // In-tree: "Endpoints with 2 subsets, 1 exceeding maxEndpointsPerSubset" (cap 2).
    let e = endpoints("ext")
        .subsets(vec![
            subset(web_ports(), &["10.0.0.1", "10.0.0.2"], &[]),
            subset(app_ports(), &["10.0.1.1", "10.0.1.2", "10.0.1.3"], &[]),
        ])
        .build();
    let desired = mirror_with_cap(&e, 2);
    let shape: Vec<Vec<&str>> = desired.groups.iter().map(addresses).collect();
    assert_eq!(
        shape,
        vec![vec!["10.0.0.1", "10.0.0.2"], vec!["10.0.1.1", "10.0.1.2"]]
    );
    assert_eq!(desired.addresses_skipped, 1);
    assert_eq!(
        desired.events,
        vec![MirroringEvent {
            reason: REASON_TOO_MANY_ADDRESSES_TO_MIRROR,
            message: "A max of 2 addresses can be mirrored to EndpointSlices per Endpoints subset. 1 addresses were skipped".into(),
        }]
    );
}

#[test]
fn over_a_thousand_addresses_keep_the_ready_ones_first() {
    let ready: Vec<String> = (0..1000)
        .map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256))
        .collect();
    let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
    let e = endpoints("ext")
        .subsets(vec![subset(
            web_ports(),
            &ready,
            &["10.255.0.1", "10.255.0.2"],
        )])
        .build();
    let desired = mirror(&e);
    let group = &desired.groups[0];
    assert_eq!(group.endpoints.len(), 1000);
    assert!(
        group
            .endpoints
            .iter()
            .all(|e| e.conditions.as_ref().unwrap().ready == Some(true))
    );
    assert_eq!(desired.addresses_skipped, 2);
    assert_eq!(
        desired.events[0].reason,
        REASON_TOO_MANY_ADDRESSES_TO_MIRROR
    );
    assert!(
        desired.events[0]
            .message
            .starts_with("A max of 1000 addresses")
    );
}

#[test]
fn subsets_are_repacked_before_mirroring() {
    // In-tree: the same address under two port sets is one slice with both ports; two subsets
    // with the same port are one slice with both addresses.
    let same_address = endpoints("ext")
        .subsets(vec![
            subset(vec![endpoints_port("http", 80, "TCP")], &["10.0.0.1"], &[]),
            subset(
                vec![endpoints_port("https", 443, "TCP")],
                &["10.0.0.1"],
                &[],
            ),
        ])
        .build();
    let desired = mirror(&same_address);
    assert_eq!(desired.groups.len(), 1);
    assert_eq!(
        desired.groups[0].ports,
        vec![port("http", 80, "TCP"), port("https", 443, "TCP")]
    );

    let same_port = endpoints("ext")
        .subsets(vec![
            subset(vec![endpoints_port("http", 80, "TCP")], &["10.0.0.1"], &[]),
            subset(vec![endpoints_port("http", 80, "TCP")], &["10.0.0.2"], &[]),
        ])
        .build();
    let desired = mirror(&same_port);
    assert_eq!(desired.groups.len(), 1);
    assert_eq!(addresses(&desired.groups[0]), vec!["10.0.0.1", "10.0.0.2"]);
}

#[test]
fn not_ready_wins_and_portless_subsets_are_kept() {
    let e = endpoints("ext")
        .subsets(vec![
            subset(vec![endpoints_port("http", 80, "TCP")], &["10.0.0.1"], &[]),
            subset(vec![endpoints_port("http", 80, "TCP")], &[], &["10.0.0.1"]),
            subset(vec![], &["10.0.0.9"], &[]),
        ])
        .build();
    let desired = mirror(&e);
    let shape: Vec<(usize, Vec<&str>, Option<bool>)> = desired
        .groups
        .iter()
        .map(|g| {
            (
                g.ports.len(),
                addresses(g),
                g.endpoints[0].conditions.as_ref().unwrap().ready,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, vec!["10.0.0.9"], Some(true)),
            (1, vec!["10.0.0.1"], Some(false)),
        ]
    );
}

#[test]
fn irregular_ips_are_respelled_and_mapped_ipv4_counts_as_ipv4() {
    let e = endpoints("ext")
        .subsets(vec![subset(
            web_ports(),
            &["010.000.000.001", "::ffff:10.0.0.2", "2001:0db8:0000::0001"],
            &[],
        )])
        .build();
    let desired = mirror(&e);
    let shape: Vec<(IpFamily, Vec<&str>)> = desired
        .groups
        .iter()
        .map(|g| (g.address_type, addresses(g)))
        .collect();
    assert_eq!(
        shape,
        vec![
            (IpFamily::V4, vec!["10.0.0.1", "10.0.0.2"]),
            (IpFamily::V6, vec!["2001:db8::1"]),
        ]
    );
}

#[test]
fn labels_and_annotations_are_copied_except_the_two_excluded() {
    let e = endpoints("ext")
        .label("team", "payments")
        .label(LABEL_SERVICE_NAME, "someone-else")
        .label(LABEL_SLICE_MANAGED_BY, "a-user")
        .annotation("owner", "ops@example.com")
        .annotation(ANNOTATION_LAST_CHANGE_TRIGGER_TIME, "2018-01-01T00:00:00Z")
        .annotation(ANNOTATION_LAST_APPLIED_CONFIGURATION, "{}")
        .subsets(vec![subset(web_ports(), &["10.0.0.1"], &[])])
        .build();
    let meta = mirror(&e).metadata;
    assert_eq!(
        meta.labels,
        Some(labels(&[
            ("team", "payments"),
            (LABEL_SERVICE_NAME, "ext"),
            (LABEL_SLICE_MANAGED_BY, SVCPLANE_MIRRORING_MANAGER),
        ]))
    );
    assert_eq!(
        meta.annotations,
        Some(labels(&[("owner", "ops@example.com")]))
    );
    assert_eq!(meta.generate_name.as_deref(), Some("ext-"));
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    assert_eq!(
        meta.owner_references,
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            name: "ext".into(),
            uid: "uid-ext-endpoints".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );

    let only_excluded = endpoints("ext")
        .annotation(ANNOTATION_LAST_APPLIED_CONFIGURATION, "{}")
        .build();
    assert_eq!(mirror(&only_excluded).metadata.annotations, None);
}

#[test]
fn when_mirroring_applies() {
    let svc = selectorless();
    let user = endpoints("ext").build();
    assert_eq!(should_mirror(Some(&svc), Some(&user)), Ok(()));
    assert_eq!(
        should_mirror(Some(&svc), None),
        Err(SkipReason::EndpointsMissing)
    );
    assert_eq!(
        should_mirror(None, Some(&user)),
        Err(SkipReason::ServiceMissing)
    );
    let with_selector = service("ext").build();
    assert_eq!(
        should_mirror(Some(&with_selector), Some(&user)),
        Err(SkipReason::ServiceHasSelector)
    );
    let skip = endpoints("ext").label(LABEL_SKIP_MIRROR, "true").build();
    assert_eq!(
        should_mirror(Some(&svc), Some(&skip)),
        Err(SkipReason::SkipMirrorLabel)
    );
    let not_skip = endpoints("ext").label(LABEL_SKIP_MIRROR, "false").build();
    assert_eq!(should_mirror(Some(&svc), Some(&not_skip)), Ok(()));
    let lock = endpoints("ext")
        .annotation(ANNOTATION_LEADER_ELECTION, "{}")
        .build();
    assert_eq!(
        should_mirror(Some(&svc), Some(&lock)),
        Err(SkipReason::LeaderElection)
    );
    for manager in [IN_TREE_ENDPOINTS_MANAGER, SVCPLANE_ENDPOINTS_MANAGER] {
        let managed = endpoints("ext")
            .label(LABEL_ENDPOINTS_MANAGED_BY, manager)
            .build();
        assert_eq!(
            should_mirror(Some(&svc), Some(&managed)),
            Err(SkipReason::ManagedByController(manager.into()))
        );
    }
    let tool = endpoints("ext")
        .label(LABEL_ENDPOINTS_MANAGED_BY, "my-operator")
        .build();
    assert_eq!(should_mirror(Some(&svc), Some(&tool)), Ok(()));
    assert_eq!(endpoints_mirrorable(&tool), Ok(()));
    assert_eq!(endpoints_mirrorable(&lock), Err(SkipReason::LeaderElection));
    assert_eq!(
        desired_mirrored_slices(Some(&svc), Some(&skip), &MirroringParams::default()),
        Err(SkipReason::SkipMirrorLabel)
    );
    assert_eq!(
        SkipReason::SkipMirrorLabel.to_string(),
        "the Endpoints is labelled endpointslice.kubernetes.io/skip-mirror=true"
    );
}

#[test]
fn an_endpoints_being_deleted_is_flagged_and_empty_subsets_mirror_nothing() {
    let e = endpoints("ext")
        .uid("uid-other")
        .deleting()
        .subsets(vec![subset(web_ports(), &[], &[])])
        .build();
    let desired = mirror(&e);
    assert!(desired.endpoints_being_deleted);
    assert!(desired.groups.is_empty());
    assert_eq!(
        desired.metadata.owner_references.unwrap()[0].uid,
        "uid-other"
    );
}
