use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::super::desired::{desired_endpoint_slices, new_slice};
use super::super::identity::EndpointKey;
use super::*;
use crate::fixtures::{Cluster, labels, node, pod, service, service_port, time};
use crate::pods::PodInfo;

const MANAGER: &str = "endpointslice.svcplane.io";

fn nodes() -> Vec<Node> {
    vec![node("node-1", None)]
}

/// Pods in the in-tree tests' shape: every third one not ready.
fn pods(count: usize) -> Vec<PodInfo> {
    (0..count).map(|i| numbered_pod(i, i % 3 != 0)).collect()
}

fn numbered_pod(i: usize, ready: bool) -> PodInfo {
    pod(
        &format!("pod{i}"),
        &format!("10.1.{}.{}", i / 250, i % 250 + 1),
    )
    .label("app", "foo")
    .ready(ready)
    .build()
}

fn desired(svc: &Service, pods: &[PodInfo]) -> DesiredEndpointSlices {
    let nodes = nodes();
    desired_endpoint_slices(svc, pods, |name: &str| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .cloned()
    })
    .unwrap()
}

fn params(max: i64) -> SliceParams<'static> {
    SliceParams {
        managed_by: MANAGER,
        max_endpoints_per_slice: MaxEndpointsPerSlice::new(max).unwrap(),
        trigger_time: None,
    }
}

fn plan(svc: &Service, existing: &[EndpointSlice], pods: &[PodInfo], max: i64) -> SlicePlan {
    plan_endpoint_slices(svc, existing, &desired(svc, pods), &params(max))
}

/// The endpoint a pod should have in `svc`'s slices.
fn endpoint_of(svc: &Service, pod: &PodInfo) -> Endpoint {
    let d = desired(svc, std::slice::from_ref(pod));
    d.groups[0].endpoints[0].clone()
}

/// An existing slice of `svc` (IPv4, ports of the default `http` port) holding these pods.
fn stored_slice(svc: &Service, name: &str, members: &[&PodInfo]) -> EndpointSlice {
    let ports = desired(svc, &[numbered_pod(0, true)]).groups[0]
        .ports
        .clone();
    let mut slice = new_slice(svc, IpFamily::V4, ports, MANAGER);
    slice.metadata.name = Some(name.into());
    slice.metadata.generate_name = None;
    slice.metadata.uid = Some(format!("uid-{name}"));
    slice.metadata.generation = Some(1);
    slice.metadata.resource_version = Some("1".into());
    slice.endpoints = Some(members.iter().map(|p| endpoint_of(svc, p)).collect());
    slice
}

fn counts(plan: &SlicePlan) -> (usize, usize, usize) {
    (plan.create.len(), plan.update.len(), plan.delete.len())
}

fn sorted(mut lengths: Vec<usize>) -> Vec<usize> {
    lengths.sort();
    lengths
}

fn lengths_of(slices: &[EndpointSlice]) -> Vec<usize> {
    sorted(slices.iter().map(|s| endpoints_of(s).len()).collect())
}

#[test]
fn max_endpoints_per_slice_is_checked() {
    assert_eq!(MaxEndpointsPerSlice::default().get(), 100);
    assert_eq!(MaxEndpointsPerSlice::new(1).unwrap().get(), 1);
    assert_eq!(MaxEndpointsPerSlice::new(1000).unwrap().get(), 1000);
    assert_eq!(
        MaxEndpointsPerSlice::new(0),
        Err(Error::MaxEndpointsPerSliceOutOfRange(0))
    );
    assert_eq!(
        MaxEndpointsPerSlice::new(1001),
        Err(Error::MaxEndpointsPerSliceOutOfRange(1001))
    );
    assert_eq!(
        "250".parse::<MaxEndpointsPerSlice>().unwrap().to_string(),
        "250"
    );
    assert_eq!(
        "lots".parse::<MaxEndpointsPerSlice>(),
        Err(Error::MaxEndpointsPerSliceNotANumber("lots".into()))
    );
}

