use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{EndpointHints, EndpointSlice, ForNode, ForZone};

use super::*;
use crate::endpointslice::{
    DesiredEndpointSlices, MaxEndpointsPerSlice, SliceParams, desired_endpoint_slices,
    plan_endpoint_slices,
};
use crate::fixtures::{NS, pod, service, worker_node};
use crate::pods::PodInfo;

const MANAGER: &str = "endpointslice-controller.svcplane.io";

/// Two zones of equal CPU: `node-a` in zone-a, `node-b` in zone-b.
fn nodes() -> Vec<Node> {
    vec![
        worker_node("node-a", Some("zone-a"), "4"),
        worker_node("node-b", Some("zone-b"), "4"),
    ]
}

/// Two ready pods per zone, selected by `web`.
fn pods() -> Vec<PodInfo> {
    [
        ("a1", "node-a"),
        ("a2", "node-a"),
        ("b1", "node-b"),
        ("b2", "node-b"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, node))| {
        pod(name, &format!("10.0.0.{}", i + 1))
            .label("app", "web")
            .node(node)
            .build()
    })
    .collect()
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

fn hints_of(desired: &DesiredEndpointSlices) -> Vec<Option<EndpointHints>> {
    desired
        .groups
        .iter()
        .flat_map(|g| g.endpoints.iter().map(|e| e.hints.clone()))
        .collect()
}

fn zone_hint(zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone { name: zone.into() }]),
        for_nodes: None,
    })
}

/// `hintsEnabled` (k8s.io/endpointslice utils.go): the older `topology-aware-hints`
/// annotation, when present with any value, decides instead of `topology-mode`; `Auto` and
/// `auto` turn hints on. `reconcileByAddressType` (reconciler.go): `trafficDistribution` is
/// used only when hints are not enabled (`canUseTrafficDistribution`), and only with a value
/// `validTrafficDistribution` knows (PreferSameTrafficDistribution is GA and locked on in
/// 1.37, pkg/features/kube_features.go).
#[test]
fn the_policy_follows_annotations_then_traffic_distribution() {
    let auto = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .build();
    assert_eq!(HintsPolicy::of(&auto), HintsPolicy::Auto);
    let lower = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "auto")
        .build();
    assert_eq!(HintsPolicy::of(&lower), HintsPolicy::Auto);
    let old = service("web")
        .annotation(ANNOTATION_TOPOLOGY_AWARE_HINTS, "Auto")
        .build();
    assert_eq!(HintsPolicy::of(&old), HintsPolicy::Auto);
    // The older annotation wins when both are set.
    let both = service("web")
        .annotation(ANNOTATION_TOPOLOGY_AWARE_HINTS, "Disabled")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .build();
    assert!(!uses_auto_hints(&both));

    // trafficDistribution is ignored while Auto is on.
    let auto_and_close = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .traffic_distribution("PreferClose")
        .build();
    assert_eq!(HintsPolicy::of(&auto_and_close), HintsPolicy::Auto);
    let close = service("web")
        .traffic_distribution("PreferSameNode")
        .build();
    assert_eq!(
        HintsPolicy::of(&close),
        HintsPolicy::TrafficDistribution(TrafficDistribution::PreferSameNode)
    );
    let unknown = service("web").traffic_distribution("PreferMars").build();
    assert_eq!(HintsPolicy::of(&unknown), HintsPolicy::None);
    assert_eq!(HintsPolicy::of(&service("web").build()), HintsPolicy::None);
    // The older annotation with another value leaves trafficDistribution in effect.
    let old_off = service("web")
        .annotation(ANNOTATION_TOPOLOGY_AWARE_HINTS, "Disabled")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .traffic_distribution("PreferSameNode")
        .build();
    assert_eq!(
        HintsPolicy::of(&old_off),
        HintsPolicy::TrafficDistribution(TrafficDistribution::PreferSameNode)
    );
    let mode_other = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "PreferZone")
        .traffic_distribution("PreferClose")
        .build();
    assert_eq!(
        HintsPolicy::of(&mode_other),
        HintsPolicy::TrafficDistribution(TrafficDistribution::PreferClose)
    );
}

