use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::*;
use crate::endpointslice::desired::desired_endpoint_slices;
use crate::endpointslice::identity::EndpointFields;
use crate::endpointslice::reconcile::{MaxEndpointsPerSlice, plan_endpoint_slices};
use crate::fixtures::{
    Cluster, PodState, Round, node, pod, pod_state, round, service, service_port,
};

const MANAGER: &str = "endpointslice.svcplane.io";

fn params(max: i64) -> SliceParams<'static> {
    SliceParams {
        managed_by: MANAGER,
        max_endpoints_per_slice: MaxEndpointsPerSlice::new(max).unwrap(),
        trigger_time: None,
    }
}

fn svc() -> Service {
    service("foo")
        .ports(vec![service_port(
            "http",
            80,
            IntOrString::String("http".into()),
        )])
        .build()
}

fn web_pod(i: usize, ready: bool) -> Arc<PodInfo> {
    shared(
        pod(
            &format!("pod{i:03}"),
            &format!("10.1.{}.{}", i / 250, i % 250 + 1),
        )
        .label("app", "foo")
        .container_port("http", 8080, "TCP")
        .ready(ready)
        .build(),
    )
}

fn shared(pod: PodInfo) -> Arc<PodInfo> {
    Arc::new(pod)
}

fn lookup<'n>(nodes: &'n [Node]) -> impl Fn(&str) -> Option<&'n Node> + 'n {
    move |name| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

fn no_capacity() -> ZoneCapacity {
    ZoneCapacity::from_nodes::<Node>(&[])
}

/// An index fed `pods`, synced once into `cluster`.
fn synced_index(
    pods: &[Arc<PodInfo>],
    nodes: &[Node],
    cluster: &mut Cluster,
    max: i64,
) -> SliceIndex {
    let mut index = SliceIndex::new(&svc()).unwrap();
    index.apply_pods(
        pods.iter().map(|p| (p.name.as_str(), Some(p))),
        lookup(nodes),
    );
    sync(&mut index, cluster, max);
    index
}

fn sync(index: &mut SliceIndex, cluster: &mut Cluster, max: i64) -> SliceSync {
    let existing = cluster.slices.clone();
    let sync = index.plan(&existing, &no_capacity(), &params(max));
    let written = cluster.apply(&sync.plan);
    index.synced(&existing, &sync, &written);
    sync
}

#[test]
fn one_pod_change_is_planned_from_that_pod_alone() {
    let nodes = [node("node-1", Some("a"))];
    let mut pods: Vec<Arc<PodInfo>> = (0..250).map(|i| web_pod(i, true)).collect();
    let mut cluster = Cluster::default();
    let mut index = synced_index(&pods, &nodes, &mut cluster, 100);
    assert_eq!(cluster.lengths(), vec![50, 100, 100]);

    pods[120] = web_pod(120, false);
    index.apply_pods(
        [(pods[120].name.as_str(), Some(&pods[120]))],
        lookup(&nodes),
    );
    let existing = cluster.slices.clone();
    let planned = index.plan(&existing, &no_capacity(), &params(100));
    assert!(planned.incremental);
    assert_eq!(planned.plan.writes(), 1);
    let from_scratch = desired_endpoint_slices(&svc(), &pods, lookup(&nodes)).unwrap();
    assert_eq!(
        planned.plan,
        plan_endpoint_slices(&svc(), &existing, &from_scratch, &params(100))
    );
    assert_eq!((planned.added, planned.removed), (0, 0));
    let written = cluster.apply(&planned.plan);
    index.synced(&existing, &planned, &written);

    // Nothing changed since: nothing to write, and nothing read.
    let again = index.plan(&cluster.slices, &no_capacity(), &params(100));
    assert!(again.incremental && again.plan.is_empty());
}

#[test]
fn a_slice_changed_by_someone_else_is_planned_from_scratch() {
    let nodes = [node("node-1", None)];
    let pods: Vec<Arc<PodInfo>> = (0..30).map(|i| web_pod(i, true)).collect();
    let mut cluster = Cluster::default();
    let index = synced_index(&pods, &nodes, &mut cluster, 10);

    let edited = &mut cluster.slices[1];
    edited.endpoints.as_mut().unwrap().pop();
    edited.metadata.resource_version = Some("999".into());
    let planned = index.plan(&cluster.slices, &no_capacity(), &params(10));
    assert!(!planned.incremental);
    assert_eq!(planned.plan.update.len(), 1, "the edited slice is repaired");
}

#[test]
fn after_a_failed_sync_the_next_plans_from_scratch_and_keeps_the_trigger() {
    let nodes = [node("node-1", None)];
    let mut pods: Vec<Arc<PodInfo>> = (0..30).map(|i| web_pod(i, true)).collect();
    let mut cluster = Cluster::default();
    let mut index = synced_index(&pods, &nodes, &mut cluster, 10);
    assert_eq!(index.changed_pods().0.len(), 0);

    pods[3] = web_pod(3, false);
    index.apply_pods([(pods[3].name.as_str(), Some(&pods[3]))], lookup(&nodes));
    index.failed();
    assert_eq!(index.changed_pods(), (vec![("pod003", None)], false));
    let planned = index.plan(&cluster.slices, &no_capacity(), &params(10));
    assert!(!planned.incremental);
    assert_eq!(planned.plan.writes(), 1);
}

#[test]
fn pods_on_missing_nodes_wait_for_their_node() {
    let mut pods: Vec<Arc<PodInfo>> = (0..3).map(|i| web_pod(i, true)).collect();
    pods[1] = shared(
        pod("pod001", "10.1.0.2")
            .label("app", "foo")
            .container_port("http", 8080, "TCP")
            .node("node-2")
            .build(),
    );
    let mut nodes = vec![node("node-1", None)];
    let mut cluster = Cluster::default();
    let mut index = synced_index(&pods, &nodes, &mut cluster, 10);
    let planned = index.plan(&cluster.slices, &no_capacity(), &params(10));
    assert_eq!(
        planned.pods_on_missing_nodes,
        vec![PodOnMissingNode {
            pod: "pod001".into(),
            node: "node-2".into()
        }]
    );
    assert!(planned.plan.is_empty());

    nodes.push(node("node-2", Some("b")));
    index.apply_pods([("pod001", Some(&pods[1]))], lookup(&nodes));
    let planned = sync(&mut index, &mut cluster, 10);
    assert!(planned.incremental && planned.pods_on_missing_nodes.is_empty());
    assert_eq!((planned.added, planned.plan.update.len()), (1, 1));
}

#[test]
fn auto_hints_are_planned_from_scratch() {
    let auto = service("foo")
        .annotation("service.kubernetes.io/topology-mode", "Auto")
        .build();
    let mut index = SliceIndex::new(&auto).unwrap();
    let pods: Vec<Arc<PodInfo>> = (0..5)
        .map(|i| {
            shared(
                pod(&format!("p{i}"), &format!("10.0.0.{i}"))
                    .label("app", "foo")
                    .build(),
            )
        })
        .collect();
    let nodes = [node("node-1", Some("a"))];
    index.apply_pods(
        pods.iter().map(|p| (p.name.as_str(), Some(p))),
        lookup(&nodes),
    );
    let mut cluster = Cluster::default();
    let first = sync(&mut index, &mut cluster, 100);
    assert!(matches!(first.topology, TopologyOutcome::Auto(_)));
    let second = index.plan(&cluster.slices, &no_capacity(), &params(100));
    assert!(!second.incremental && second.plan.is_empty());
}

#[test]
fn unselected_and_gone_pods_leave_the_index() {
    let nodes = [node("node-1", None)];
    let mut index = SliceIndex::new(&svc()).unwrap();
    let member = web_pod(1, true);
    let stranger = shared(pod("other", "10.9.0.1").label("app", "bar").build());
    index.apply_pods(
        [("pod001", Some(&member)), ("other", Some(&stranger))],
        lookup(&nodes),
    );
    assert_eq!(index.desired().groups[0].endpoints.len(), 1);
    let (changed, every_pod) = index.changed_pods();
    assert_eq!(
        (changed.len(), every_pod),
        (1, true),
        "no sync yet: every pod"
    );
    sync(&mut index, &mut Cluster::default(), 100);

    index.apply_pods(
        [("pod001", None), ("other", Some(&stranger))],
        lookup(&nodes),
    );
    assert!(index.desired().groups.is_empty());
    assert_eq!(
        index.changed_pods(),
        (vec![("other", None), ("pod001", None)], false)
    );
}

#[derive(Debug, Clone)]
enum Event {
    Set(usize, PodState),
    Delete(usize),
    /// A Node (re)appears with a zone, or is deleted (`None`).
    Node(u8, Option<Option<u8>>),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0usize..24, pod_state()).prop_map(|(i, s)| Event::Set(i, s)),
        2 => (0usize..24).prop_map(Event::Delete),
        1 => (0u8..4, prop::option::of(prop::option::of(0u8..3)))
            .prop_map(|(n, zone)| Event::Node(n, zone)),
    ]
}