#[test]
fn no_endpoints_creates_one_placeholder() {
    let svc = service("foo").build();
    let planned = plan(&svc, &[], &[], 100);
    assert_eq!(counts(&planned), (1, 0, 0));
    let placeholder = &planned.create[0];
    assert_eq!(placeholder.endpoints, Some(vec![]));
    assert_eq!(placeholder.ports, Some(vec![]));
    assert_eq!(placeholder.address_type, "IPv4");
    assert_eq!(placeholder.metadata.generate_name.as_deref(), Some("foo-"));
    assert_eq!(
        placeholder.metadata.labels,
        Some(labels(&[
            ("kubernetes.io/service-name", "foo"),
            ("endpointslice.kubernetes.io/managed-by", MANAGER)
        ]))
    );
}

#[test]
fn an_identical_placeholder_is_left_alone() {
    let svc = service("foo").build();
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &[], 100));
    assert!(plan(&svc, &cluster.slices, &[], 100).is_empty());
}

#[test]
fn a_different_placeholder_is_updated_not_replaced() {
    let svc = service("foo").build();
    let mut stale = stored_slice(&svc, "foo-old", &[]);
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("bar".into(), "baz".into());
    let planned = plan(&svc, std::slice::from_ref(&stale), &[], 100);
    assert_eq!(counts(&planned), (0, 1, 0));
    let updated = &planned.update[0];
    assert_eq!(updated.metadata.name.as_deref(), Some("foo-old"));
    assert_eq!(updated.ports, Some(vec![]));
    assert_eq!(updated.metadata.labels.as_ref().unwrap().get("bar"), None);
}

#[test]
fn only_one_placeholder_survives() {
    let svc = service("foo").build();
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &[], 100));
    cluster.apply(&SlicePlan {
        create: plan(&svc, &[], &[], 100).create,
        ..Default::default()
    });
    assert_eq!(cluster.slices.len(), 2);
    let planned = plan(&svc, &cluster.slices, &[], 100);
    assert_eq!(counts(&planned), (0, 0, 1));
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![0]);
}

#[test]
fn placeholder_is_dropped_when_endpoints_appear() {
    let svc = service("foo").build();
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &[], 100));
    let planned = plan(&svc, &cluster.slices, &pods(3), 100);
    assert_eq!(
        counts(&planned),
        (0, 1, 0),
        "the placeholder is recycled into the new slice"
    );
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![3]);
}

#[test]
fn an_empty_slice_is_reused_rather_than_left_beside_endpoints() {
    let svc = service("foo").headless().no_ports().build();
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &[], 100));
    let planned = plan(&svc, &cluster.slices, &pods(100), 100);
    assert_eq!(counts(&planned), (0, 1, 0));
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![100]);
}

#[test]
fn many_pods_fill_slices_completely() {
    let svc = service("foo").build();
    let planned = plan(&svc, &[], &pods(250), 100);
    assert_eq!(counts(&planned), (3, 0, 0));
    assert_eq!(lengths_of(&planned.create), vec![50, 100, 100]);
}

#[test]
fn publish_not_ready_makes_every_endpoint_ready() {
    let svc = service("foo").publish_not_ready().build();
    let planned = plan(&svc, &[], &pods(50), 100);
    assert_eq!(counts(&planned), (1, 0, 0));
    assert!(
        endpoints_of(&planned.create[0])
            .iter()
            .all(|e| e.conditions.as_ref().unwrap().ready == Some(true))
    );
}

#[test]
fn remainder_goes_into_the_slice_it_leaves_closest_to_full() {
    let svc = service("foo").build();
    let pods = pods(250);
    let first: Vec<&PodInfo> = pods.iter().skip(1).step_by(4).take(62).collect();
    let second: Vec<&PodInfo> = pods.iter().skip(3).step_by(4).take(61).collect();
    let existing = vec![
        stored_slice(&svc, "foo-1", &first),
        stored_slice(&svc, "foo-2", &second),
    ];

    let planned = plan(&svc, &existing, &pods, 100);

    assert_eq!(counts(&planned), (1, 1, 0));
    assert_eq!(planned.update[0].metadata.name.as_deref(), Some("foo-1"));
    let mut cluster = Cluster::with(existing);
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![61, 89, 100]);
}

