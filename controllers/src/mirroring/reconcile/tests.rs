use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::*;
use crate::fixtures::{endpoints, endpoints_port, service, subset, time};
use crate::mirroring::{DesiredMirroredSlices, MirroringParams, desired_mirrored_slices};
use crate::well_known::{IN_TREE_MIRRORING_MANAGER, SVCPLANE_MIRRORING_MANAGER};

fn selectorless() -> Service {
    service("ext").no_selector().build()
}

fn desired(endpoints: &Endpoints) -> DesiredMirroredSlices {
    desired_mirrored_slices(
        Some(&selectorless()),
        Some(endpoints),
        &MirroringParams::default(),
    )
    .unwrap()
}

/// The in-tree table's Endpoints: two subsets with two ports each.
fn two_subsets() -> crate::fixtures::EndpointsBuilder {
    endpoints("ext").subsets(vec![
        subset(
            vec![
                endpoints_port("http", 80, "TCP"),
                endpoints_port("https", 443, "UDP"),
            ],
            &["10.0.0.1", "10.0.0.2"],
            &[],
        ),
        subset(
            vec![
                endpoints_port("http", 3000, "TCP"),
                endpoints_port("https", 3001, "UDP"),
            ],
            &["10.0.1.1", "10.0.1.2", "10.0.1.3"],
            &[],
        ),
    ])
}

/// What the apiserver would store for a created slice.
fn stored(mut slice: EndpointSlice, name: &str) -> EndpointSlice {
    slice.metadata.generate_name = None;
    slice.metadata.name = Some(name.into());
    slice.metadata.uid = Some(format!("uid-{name}"));
    slice.metadata.resource_version = Some("7".into());
    slice
}

/// The slices a first sync creates, as stored.
fn mirrored(endpoints: &Endpoints) -> Vec<EndpointSlice> {
    plan_mirrored_slices::<EndpointSlice>(&[], Some(&desired(endpoints)))
        .create
        .into_iter()
        .enumerate()
        .map(|(i, s)| stored(s, &format!("ext-{i}")))
        .collect()
}

fn counts(plan: &SlicePlan) -> (usize, usize, usize) {
    (plan.create.len(), plan.update.len(), plan.delete.len())
}

#[test]
fn a_first_sync_creates_one_slice_per_group() {
    let e = two_subsets().build();
    let plan = plan_mirrored_slices::<EndpointSlice>(&[], Some(&desired(&e)));
    assert_eq!(counts(&plan), (2, 0, 0));
    let slice = &plan.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("ext-"));
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.endpoints.as_ref().unwrap().len(), 2);
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()[LABEL_SLICE_MANAGED_BY],
        SVCPLANE_MIRRORING_MANAGER
    );
}

#[test]
fn a_synced_endpoints_needs_no_write() {
    let e = two_subsets().build();
    let existing = mirrored(&e);
    assert!(plan_mirrored_slices(&existing, Some(&desired(&e))).is_empty());
}

#[test]
fn identical_subset_takes_one_action() {
    // In-tree: "existing EndpointSlice identical to subset" -> only the other subset's create.
    let e = two_subsets().build();
    let mut existing = mirrored(&e);
    existing.truncate(1);
    let plan = plan_mirrored_slices(&existing, Some(&desired(&e)));
    assert_eq!(counts(&plan), (1, 0, 0));
    assert_eq!(plan.create[0].ports.as_ref().unwrap()[0].port, Some(3000));
}

#[test]
fn slices_of_the_in_tree_mirroring_controller_are_taken_over_without_a_write() {
    let e = two_subsets().build();
    let mut existing = mirrored(&e);
    for slice in &mut existing {
        slice.metadata.labels.as_mut().unwrap().insert(
            LABEL_SLICE_MANAGED_BY.into(),
            IN_TREE_MIRRORING_MANAGER.into(),
        );
    }
    assert!(plan_mirrored_slices(&existing, Some(&desired(&e))).is_empty());

    // Once written anyway, a taken-over slice carries svcplane's manager.
    let changed = two_subsets().label("team", "payments").build();
    let plan = plan_mirrored_slices(&existing, Some(&desired(&changed)));
    assert_eq!(counts(&plan), (0, 2, 0));
    assert!(plan.update.iter().all(|s| {
        s.metadata.labels.as_ref().unwrap()[LABEL_SLICE_MANAGED_BY] == SVCPLANE_MIRRORING_MANAGER
    }));
}

#[test]
fn order_and_the_targets_resource_version_do_not_count_as_changes() {
    let e = two_subsets().build();
    let mut existing = mirrored(&e);
    for slice in &mut existing {
        slice.endpoints.as_mut().unwrap().reverse();
        slice.ports.as_mut().unwrap().reverse();
        for endpoint in slice.endpoints.as_mut().unwrap() {
            endpoint.target_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
                resource_version: Some("42".into()),
                ..Default::default()
            });
        }
    }
    let mut expected = e.clone();
    for subset in expected.subsets.as_mut().unwrap() {
        for address in subset.addresses.as_mut().unwrap() {
            address.target_ref = Some(Default::default());
        }
    }
    assert!(plan_mirrored_slices(&existing, Some(&desired(&expected))).is_empty());
}

