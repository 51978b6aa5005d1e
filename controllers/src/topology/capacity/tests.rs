use k8s_openapi::api::core::v1::Node;

use super::*;
use crate::fixtures::{node_label, node_ready, worker_node};

fn zones(pairs: &[(&str, f64)]) -> ZoneCapacity {
    ZoneCapacity::Zones(pairs.iter().map(|(z, r)| (z.to_string(), *r)).collect())
}

fn control_plane(node: Node) -> Node {
    node_label(node, LABEL_NODE_ROLE_CONTROL_PLANE, "")
}

/// `SetNodes` (k8s.io/endpointslice topologycache/topologycache.go), on the cases of its in-tree
/// table: ready worker Nodes only (control-plane Nodes left out), CPU ratios per zone.
#[test]
fn in_tree_set_nodes_table() {
    let a = |name: &str, cpu: &str| worker_node(name, Some("zone-a"), cpu);
    let b = |name: &str, cpu: &str| worker_node(name, Some("zone-b"), cpu);
    let c = |name: &str, cpu: &str| worker_node(name, Some("zone-c"), cpu);
    let cases: Vec<(&str, Vec<Node>, ZoneCapacity)> = vec![
        ("empty", vec![], ZoneCapacity::InsufficientNodeInfo),
        (
            "single node",
            vec![a("n1", "1000m")],
            ZoneCapacity::SingleZone,
        ),
        (
            "single zone",
            vec![a("n1", "1000m"), a("n2", "1000m")],
            ZoneCapacity::SingleZone,
        ),
        (
            "2 zones",
            vec![a("n1", "1000m"), b("n2", "1000m")],
            zones(&[("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "2 zones, unready node in 1, ready node in 1",
            vec![node_ready(a("n1", "1000m"), false), b("n2", "1000m")],
            ZoneCapacity::SingleZone,
        ),
        (
            "2 zones, control plane node in 1, ready node in 1",
            vec![a("n1", "1000m"), control_plane(b("n2", "1000m"))],
            ZoneCapacity::SingleZone,
        ),
        (
            "2 zones, unready node in 1, ready node in 2",
            vec![
                a("n1", "1000m"),
                b("n2", "1000m"),
                node_ready(b("n3", "1000m"), false),
            ],
            zones(&[("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "2 zones, control plane node in 1, ready node in 2",
            vec![
                a("n1", "1000m"),
                b("n2", "1000m"),
                control_plane(b("n3", "1000m")),
            ],
            zones(&[("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "3 zones, 4 nodes in 1, 2 nodes in 1, 1 node in 1",
            vec![
                a("n1", "1000m"),
                a("n2", "1000m"),
                a("n3", "1000m"),
                a("n4", "2000m"),
                b("n5", "3000m"),
                b("n6", "1500m"),
                c("n7", "500m"),
            ],
            zones(&[("zone-a", 0.5), ("zone-b", 0.45), ("zone-c", 0.05)]),
        ),
    ];
    for (name, nodes, expected) in cases {
        assert_eq!(ZoneCapacity::from_nodes(&nodes), expected, "{name}");
    }
}

/// `SetNodes` (topologycache.go): a ready worker without zone label or allocatable CPU makes
/// Node information insufficient.
#[test]
fn a_worker_without_zone_or_cpu_disables_capacity() {
    let zoned = [
        worker_node("n1", Some("zone-a"), "4"),
        worker_node("n2", Some("zone-b"), "4"),
    ];
    let mut unzoned = zoned.to_vec();
    unzoned.push(worker_node("n3", None, "4"));
    assert_eq!(
        ZoneCapacity::from_nodes(&unzoned),
        ZoneCapacity::InsufficientNodeInfo
    );
    let mut empty_zone = zoned.to_vec();
    empty_zone.push(worker_node("n3", Some(""), "4"));
    assert_eq!(
        ZoneCapacity::from_nodes(&empty_zone),
        ZoneCapacity::InsufficientNodeInfo
    );
    let mut no_cpu = zoned.to_vec();
    no_cpu.push(worker_node("n3", Some("zone-b"), "0"));
    assert_eq!(
        ZoneCapacity::from_nodes(&no_cpu),
        ZoneCapacity::InsufficientNodeInfo
    );
    let mut no_status = zoned.to_vec();
    no_status.push(node_ready(
        crate::fixtures::node("n3", Some("zone-b")),
        true,
    ));
    assert_eq!(
        ZoneCapacity::from_nodes(&no_status),
        ZoneCapacity::InsufficientNodeInfo
    );

    // Not-ready and control-plane Nodes do not count, so their gaps do not matter.
    let mut ignored = zoned.to_vec();
    ignored.push(node_ready(worker_node("n3", None, "4"), false));
    ignored.push(node_label(
        worker_node("n4", None, "4"),
        LABEL_NODE_ROLE_MASTER,
        "true",
    ));
    assert_eq!(
        ZoneCapacity::from_nodes(&ignored),
        zones(&[("zone-a", 0.5), ("zone-b", 0.5)])
    );
}

/// `SetNodes` (topologycache.go): each zone's ratio is its share of the allocatable CPU.
#[test]
fn uneven_cpu_gives_uneven_shares() {
    let nodes = [
        worker_node("n1", Some("zone-a"), "8"),
        worker_node("n2", Some("zone-b"), "4"),
        worker_node("n3", Some("zone-c"), "3500m"),
        worker_node("n4", Some("zone-c"), "500m"),
    ];
    assert_eq!(
        ZoneCapacity::from_nodes(&nodes),
        zones(&[("zone-a", 0.5), ("zone-b", 0.25), ("zone-c", 0.25)])
    );
}

/// `SetNodes` (topologycache.go) adds CPU as resource quantities and divides their
/// `MilliValue`s.
#[test]
fn quantities_in_thousandths() {
    let cases = [
        ("4", Some(4000)),
        ("3500m", Some(3500)),
        ("1.5", Some(1500)),
        ("0.1", Some(100)),
        (".5", Some(500)),
        ("+2", Some(2000)),
        ("1k", Some(1_000_000)),
        ("2Ki", Some(2_048_000)),
        ("1e3", Some(1_000_000)),
        ("1E-3", Some(1)),
        ("1500u", Some(2)),
        ("1n", Some(1)),
        ("0", Some(0)),
        ("1.0001", Some(1001)),
        ("", None),
        ("-1", None),
        ("abc", None),
        ("1.2.3", None),
        ("1X", None),
    ];
    for (text, expected) in cases {
        assert_eq!(quantity_millis(text), expected, "{text:?}");
    }
}

/// `updateNode` (pkg/controller/endpointslice/endpointslice_controller.go): only a change of
/// readiness or of the zone label queues the topology cache's update.
#[test]
fn relevant_node_changes() {
    let node = worker_node("n1", Some("zone-a"), "4");
    assert!(!nodes_changed_relevant(&node, &node.clone()));
    let relabelled = node_label(node.clone(), "team", "payments");
    assert!(!nodes_changed_relevant(&node, &relabelled));
    let same_cpu = worker_node("n1", Some("zone-a"), "4000m");
    assert!(!nodes_changed_relevant(&node, &same_cpu));
    // Taken into account at the next relevant Node event, as in-tree.
    for unnoticed in [
        worker_node("n1", Some("zone-a"), "8"),
        control_plane(node.clone()),
        node_label(node.clone(), LABEL_NODE_ROLE_MASTER, ""),
    ] {
        assert!(!nodes_changed_relevant(&node, &unnoticed), "{unnoticed:?}");
    }

    let changes = [
        worker_node("n1", Some("zone-b"), "4"),
        worker_node("n1", None, "4"),
        node_ready(node.clone(), false),
    ];
    for changed in changes {
        assert!(nodes_changed_relevant(&node, &changed), "{changed:?}");
    }
}