#[test]
fn a_remainder_that_fits_nowhere_gets_its_own_slice() {
    let svc = service("foo").build();
    let pods = pods(300);
    let first: Vec<&PodInfo> = pods.iter().skip(1).step_by(4).take(74).collect();
    let second: Vec<&PodInfo> = pods.iter().skip(3).step_by(4).take(74).collect();
    let existing = vec![
        stored_slice(&svc, "foo-1", &first),
        stored_slice(&svc, "foo-2", &second),
    ];

    let planned = plan(&svc, &existing, &pods, 100);

    assert_eq!(counts(&planned), (2, 0, 0));
    let mut cluster = Cluster::with(existing);
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![52, 74, 74, 100]);
}

fn with_target_port(port: i32) -> Service {
    service("foo")
        .ports(vec![service_port("http", 80, IntOrString::Int(port))])
        .build()
}

#[test]
fn a_port_change_updates_every_slice_in_place() {
    let pods = pods(250);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&with_target_port(8080), &[], &pods, 100));
    let names: Vec<_> = cluster
        .slices
        .iter()
        .map(|s| s.metadata.name.clone())
        .collect();

    let planned = plan(&with_target_port(81), &cluster.slices, &pods, 100);

    assert_eq!(counts(&planned), (0, 3, 0));
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![50, 100, 100]);
    assert_eq!(
        cluster
            .slices
            .iter()
            .map(|s| s.metadata.name.clone())
            .collect::<Vec<_>>(),
        names
    );
    assert!(
        cluster
            .slices
            .iter()
            .all(|s| s.ports.as_ref().unwrap()[0].port == Some(81))
    );
}

#[test]
fn a_service_label_change_updates_every_slice_in_place() {
    let pods = pods(250);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&service("foo").build(), &[], &pods, 100));

    let relabelled = service("foo").label("foo", "bar").build();
    let planned = plan(&relabelled, &cluster.slices, &pods, 100);
    assert_eq!(counts(&planned), (0, 3, 0));
    cluster.apply(&planned);
    assert!(
        cluster
            .slices
            .iter()
            .all(|s| s.metadata.labels.as_ref().unwrap().get("foo") == Some(&"bar".to_string()))
    );
}

#[test]
fn reserved_service_labels_change_nothing() {
    let pods = pods(250);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&service("foo").build(), &[], &pods, 100));
    let spoofing = service("foo")
        .label("kubernetes.io/service-name", "bad")
        .label("endpointslice.kubernetes.io/managed-by", "actor")
        .label("service.kubernetes.io/headless", "invalid")
        .build();
    assert!(plan(&spoofing, &cluster.slices, &pods, 100).is_empty());
}

#[test]
fn slices_are_never_rebalanced_but_recycled_when_rewritten() {
    let pods = pods(300);
    let svc = with_target_port(8080);
    let existing: Vec<EndpointSlice> = pods
        .chunks(30)
        .enumerate()
        .map(|(i, chunk)| {
            stored_slice(
                &svc,
                &format!("foo-{i:02}"),
                &chunk.iter().collect::<Vec<_>>(),
            )
        })
        .collect();
    assert!(
        plan(&svc, &existing, &pods, 100).is_empty(),
        "ten slices of 30 are left as they are"
    );

    let planned = plan(&with_target_port(81), &existing, &pods, 100);
    assert_eq!(counts(&planned), (0, 3, 7));
    let mut cluster = Cluster::with(existing);
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![100, 100, 100]);
}

