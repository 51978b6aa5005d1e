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

/// PreferClose, PreferSameZone and PreferSameNode over ready and not-ready pods in two zones;
/// then the field removed from one Service strips its hints.
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
        ] {
            let mut manifest = service(name, &[("app", "td")], &[("http", 80, "TCP", "http")]);
            manifest["spec"]["trafficDistribution"] = json!(distribution);
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
    for (name, want) in [
        ("close", zone_hints(&["td-zone-a"], &["td-zone-b"])),
        ("same-zone", zone_hints(&["td-zone-a"], &["td-zone-b"])),
        (
            "same-node",
            zone_hints(
                &["td-zone-a", "node:td-node-a"],
                &["td-zone-b", "node:td-node-b"],
            ),
        ),
    ] {
        s.converge(name, None).await?;
        let (reference, ours) = s
            .each(|side| async move { hints(&side, name).await })
            .await?;
        anyhow::ensure!(reference == want, "in-tree hints of {name}: {reference:?}");
        anyhow::ensure!(ours == want, "svcplane hints of {name}: {ours:?}");
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
    s.finish(&["close", "same-zone", "same-node"]).await
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