/// The pod in that state. Pods sharing a UID and an IP would be one endpoint to the added and
/// removed counts, which a sync from a few changed pods cannot tell.
fn build(i: usize, state: &PodState) -> Arc<PodInfo> {
    let state = PodState {
        shared_uid: false,
        ..state.clone()
    };
    shared(state.build(i, "foo"))
}

fn variant(which: u8) -> Service {
    let builder = service("foo").ports(vec![service_port(
        "http",
        80,
        IntOrString::String("http".into()),
    )]);
    match which {
        0 => builder,
        1 => builder.families(&["IPv6", "IPv4"]),
        2 => builder.traffic_distribution("PreferSameNode"),
        _ => builder.publish_not_ready(),
    }
    .build()
}

fn node_named(n: u8, zone: Option<u8>) -> Node {
    let zone = zone.map(|z| format!("zone-{z}"));
    node(&format!("node-{n}"), zone.as_deref())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the pods do, the index fed their changes plans exactly what a plan from
    /// scratch (every pod, nothing settled) plans against the same slices, and holds the same
    /// desired state as one built from the pods as they are now.
    #[test]
    fn incremental_plans_equal_plans_from_scratch(
        rounds in prop::collection::vec(
            (
                prop::collection::vec(event(), 0..8),
                round(),
            ),
            1..12,
        ),
        max in 1i64..6,
        which in 0u8..4,
    ) {
        let svc = variant(which);
        let mut pods: BTreeMap<usize, PodState> = BTreeMap::new();
        let mut nodes: Vec<Node> = (0..3).map(|n| node_named(n, Some(n % 2))).collect();
        let mut index = SliceIndex::new(&svc).unwrap();
        let mut cluster = Cluster::default();
        let mut settled = false;

        for (events, round) in rounds {
            let mut changed: Vec<usize> = Vec::new();
            for event in events {
                match event {
                    Event::Set(i, state) => {
                        pods.insert(i, state);
                        changed.push(i);
                    }
                    Event::Delete(i) => {
                        pods.remove(&i);
                        changed.push(i);
                    }
                    Event::Node(n, zone) => {
                        let name = format!("node-{n}");
                        nodes.retain(|node| node.metadata.name.as_deref() != Some(&name));
                        if let Some(zone) = zone {
                            nodes.push(node_named(n, zone));
                        }
                        changed.extend(pods.iter().filter(|(_, s)| s.node == n).map(|(i, _)| *i));
                    }
                }
            }
            let built: BTreeMap<usize, Arc<PodInfo>> =
                pods.iter().map(|(i, s)| (*i, build(*i, s))).collect();
            let names: Vec<String> = changed.iter().map(|i| format!("pod{i:02}")).collect();
            index.apply_pods(
                changed.iter().zip(&names).map(|(i, name)| (name.as_str(), built.get(i))),
                lookup(&nodes),
            );

            // What a sync compares of each endpoint is what it writes out, and the hints are
            // those of the written endpoint's readiness, zone and node.
            for (_, _, endpoint) in index.all_endpoints() {
                let written = endpoint.to_endpoint();
                prop_assert_eq!(endpoint.fields(), EndpointFields::of(&written));
                prop_assert_eq!(endpoint.key(), EndpointKey::of(&written));
                let mut hinted = written.clone();
                crate::topology::apply_traffic_distribution(
                    index.distribution,
                    std::iter::once(&mut hinted),
                );
                prop_assert_eq!(&written, &hinted);
            }

            let now: Vec<Arc<PodInfo>> = built.into_values().collect();
            let from_scratch = desired_endpoint_slices(&svc, &now, lookup(&nodes)).unwrap();
            prop_assert_eq!(&index.desired(), &from_scratch);

            if let Round::Edited = round
                && let Some(slice) = cluster.slices.first_mut()
            {
                slice.endpoints.as_mut().unwrap().pop();
                slice.metadata.resource_version = Some(format!("{}-edited", slice.metadata.resource_version.as_deref().unwrap()));
                settled = false;
            }
            let existing: Vec<EndpointSlice> = cluster.slices.clone();
            let planned = index.plan(&existing, &no_capacity(), &params(max));
            prop_assert_eq!(planned.incremental, settled, "incremental only on what it published");
            let mut rebuilt = SliceIndex::new(&svc).unwrap();
            rebuilt.apply_pods(now.iter().map(|p| (p.name.as_str(), Some(p))), lookup(&nodes));
            let scratch = rebuilt.plan(&existing, &no_capacity(), &params(max));
            prop_assert_eq!(&planned.plan, &scratch.plan);
            prop_assert_eq!(
                (planned.added, planned.removed, &planned.pods_on_missing_nodes),
                (scratch.added, scratch.removed, &scratch.pods_on_missing_nodes)
            );
            prop_assert_eq!(
                &planned.plan,
                &plan_endpoint_slices(&svc, &existing, &from_scratch, &params(max))
            );

            match round {
                Round::Fail => {
                    index.failed();
                    settled = false;
                }
                Round::Sync | Round::Edited => {
                    let written = cluster.apply(&planned.plan);
                    index.synced(&existing, &planned, &written);
                    prop_assert_eq!(index.changed_pods().0.len(), 0);
                    settled = true;
                }
            }
        }
    }
}