#[test]
fn new_endpoints_fill_slices_already_being_updated_fullest_first() {
    let svc = service("foo").build();
    let mut all: Vec<PodInfo> = (0..80)
        .chain(100..120)
        .map(|i| numbered_pod(i, true))
        .collect();
    let first: Vec<&PodInfo> = all[..80].iter().collect();
    let second: Vec<&PodInfo> = all[80..].iter().collect();
    let existing = vec![
        stored_slice(&svc, "foo-1", &first),
        stored_slice(&svc, "foo-2", &second),
    ];
    for (i, p) in all.iter_mut().enumerate() {
        if i % 10 == 0 {
            *p = numbered_pod(if i < 80 { i } else { i + 20 }, false);
        }
    }
    all.extend((200..215).map(|i| numbered_pod(i, true)));

    let planned = plan(&svc, &existing, &all, 100);

    assert_eq!(counts(&planned), (0, 2, 0));
    let mut cluster = Cluster::with(existing);
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![20, 95]);
}

#[test]
fn deprecated_address_type_slices_are_replaced() {
    let svc = service("foo").build();
    let pods: Vec<PodInfo> = (0..80)
        .chain(100..150)
        .map(|i| numbered_pod(i, true))
        .collect();
    let mut first = stored_slice(&svc, "foo-1", &pods[..80].iter().collect::<Vec<_>>());
    let mut second = stored_slice(&svc, "foo-2", &pods[80..].iter().collect::<Vec<_>>());
    first.address_type = "IP".into();
    second.address_type = "IP".into();
    let existing = vec![first, second];

    let planned = plan(&svc, &existing, &pods, 100);

    assert_eq!(counts(&planned), (2, 0, 2));
    let mut cluster = Cluster::with(existing);
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![30, 100]);
    assert!(cluster.slices.iter().all(|s| s.address_type == "IPv4"));
}

#[test]
fn slices_of_another_service_uid_are_replaced_not_reused() {
    let svc = service("foo").build();
    let pod = numbered_pod(1, true);
    let owned = stored_slice(&svc, "foo-1", &[&pod]);
    assert!(
        plan(
            &svc,
            std::slice::from_ref(&owned),
            std::slice::from_ref(&pod),
            100
        )
        .is_empty()
    );

    let mut orphan = owned.clone();
    orphan.metadata.owner_references.as_mut().unwrap()[0].uid = "different".into();
    let planned = plan(
        &svc,
        std::slice::from_ref(&orphan),
        std::slice::from_ref(&pod),
        100,
    );
    assert_eq!(counts(&planned), (1, 0, 1));
    assert_eq!(planned.delete[0].metadata.name.as_deref(), Some("foo-1"));
}

#[test]
fn named_ports_resolving_differently_make_one_slice_per_port() {
    let svc = service("foo")
        .ports(vec![service_port(
            "",
            80,
            IntOrString::String("http".into()),
        )])
        .build();
    let pods: Vec<PodInfo> = (0..300)
        .map(|i| {
            pod(
                &format!("pod{i}"),
                &format!("10.1.{}.{}", i / 250, i % 250 + 1),
            )
            .label("app", "foo")
            .ready(i % 3 != 0)
            .container_port("http", 8080 + i % 5, "TCP")
            .build()
        })
        .collect();
    let planned = plan(&svc, &[], &pods, 100);
    assert_eq!(counts(&planned), (5, 0, 0));
    let mut shapes: Vec<(Option<i32>, usize)> = planned
        .create
        .iter()
        .map(|s| (s.ports.as_ref().unwrap()[0].port, endpoints_of(s).len()))
        .collect();
    shapes.sort();
    assert_eq!(
        shapes,
        (0..5).map(|i| (Some(8080 + i), 60)).collect::<Vec<_>>()
    );
}

