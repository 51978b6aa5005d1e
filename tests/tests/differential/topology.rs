//! Topology hints: `spec.trafficDistribution` on the shared planes, and
//! `service.kubernetes.io/topology-mode: Auto` on a pair of planes of its own (Auto hints
//! depend on every Node of the cluster, and the shared planes hold Nodes without zones).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Result;
use e2e::{kubelet, wait};
use k8s_openapi::api::core::v1::{Event, Service};
use kube::api::ListParams;
use serde_json::json;

use crate::expect::*;
use crate::harness::{Planes, Scenario, Side};

/// Pod name -> hints of its endpoint (zones, then `node:<name>`), as `side` publishes them.
async fn hints(side: &Side, service: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let (view, _) = side.published(service).await?;
    Ok(view
        .slices
        .groups
        .values()
        .flatten()
        .map(|e| {
            let pod = e.target.clone().unwrap_or_default();
            (pod.trim_start_matches("Pod/").to_string(), e.hints.clone())
        })
        .collect())
}

/// (object, reason) of the events about topology hints in the namespace.
async fn hint_events(side: &Side) -> Result<BTreeSet<(String, String)>> {
    let events = side.api::<Event>().list(&ListParams::default()).await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("TopologyAwareHints"))
        })
        .map(|e| {
            (
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
            )
        })
        .collect())
}

/// A Service name RelaxedServiceNameValidation admits (GA in 1.37): a leading digit, 63
/// characters.
const RELAXED_NAME: &str = "1-same-node-with-a-name-as-long-as-a-dns-label-may-be-012345678";