/// An endpoint of `uid` at `ip`, as the added/removed counts see it.
fn counted_endpoint(ip: &str, uid: &str) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
            uid: Some(uid.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn endpoint_changes_count_distinct_endpoints_as_sets_do() {
    let slice = |endpoints: Vec<Endpoint>| EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: Some(endpoints),
        ..Default::default()
    };
    let (a, b, c) = (
        counted_endpoint("10.0.0.1", "a"),
        counted_endpoint("10.0.0.2", "b"),
        counted_endpoint("10.0.0.3", "c"),
    );
    // `a` stays (found twice before), `b` goes (found twice before), `c` comes (wanted twice).
    let first = slice(vec![a.clone(), b.clone()]);
    let second = slice(vec![a.clone(), b.clone()]);
    let before = [&first, &second];
    let after = [&a, &c, &c].map(|e| endpoint_id("IPv4", e));
    assert_eq!(
        endpoint_changes(&before, after.into_iter(), |_| true),
        (1, 1)
    );
    // The same addresses and pod under another address type are another endpoint.
    let after = [endpoint_id("IPv6", &a)];
    assert_eq!(
        endpoint_changes(&[&first], after.into_iter(), |_| true),
        (1, 2)
    );
    // Endpoints not counted are left out of `before`.
    let after = [endpoint_id("IPv4", &a)];
    let counted = |e: &Endpoint| e.addresses[0] != "10.0.0.2";
    assert_eq!(
        endpoint_changes(&[&first], after.into_iter(), counted),
        (0, 0)
    );
}