#[test]
fn max_endpoints_per_slice_sets_the_slice_sizes() {
    let svc = service("foo").build();
    let pods = pods(250);
    for (max, want) in [
        (50, vec![50, 50, 50, 50, 50]),
        (80, vec![10, 80, 80, 80]),
        (150, vec![100, 150]),
        (250, vec![250]),
        (500, vec![250]),
    ] {
        let planned = plan(&svc, &[], &pods, max);
        assert_eq!(planned.writes(), want.len(), "max {max}");
        assert_eq!(lengths_of(&planned.create), want, "max {max}");
    }
}

#[test]
fn removing_pods_updates_in_place() {
    let svc = service("foo").build();
    let pods = pods(20);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &pods, 100));
    let planned = plan(&svc, &cluster.slices, &pods[..10], 100);
    assert_eq!(counts(&planned), (0, 1, 0));
    cluster.apply(&planned);
    assert_eq!(cluster.lengths(), vec![10]);
}

#[test]
fn a_readiness_flip_rewrites_only_its_slice() {
    let svc = service("foo").build();
    let mut pods = pods(250);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &pods, 100));
    pods[7] = numbered_pod(7, !pods[7].ready);
    let planned = plan(&svc, &cluster.slices, &pods, 100);
    assert_eq!(counts(&planned), (0, 1, 0));
    let before: BTreeMap<_, _> = cluster
        .slices
        .iter()
        .map(|s| (s.metadata.name.clone(), endpoints_of(s).len()))
        .collect();
    cluster.apply(&planned);
    let after: BTreeMap<_, _> = cluster
        .slices
        .iter()
        .map(|s| (s.metadata.name.clone(), endpoints_of(s).len()))
        .collect();
    assert_eq!(before, after, "no endpoint moved");
}

#[test]
fn nothing_is_created_for_a_service_being_deleted() {
    let deleting = service("foo").deleting().build();
    assert!(plan(&deleting, &[], &pods(10), 100).is_empty());

    let svc = service("foo").build();
    let pods = pods(10);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&svc, &[], &pods, 100));
    let planned = plan(&deleting, &cluster.slices, &pods[..5], 100);
    assert_eq!(counts(&planned), (0, 1, 0), "updates still go through");
}

#[test]
fn recycling_still_applies_to_a_service_being_deleted() {
    let pods = pods(10);
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&with_target_port(8080), &[], &pods, 100));
    let deleting = service("foo")
        .ports(vec![service_port("http", 80, IntOrString::Int(81))])
        .deleting()
        .build();
    assert_eq!(
        counts(&plan(&deleting, &cluster.slices, &pods, 100)),
        (0, 1, 0)
    );
}

#[test]
fn endpoints_on_a_missing_node_are_removed_and_the_slice_kept_as_placeholder() {
    let svc = service("foo").build();
    let pods = pods(2);
    let existing = vec![stored_slice(
        &svc,
        "foo-1",
        &pods.iter().collect::<Vec<_>>(),
    )];
    let no_nodes = desired_endpoint_slices(&svc, &pods, |_: &str| None::<Node>).unwrap();
    assert!(no_nodes.needs_retry());

    let planned = plan_endpoint_slices(&svc, &existing, &no_nodes, &params(100));

    assert_eq!(counts(&planned), (0, 1, 0));
    assert_eq!(planned.update[0].metadata.name.as_deref(), Some("foo-1"));
    assert_eq!(planned.update[0].endpoints, Some(vec![]));
    assert_eq!(planned.update[0].ports, Some(vec![]));
}

#[test]
fn dual_stack_gets_slices_per_family_and_loses_a_dropped_family() {
    let dual = service("foo").families(&["IPv4", "IPv6"]).build();
    let pods: Vec<PodInfo> = (0..3)
        .map(|i| {
            pod(&format!("pod{i}"), &format!("10.1.0.{i}"))
                .ip(&format!("fd00::{i}"))
                .label("app", "foo")
                .build()
        })
        .collect();
    let mut cluster = Cluster::default();
    cluster.apply(&plan(&dual, &[], &pods, 100));
    let mut types: Vec<&str> = cluster
        .slices
        .iter()
        .map(|s| s.address_type.as_str())
        .collect();
    types.sort();
    assert_eq!(types, vec!["IPv4", "IPv6"]);

    let v4 = service("foo").families(&["IPv4"]).build();
    let planned = plan(&v4, &cluster.slices, &pods, 100);
    assert_eq!(counts(&planned), (0, 0, 1));
    assert_eq!(planned.delete[0].address_type, "IPv6");
}