/// `finalize` (k8s.io/endpointslice reconciler.go) labels
/// `endpointslices_changed_per_sync` with `Auto` when hints are enabled, else `Disabled`, and
/// with `spec.trafficDistribution` only when it is valid and hints are not enabled.
#[test]
fn the_sync_metric_labels_the_policy_in_effect() {
    let labels = |svc: &Service| HintsPolicy::of(svc).metric_labels();
    let auto_and_node = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .traffic_distribution("PreferSameNode")
        .build();
    assert_eq!(labels(&auto_and_node), ("Auto", ""));
    let close = service("web").traffic_distribution("PreferClose").build();
    assert_eq!(labels(&close), ("Disabled", "PreferClose"));
    let unknown = service("web").traffic_distribution("PreferMars").build();
    assert_eq!(labels(&unknown), ("Disabled", ""));
}

fn params() -> SliceParams<'static> {
    SliceParams {
        managed_by: MANAGER,
        max_endpoints_per_slice: MaxEndpointsPerSlice::DEFAULT,
        trigger_time: None,
    }
}

fn hints_in(slices: &[EndpointSlice]) -> Vec<Option<EndpointHints>> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten().map(|e| e.hints.clone()))
        .collect()
}

#[test]
fn auto_mode_hints_each_zone() {
    let svc = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .build();
    let mut desired = desired(&svc, &pods());
    let capacity = ZoneCapacity::from_nodes(&nodes());
    let (plan, outcome) =
        plan_with_topology::<EndpointSlice>(&svc, &capacity, &mut desired, &[], &params());
    assert!(matches!(
        &outcome,
        TopologyOutcome::Auto(decisions)
            if decisions.len() == 1 && matches!(decisions[0], (IpFamily::V4, HintsDecision::Enabled(_)))
    ));
    assert_eq!(
        hints_in(&plan.create),
        vec![
            zone_hint("zone-a"),
            zone_hint("zone-a"),
            zone_hint("zone-b"),
            zone_hint("zone-b")
        ]
    );
    // Auto hints live on the planned slices, never on the desired endpoints.
    assert!(hints_of(&desired).iter().all(Option::is_none));

    // Synced again with nothing changed: the hints fit, nothing is written.
    let mut existing = plan.create;
    existing[0].metadata.name = Some("web-1".into());
    let mut again = self::desired(&svc, &pods());
    let (plan, _) = plan_with_topology(&svc, &capacity, &mut again, &existing, &params());
    assert!(plan.is_empty(), "{plan:?}");
}

/// `reconcileByAddressType` (k8s.io/endpointslice reconciler.go): under Auto, a disabled
/// decision removes every hint (`RemoveHintsFromSlices`) and trafficDistribution is not used.
#[test]
fn auto_mode_without_capacity_strips_hints_and_ignores_traffic_distribution() {
    let svc = service("web")
        .annotation(ANNOTATION_TOPOLOGY_MODE, "Auto")
        .traffic_distribution("PreferClose")
        .build();
    let close = service("web").traffic_distribution("PreferClose").build();
    let capacity = ZoneCapacity::from_nodes(&nodes());
    let mut hinted = desired(&close, &pods());
    let (plan, _) =
        plan_with_topology::<EndpointSlice>(&close, &capacity, &mut hinted, &[], &params());
    let mut existing = plan.create;
    existing[0].metadata.name = Some("web-1".into());
    assert!(hints_in(&existing).iter().all(Option::is_some));

    let one_zone = ZoneCapacity::from_nodes(&[worker_node("node-a", Some("zone-a"), "4")]);
    let mut desired = desired(&svc, &pods());
    let (plan, outcome) = plan_with_topology(&svc, &one_zone, &mut desired, &existing, &params());
    assert_eq!(
        outcome,
        TopologyOutcome::Auto(vec![(
            IpFamily::V4,
            HintsDecision::Disabled(HintsDisabled::NodesReadyInOneZoneOnly)
        )])
    );
    assert_eq!(plan.update.len(), 1);
    assert!(hints_in(&plan.update).iter().all(Option::is_none));
}

#[test]
fn traffic_distribution_hints_zone_and_node() {
    let svc = service("web")
        .traffic_distribution("PreferSameNode")
        .build();
    let mut desired = desired(&svc, &pods()[..1]);
    let (plan, outcome) = plan_with_topology::<EndpointSlice>(
        &svc,
        &ZoneCapacity::InsufficientNodeInfo,
        &mut desired,
        &[],
        &params(),
    );
    assert_eq!(outcome, TopologyOutcome::NotAuto(vec![IpFamily::V4]));
    assert_eq!(
        hints_in(&plan.create),
        vec![Some(EndpointHints {
            for_zones: Some(vec![ForZone {
                name: "zone-a".into()
            }]),
            for_nodes: Some(vec![ForNode {
                name: "node-a".into()
            }]),
        })]
    );
}