#[test]
fn changed_addresses_update_the_slice_in_place() {
    let e = two_subsets().build();
    let existing = mirrored(&e);
    let moved = endpoints("ext")
        .subsets(vec![
            subset(
                vec![
                    endpoints_port("http", 80, "TCP"),
                    endpoints_port("https", 443, "UDP"),
                ],
                &["10.0.0.1"],
                &["10.0.0.2"],
            ),
            e.subsets.as_ref().unwrap()[1].clone(),
        ])
        .build();
    let plan = plan_mirrored_slices(&existing, Some(&desired(&moved)));
    assert_eq!(counts(&plan), (0, 1, 0));
    let updated = &plan.update[0];
    assert_eq!(updated.metadata.name.as_deref(), Some("ext-0"));
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
    let ready: Vec<Option<bool>> = updated
        .endpoints
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.conditions.as_ref().unwrap().ready)
        .collect();
    assert_eq!(ready, vec![Some(true), Some(false)]);
}

#[test]
fn metadata_changes_update_the_slice() {
    let e = two_subsets().build();
    // In-tree: "same fields but different OwnerReferences" (the Endpoints was re-created).
    let recreated = two_subsets().uid("uid-new").build();
    let plan = plan_mirrored_slices(&mirrored(&e), Some(&desired(&recreated)));
    assert_eq!(counts(&plan), (0, 2, 0));
    assert_eq!(
        plan.update[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-new"
    );

    // In-tree: "existing slice with an additional annotation": the slice mirrors exactly.
    let mut annotated = mirrored(&e);
    annotated[0].metadata.annotations = Some([("foo".to_string(), "bar".to_string())].into());
    let plan = plan_mirrored_slices(&annotated, Some(&desired(&e)));
    assert_eq!(counts(&plan), (0, 1, 0));
    assert_eq!(plan.update[0].metadata.annotations, None);

    let annotated_endpoints = two_subsets().annotation("foo", "bar").build();
    let plan = plan_mirrored_slices(&mirrored(&e), Some(&desired(&annotated_endpoints)));
    assert_eq!(counts(&plan), (0, 2, 0));
}

#[test]
fn a_duplicate_slice_of_a_group_is_deleted() {
    let e = two_subsets().build();
    let mut existing = mirrored(&e);
    let mut duplicate = existing[0].clone();
    duplicate.metadata.name = Some("ext-a-duplicate".into());
    duplicate.endpoints.as_mut().unwrap().pop();
    existing.push(duplicate);
    let plan = plan_mirrored_slices(&existing, Some(&desired(&e)));
    assert_eq!(counts(&plan), (0, 0, 1));
    assert_eq!(
        plan.delete[0].metadata.name.as_deref(),
        Some("ext-a-duplicate")
    );
}

#[test]
fn a_slice_whose_ports_went_away_is_recycled_for_the_new_ports() {
    let e = two_subsets().build();
    let existing = mirrored(&e);
    let renumbered = endpoints("ext")
        .subsets(vec![
            e.subsets.as_ref().unwrap()[0].clone(),
            subset(
                vec![endpoints_port("grpc", 9000, "TCP")],
                &["10.0.1.1"],
                &[],
            ),
        ])
        .build();
    let plan = plan_mirrored_slices(&existing, Some(&desired(&renumbered)));
    assert_eq!(counts(&plan), (0, 1, 0));
    let recycled = &plan.update[0];
    assert_eq!(recycled.metadata.name.as_deref(), Some("ext-1"));
    assert_eq!(recycled.ports.as_ref().unwrap()[0].port, Some(9000));
}

#[test]
fn recycling_stays_within_an_address_type() {
    let v4 = endpoints("ext")
        .subsets(vec![subset(
            vec![endpoints_port("http", 80, "TCP")],
            &["10.0.0.1"],
            &[],
        )])
        .build();
    let v6 = endpoints("ext")
        .subsets(vec![subset(
            vec![endpoints_port("http", 80, "TCP")],
            &["fd00::1"],
            &[],
        )])
        .build();
    let plan = plan_mirrored_slices(&mirrored(&v4), Some(&desired(&v6)));
    assert_eq!(counts(&plan), (1, 0, 1));
    assert_eq!(plan.create[0].address_type, "IPv6");
}

#[test]
fn when_mirroring_stops_every_mirrored_slice_is_deleted() {
    let e = two_subsets().build();
    let mut existing = mirrored(&e);
    existing[1].metadata.deletion_timestamp = Some(time(1_700_000_000));
    let plan = plan_mirrored_slices(&existing, None);
    assert_eq!(counts(&plan), (0, 0, 1));
    assert_eq!(plan.delete[0].metadata.name.as_deref(), Some("ext-0"));

    let emptied = endpoints("ext").build();
    let plan = plan_mirrored_slices(&mirrored(&e), Some(&desired(&emptied)));
    assert_eq!(counts(&plan), (0, 0, 2));
}

#[test]
fn nothing_is_created_for_an_endpoints_being_deleted() {
    let e = two_subsets().deleting().build();
    let plan = plan_mirrored_slices::<EndpointSlice>(&[], Some(&desired(&e)));
    assert!(plan.is_empty());
    let mut existing = mirrored(&two_subsets().build());
    existing.truncate(1);
    existing[0].endpoints.as_mut().unwrap().pop();
    let plan = plan_mirrored_slices(&existing, Some(&desired(&e)));
    assert_eq!(counts(&plan), (0, 1, 0));
}