/// PreferClose, PreferSameZone and PreferSameNode over ready and not-ready pods in two zones,
/// PreferSameNode also on a Service with a relaxed name (its slices are named after the first
/// 58 characters); the topology annotations' precedence over the field: `topology-mode: Auto`
/// wins (zone hints only, or none when some Node of the shared planes has no zone), while the
/// older `topology-aware-hints` annotation with another value leaves the field in effect (the
/// apiserver refuses the two annotations with different values); then the field removed from
/// one Service strips its hints.
pub async fn traffic_distribution(planes: Arc<Planes>) -> Result<()> {
    const NODE_A: &str = "td-node-a";
    const NODE_B: &str = "td-node-b";
    let s = Scenario::start(&planes, "traffic-distribution").await?;
    s.each(|side| async move {
        side.node(NODE_A, Some("td-zone-a")).await?;
        side.node(NODE_B, Some("td-zone-b")).await?;
        side.start_pods(&[
            (
                pod("a1", "td", NODE_A, ("http", 8080)),
                running("10.70.0.1", true),
            ),
            (
                pod("b1", "td", NODE_B, ("http", 8080)),
                running("10.70.0.2", true),
            ),
            (
                pod("b2", "td", NODE_B, ("http", 8080)),
                running("10.70.0.3", false),
            ),
        ])
        .await?;
        for (name, distribution) in [
            ("close", "PreferClose"),
            ("same-zone", "PreferSameZone"),
            ("same-node", "PreferSameNode"),
            (RELAXED_NAME, "PreferSameNode"),
        ] {
            let mut manifest = service(name, &[("app", "td")], &[("http", 80, "TCP", "http")]);
            manifest["spec"]["trafficDistribution"] = json!(distribution);
            side.create_service(manifest).await?;
        }
        for (name, annotations) in [
            (
                "auto-over-same-node",
                json!({ "service.kubernetes.io/topology-mode": "Auto" }),
            ),
            (
                "older-annotation-off",
                json!({ "service.kubernetes.io/topology-aware-hints": "Disabled" }),
            ),
        ] {
            let mut manifest = service(name, &[("app", "td")], &[("http", 80, "TCP", "http")]);
            manifest["spec"]["trafficDistribution"] = json!("PreferSameNode");
            manifest["metadata"]["annotations"] = annotations;
            side.create_service(manifest).await?;
        }
        Ok(())
    })
    .await?;
    let zone_hints = |a: &[&str], b: &[&str]| -> BTreeMap<String, Vec<String>> {
        [
            ("a1".to_string(), a.iter().map(|h| h.to_string()).collect()),
            ("b1".to_string(), b.iter().map(|h| h.to_string()).collect()),
            ("b2".to_string(), Vec::new()),
        ]
        .into()
    };
    let same_node = zone_hints(
        &["td-zone-a", "node:td-node-a"],
        &["td-zone-b", "node:td-node-b"],
    );
    for (name, want) in [
        ("close", zone_hints(&["td-zone-a"], &["td-zone-b"])),
        ("same-zone", zone_hints(&["td-zone-a"], &["td-zone-b"])),
        ("same-node", same_node.clone()),
        (RELAXED_NAME, same_node.clone()),
        ("older-annotation-off", same_node.clone()),
    ] {
        s.converge(name, None).await?;
        let (reference, ours) = s
            .each(|side| async move { hints(&side, name).await })
            .await?;
        anyhow::ensure!(reference == want, "in-tree hints of {name}: {reference:?}");
        anyhow::ensure!(ours == want, "svcplane hints of {name}: {ours:?}");
    }

    // Auto's hints depend on every Node of the shared planes (zone hints, or none when some
    // Node has no zone): both sides alike, and never a node hint.
    s.converge("auto-over-same-node", None).await?;
    let (reference, ours) = s
        .each(|side| async move { hints(&side, "auto-over-same-node").await })
        .await?;
    anyhow::ensure!(
        reference == ours
            && reference
                .values()
                .flatten()
                .all(|h| !h.starts_with("node:")),
        "hints of auto-over-same-node: in-tree {reference:?}, svcplane {ours:?}"
    );

    let (reference, ours) = s
        .each(|side| async move {
            let (slices, _) = side.slices(RELAXED_NAME).await?;
            anyhow::Ok(
                slices
                    .into_iter()
                    .map(|slice| slice.metadata.name.unwrap_or_default())
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    for names in [&reference, &ours] {
        anyhow::ensure!(
            !names.is_empty()
                && names
                    .iter()
                    .all(|n| n.len() == 63 && n.starts_with(&RELAXED_NAME[..58])),
            "slices of {RELAXED_NAME} not named after its first 58 characters: in-tree {reference:?}, svcplane {ours:?}"
        );
    }

    s.each(|side| async move {
        side.merge_patch::<Service>("close", json!({ "spec": { "trafficDistribution": null } }))
            .await
    })
    .await?;
    s.converge("close", None).await?;
    let (reference, ours) = s
        .each(|side| async move { hints(&side, "close").await })
        .await?;
    anyhow::ensure!(
        reference == zone_hints(&[], &[]) && ours == reference,
        "hints left after trafficDistribution was removed: {reference:?} / {ours:?}"
    );
    s.finish(&[
        "close",
        "same-zone",
        "same-node",
        RELAXED_NAME,
        "auto-over-same-node",
        "older-annotation-off",
    ])
    .await
}

/// `topology-mode: Auto` over three zones of 2, 4 and 6 CPUs: 12 endpoints get zone hints, 2
/// endpoints (fewer than zones) get none and a `TopologyAwareHintsDisabled` event.
pub async fn auto_hints(planes: Arc<Planes>) -> Result<()> {
    let own = Arc::new(Planes::start().await?);
    let result = auto_hints_on(&own).await;
    planes.adopt_reports(&own);
    own.stop().await?;
    result
}

async fn auto_hints_on(planes: &Arc<Planes>) -> Result<()> {
    const NODES: [(&str, &str, &str); 3] = [
        ("auto-node-1", "auto-zone-1", "2"),
        ("auto-node-2", "auto-zone-2", "4"),
        ("auto-node-3", "auto-zone-3", "6"),
    ];
    let s = Scenario::start(planes, "topology-auto").await?;
    s.each(|side| async move {
        for (name, zone, cpu) in NODES {
            kubelet::ensure_node(&side.client, name, Some(zone), cpu).await?;
        }
        let mut pods = Vec::new();
        for i in 0..12 {
            let node = NODES[i % 3].0;
            pods.push((
                pod(&format!("many-{i}"), "many", node, ("http", 8080)),
                running(&format!("10.71.0.{}", i + 1), true),
            ));
        }
        for (i, (node, _, _)) in NODES.iter().take(2).enumerate() {
            pods.push((
                pod(&format!("few-{i}"), "few", node, ("http", 8080)),
                running(&format!("10.71.1.{}", i + 1), true),
            ));
        }
        side.start_pods(&pods).await?;
        for (name, app) in [("many", "many"), ("few", "few")] {
            let mut manifest = service(name, &[("app", app)], &[("http", 80, "TCP", "http")]);
            manifest["metadata"]["annotations"] =
                json!({ "service.kubernetes.io/topology-mode": "Auto" });
            side.create_service(manifest).await?;
        }
        Ok(())
    })
    .await?;

    s.converge_hints_by_zone("many").await?;
    s.converge("few", None).await?;
    let (reference, ours) = s
        .each(|side| async move { hints(&side, "many").await })
        .await?;
    let per_zone = |hints: &BTreeMap<String, Vec<String>>| {
        let mut count = BTreeMap::<String, usize>::new();
        for zones in hints.values() {
            for zone in zones {
                *count.entry(zone.clone()).or_default() += 1;
            }
        }
        count
    };
    println!(
        "  topology-auto: endpoints hinted per zone: in-tree {:?}, svcplane {:?}",
        per_zone(&reference),
        per_zone(&ours)
    );
    anyhow::ensure!(
        ours.values().all(|h| h.len() == 1),
        "every endpoint of many should have one zone hint: {ours:?}"
    );
    let (reference, ours) = s
        .each(|side| async move { hints(&side, "few").await })
        .await?;
    anyhow::ensure!(
        reference.values().chain(ours.values()).all(Vec::is_empty),
        "few has hints: {reference:?} / {ours:?}"
    );

    let want: BTreeSet<(String, String)> = [
        ("many".to_string(), "TopologyAwareHintsEnabled".to_string()),
        ("few".to_string(), "TopologyAwareHintsDisabled".to_string()),
    ]
    .into();
    let [reference_side, our_side] = s.sides();
    let ours = wait::until("topology-auto: svcplane's hint events", || async {
        let events = hint_events(&our_side).await?;
        Ok(if events.is_superset(&want) {
            Ok(events)
        } else {
            Err(format!("{events:?}"))
        })
    })
    .await?;
    let reference = hint_events(&reference_side).await?;
    println!("  topology-auto: events in-tree {reference:?}, svcplane {ours:?}");
    s.finish(&["many", "few"]).await
}