/// `ReconcileHints` (k8s.io/endpointslice trafficdist/trafficdist.go): an unchanged slice whose
/// hints are missing or stale (`needsUpdate`) is updated; one with the right hints is not.
#[test]
fn hints_changes_are_slice_updates_and_stale_hints_are_removed() {
    let plain = service("web").build();
    let close = service("web").traffic_distribution("PreferClose").build();
    let capacity = ZoneCapacity::InsufficientNodeInfo;

    let mut without_hints = desired(&plain, &pods());
    let (plan, _) =
        plan_with_topology::<EndpointSlice>(&plain, &capacity, &mut without_hints, &[], &params());
    let mut existing = plan.create;
    existing[0].metadata.name = Some("web-1".into());

    let mut with_hints = desired(&close, &pods());
    let (plan, _) = plan_with_topology(&close, &capacity, &mut with_hints, &existing, &params());
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    let hinted = plan.update[0].clone();
    assert!(
        hints_in(std::slice::from_ref(&hinted))
            .iter()
            .all(Option::is_some)
    );

    // The distribution goes away: the hints go too.
    let mut stripped = desired(&plain, &pods());
    let (plan, _) = plan_with_topology(
        &plain,
        &capacity,
        &mut stripped,
        std::slice::from_ref(&hinted),
        &params(),
    );
    assert_eq!(plan.update.len(), 1);
    assert!(hints_in(&plan.update).iter().all(Option::is_none));

    // Nothing changed: nothing to write.
    let mut again = desired(&close, &pods());
    let (plan, _) = plan_with_topology(
        &close,
        &capacity,
        &mut again,
        std::slice::from_ref(&hinted),
        &params(),
    );
    assert!(plan.is_empty());
    // Planned directly, the hinted desired endpoints give the same writes.
    assert!(
        plan_endpoint_slices(&close, std::slice::from_ref(&hinted), &again, &params()).is_empty()
    );
}

fn enabled() -> HintsDecision {
    let capacity =
        ZoneCapacity::Zones([("zone-a".to_string(), 0.5), ("zone-b".to_string(), 0.5)].into());
    HintsDecision::Enabled(zone_assignment(&capacity, 2).unwrap())
}

#[test]
fn events_follow_the_in_tree_controller() {
    let mut tracker = HintsEventTracker::default();
    let on = TopologyOutcome::Auto(vec![(IpFamily::V4, enabled()), (IpFamily::V6, enabled())]);
    assert_eq!(
        tracker.events(NS, "web", &on),
        vec![TopologyEvent {
            type_: EventType::Normal,
            reason: REASON_HINTS_ENABLED,
            message: "Topology Aware Hints has been enabled, addressType: IPv4".into(),
        }]
    );
    assert!(tracker.events(NS, "web", &on).is_empty());

    let off = TopologyOutcome::Auto(vec![(
        IpFamily::V4,
        HintsDecision::Disabled(HintsDisabled::InsufficientNumberOfEndpoints {
            endpoints: 1,
            zones: 2,
        }),
    )]);
    let warning = TopologyEvent {
        type_: EventType::Warning,
        reason: REASON_HINTS_DISABLED,
        message: "Insufficient number of endpoints (1 endpoints, 2 zones), addressType: IPv4"
            .into(),
    };
    // A disabled Service is told so on every sync.
    assert_eq!(tracker.events(NS, "web", &off), vec![warning.clone()]);
    assert_eq!(tracker.events(NS, "web", &off), vec![warning]);

    // Removing the annotation after hints were written says so once.
    assert_eq!(tracker.events(NS, "web", &on).len(), 1);
    let removed = TopologyOutcome::NotAuto(vec![IpFamily::V6, IpFamily::V4]);
    let events = tracker.events(NS, "web", &removed);
    assert_eq!(
        events,
        vec![TopologyEvent {
            type_: EventType::Warning,
            reason: REASON_HINTS_DISABLED,
            message: "Topology Aware Hints has been disabled, addressType: IPv6".into(),
        }]
    );
    assert_eq!(events[0].type_.as_api(), "Warning");
    assert!(tracker.events(NS, "web", &removed).is_empty());

    tracker.events(NS, "web", &on);
    tracker.forget_service(NS, "web");
    assert!(tracker.events(NS, "web", &removed).is_empty());
}
