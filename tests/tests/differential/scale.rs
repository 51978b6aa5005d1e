//! Many pods: 0 -> 250 -> 3, a rolling update over three slices, and more than 1000
//! (Endpoints truncation).

use std::sync::Arc;

use anyhow::Result;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::view::{PublishedView, SubsetView};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;

use crate::expect::*;
use crate::harness::{Planes, Scenario, Side};

const READY: (bool, bool, bool) = (true, true, false);
const HTTP: [(&str, i32, &str); 1] = [("http", 8080, "TCP")];

fn replica(i: usize) -> (String, String) {
    (
        format!("r-{i:04}"),
        format!("10.{}.{}.{}", 30 + i / 62500, (i / 250) % 250, i % 250 + 1),
    )
}

fn replicas(
    range: std::ops::Range<usize>,
    node: &str,
    ready: bool,
) -> Vec<(PodTemplate, PodState)> {
    range
        .map(|i| {
            let (name, ip) = replica(i);
            (
                pod(&name, "many", node, ("http", 8080)),
                running(&ip, ready),
            )
        })
        .collect()
}

fn all_ready(service: &str, range: std::ops::Range<usize>, node: &str) -> PublishedView {
    let subset = range.clone().fold(subset(&HTTP), |s: SubsetView, i| {
        let (name, ip) = replica(i);
        s.ready(address(&ip, node, &name))
    });
    let group: Vec<_> = range
        .map(|i| {
            let (name, ip) = replica(i);
            endpoint(&ip, node, None, &name, READY)
        })
        .collect();
    published(
        Some(endpoints([subset], &[])),
        None,
        slices(service, false).group("IPv4", &HTTP, group),
    )
}

async fn delete_pods(side: &Side, range: std::ops::Range<usize>) -> Result<()> {
    let api = side.api::<Pod>();
    futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move { kubelet::force_delete_pod(&api, &replica(i).0).await }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

/// A Service over no pods, then 250 ready pods, then only 3 of them.
pub async fn zero_to_250_to_3(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "scale-node";
    let s = Scenario::start(&planes, "scale").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.create_service(service(
            "many",
            &[("app", "many")],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    let empty = published(
        Some(endpoints([], &[])),
        None,
        slices("many", false).group("IPv4", &[], []),
    );
    s.converge("many", Some(&empty)).await?;

    s.each(|side| async move { side.start_pods(&replicas(0..250, NODE, true)).await })
        .await?;
    s.converge("many", Some(&all_ready("many", 0..250, NODE)))
        .await?;
    let (reference, ours) = s.slice_counts("many").await?;
    println!("  scale: 250 pods in {reference} in-tree slices, {ours} svcplane slices");

    s.each(|side| async move { delete_pods(&side, 3..250).await })
        .await?;
    s.converge("many", Some(&all_ready("many", 0..3, NODE)))
        .await?;
    s.finish(&["many"]).await
}

/// 1010 ready pods: Endpoints keep 1000 and say so; slices hold all 1010.
pub async fn over_capacity(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "capacity-node";
    const PODS: usize = 1010;
    let s = Scenario::start(&planes, "over-capacity").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&replicas(0..PODS, NODE, true)).await?;
        side.create_service(service(
            "big",
            &[("app", "many")],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    // Which 1000 addresses stay is compared between the planes, not predicted.
    s.converge("big", None).await?;
    let (reference, _) = s
        .each(|side| async move { side.published("big").await })
        .await?;
    let view = reference.0;
    let kept: usize = view
        .endpoints
        .iter()
        .flat_map(|e| &e.subsets)
        .map(|s| s.addresses.len() + s.not_ready.len())
        .sum();
    anyhow::ensure!(
        kept == 1000,
        "the Endpoints hold {kept} addresses, not 1000"
    );
    anyhow::ensure!(
        view.over_capacity.as_deref() == Some("truncated"),
        "over-capacity annotation: {:?}",
        view.over_capacity
    );
    anyhow::ensure!(
        view.slice_endpoints == PODS,
        "slices hold {}",
        view.slice_endpoints
    );

    // Back under capacity: the annotation goes.
    s.each(|side| async move { delete_pods(&side, 1000..PODS).await })
        .await?;
    s.converge("big", Some(&all_ready("big", 0..1000, NODE)))
        .await?;
    s.finish(&["big"]).await
}

/// A rolling update of 250 pods spread over three slices (25 new ready pods, then 25 old ones
/// gone, ten times, without waiting for the controllers in between), then a scale-down to 50.
pub async fn rolling_update_then_scale_down(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "rolling-node";
    const BATCH: usize = 25;
    let s = Scenario::start(&planes, "rolling-update").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&replicas(0..250, NODE, true)).await?;
        side.create_service(service(
            "roll",
            &[("app", "many")],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    s.converge("roll", Some(&all_ready("roll", 0..250, NODE)))
        .await?;
    let (reference, ours) = s.slice_counts("roll").await?;
    println!("  rolling-update: 250 pods in {reference} in-tree slices, {ours} svcplane slices");

    for batch in 0..250 / BATCH {
        let old = batch * BATCH..(batch + 1) * BATCH;
        let new = 250 + old.start..250 + old.end;
        s.each(|side| {
            let (old, new) = (old.clone(), new.clone());
            async move {
                side.start_pods(&replicas(new, NODE, true)).await?;
                delete_pods(&side, old).await
            }
        })
        .await?;
    }
    s.converge("roll", Some(&all_ready("roll", 250..500, NODE)))
        .await?;
    let (reference, ours) = s.slice_counts("roll").await?;
    println!(
        "  rolling-update: after the update, {reference} in-tree slices, {ours} svcplane slices"
    );

    s.each(|side| async move { delete_pods(&side, 300..500).await })
        .await?;
    s.converge("roll", Some(&all_ready("roll", 250..300, NODE)))
        .await?;
    s.finish(&["roll"]).await
}