#[test]
fn trigger_time_is_written_on_created_and_updated_slices_only() {
    let svc = service("foo").build();
    let pods = pods(150);
    let t = time(1_700_000_000);
    let with_time = |max| SliceParams {
        trigger_time: Some(&t),
        ..params(max)
    };
    let planned = plan_endpoint_slices::<EndpointSlice>(
        &svc,
        &[],
        &desired(&svc, &pods[..120]),
        &with_time(100),
    );
    let annotation = |s: &EndpointSlice| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("endpoints.kubernetes.io/last-change-trigger-time"))
            .cloned()
    };
    assert!(
        planned
            .create
            .iter()
            .all(|s| annotation(s).as_deref() == Some("2023-11-14T22:13:20Z"))
    );

    let mut cluster = Cluster::default();
    cluster.apply(&planned);
    let later = plan(&svc, &cluster.slices, &pods, 100);
    assert_eq!(counts(&later), (0, 1, 0), "30 more fit in the slice of 20");
    assert_eq!(
        annotation(&later.update[0]),
        None,
        "no trigger time clears it"
    );
}

#[test]
fn slices_taken_over_from_the_in_tree_controller_are_not_rewritten_for_the_label() {
    let svc = service("foo").build();
    let pods = pods(10);
    let mut adopted = stored_slice(&svc, "foo-1", &pods.iter().collect::<Vec<_>>());
    adopted.metadata.labels.as_mut().unwrap().insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "endpointslice-controller.k8s.io".into(),
    );
    assert!(plan(&svc, std::slice::from_ref(&adopted), &pods, 100).is_empty());

    let planned = plan(&svc, std::slice::from_ref(&adopted), &pods[..9], 100);
    assert_eq!(
        planned.update[0]
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("endpointslice.kubernetes.io/managed-by"),
        Some(&MANAGER.to_string())
    );
}

#[test]
fn slices_already_being_deleted_are_ignored() {
    let svc = service("foo").build();
    let pods = pods(3);
    let mut going = stored_slice(&svc, "foo-1", &pods.iter().collect::<Vec<_>>());
    going.metadata.deletion_timestamp = Some(time(1));
    let planned = plan(&svc, &[going], &pods, 100);
    assert_eq!(counts(&planned), (1, 0, 0));
}

#[test]
fn an_endpoint_found_in_two_slices_is_kept_once() {
    let svc = service("foo").build();
    let pods = pods(4);
    let refs: Vec<&PodInfo> = pods.iter().collect();
    let existing = vec![
        stored_slice(&svc, "foo-1", &refs[..3]),
        stored_slice(&svc, "foo-2", &refs[2..]),
    ];
    let planned = plan(&svc, &existing, &pods, 100);
    assert_eq!(counts(&planned), (0, 1, 0));
    assert_eq!(planned.update[0].metadata.name.as_deref(), Some("foo-2"));
    assert_eq!(endpoints_of(&planned.update[0]).len(), 1);
}

#[test]
fn a_pod_resource_version_change_is_not_a_change() {
    let svc = service("foo").build();
    let pods = pods(3);
    let mut existing = stored_slice(&svc, "foo-1", &pods.iter().collect::<Vec<_>>());
    for endpoint in existing.endpoints.as_mut().unwrap() {
        endpoint.target_ref.as_mut().unwrap().resource_version = Some("12345".into());
    }
    assert!(plan(&svc, &[existing], &pods, 100).is_empty());
}

/// One pod across two syncs: whether it exists, is ready and which port its named port resolves
/// to (none: the port-less group), before and after.
#[derive(Debug, Clone)]
struct PodStates {
    before: Option<(bool, Option<i32>)>,
    after: Option<(bool, Option<i32>)>,
}

fn pod_states() -> impl Strategy<Value = PodStates> {
    let state = prop::option::of((any::<bool>(), prop::option::of(8080..8083i32)));
    (state.clone(), state).prop_map(|(before, after)| PodStates { before, after })
}

fn build_pods(states: &[PodStates], after: bool, dual: bool) -> Vec<PodInfo> {
    states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let (ready, port) = if after { s.after } else { s.before }?;
            let mut builder = pod(
                &format!("pod{i}"),
                &format!("10.1.{}.{}", i / 250, i % 250 + 1),
            )
            .label("app", "foo")
            .ready(ready);
            if dual && i % 2 == 0 {
                builder = builder.ip(&format!("fd00::{i:x}"));
            }
            if let Some(port) = port {
                builder = builder.container_port("http", port, "TCP");
            }
            Some(builder.build())
        })
        .collect()
}

fn check_result(slices: &[EndpointSlice], desired: &DesiredEndpointSlices, max: Option<usize>) {
    let mut want: BTreeMap<(String, PortsKey, EndpointKey), &Endpoint> = BTreeMap::new();
    for group in &desired.groups {
        for e in &group.endpoints {
            want.insert(
                (
                    group.address_type.as_str().into(),
                    PortsKey::of(&group.ports),
                    EndpointKey::of(e),
                ),
                e,
            );
        }
    }
    let mut seen = BTreeMap::new();
    for slice in slices {
        for e in endpoints_of(slice) {
            let key = (
                slice.address_type.clone(),
                PortsKey::of_slice(slice),
                EndpointKey::of(e),
            );
            let wanted = want
                .get(&key)
                .unwrap_or_else(|| panic!("unwanted endpoint {key:?}"));
            assert!(same_endpoint(*wanted, e), "stale endpoint {key:?}");
            assert!(
                seen.insert(key.clone(), ()).is_none(),
                "endpoint in two slices: {key:?}"
            );
        }
        if let Some(max) = max {
            assert!(endpoints_of(slice).len() <= max, "slice over the limit");
        }
    }
    assert_eq!(seen.len(), want.len(), "missing endpoints");
    for family in &desired.address_types {
        let of_type: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|s| s.address_type == family.as_str())
            .collect();
        let endpoints: usize = of_type.iter().map(|s| endpoints_of(s).len()).sum();
        if endpoints == 0 {
            assert_eq!(of_type.len(), 1, "exactly one placeholder for {family:?}");
        } else {
            assert!(
                of_type.iter().all(|s| !endpoints_of(s).is_empty()),
                "empty slice next to endpoints"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reconciling_reaches_a_fixed_point_without_duplicates(
        states in prop::collection::vec(pod_states(), 0..260),
        max_before in 1i64..120,
        max_after in 1i64..120,
        dual in any::<bool>(),
    ) {
        let families: &[&str] = if dual { &["IPv4", "IPv6"] } else { &["IPv4"] };
        let svc = service("foo")
            .families(families)
            .ports(vec![service_port("http", 80, IntOrString::String("http".into()))])
            .build();
        let mut cluster = Cluster::default();

        let before = desired(&svc, &build_pods(&states, false, dual));
        cluster.apply(&plan_endpoint_slices(&svc, &cluster.slices, &before, &params(max_before)));
        check_result(&cluster.slices, &before, Some(max_before as usize));

        let after = desired(&svc, &build_pods(&states, true, dual));
        cluster.apply(&plan_endpoint_slices(&svc, &cluster.slices, &after, &params(max_after)));
        check_result(&cluster.slices, &after, (max_before == max_after).then_some(max_after as usize));

        let again = plan_endpoint_slices(&svc, &cluster.slices, &after, &params(max_after));
        prop_assert!(again.is_empty(), "second reconcile wants writes: {:?}", counts(&again));
    }
}
