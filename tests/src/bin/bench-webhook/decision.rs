//! The webhook's decision alone, timed in this process on the reviews of the burst's creates.

use std::time::{Duration, Instant};

use allocator::{Allocators, ClusterIpAllocator, NodePortAllocator, PortRange};
use anyhow::Result;
use serde_json::json;
use webhook::review;
use webhook::services::mutate_service;
use webhook::state::{InMemoryAllocation, UnconfirmedConfig};

use crate::shape;

/// The AdmissionReview the apiserver sends for creating Service `i` of the burst.
fn review_body(i: usize) -> Result<Vec<u8>> {
    let name = format!("svc-{i}");
    let mut object = serde_json::to_value(shape(&name, i))?;
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("Service");
    object["metadata"]["namespace"] = json!("bench");
    object["spec"]["sessionAffinity"] = json!("None");
    object["spec"]["internalTrafficPolicy"] = json!("Cluster");
    object["spec"]["ports"][0]["targetPort"] = json!(80);
    Ok(serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "kind": { "group": "", "version": "v1", "kind": "Service" },
            "resource": { "group": "", "version": "v1", "resource": "services" },
            "requestKind": { "group": "", "version": "v1", "kind": "Service" },
            "requestResource": { "group": "", "version": "v1", "resource": "services" },
            "name": name,
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": { "username": "system:admin", "groups": ["system:masters", "system:authenticated"] },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1" },
        }
    }))?)
}

/// The webhook's decision alone, per review, one after the other: decode, the mutating
/// pipeline on in-memory allocators (what the store plans, without its write), encode the
/// answer. What `mutate-services` does besides queueing for and waiting on the write that
/// persists the allocation.
pub async fn decision_times(count: usize) -> Result<Vec<Duration>> {
    let allocators = Allocators::new(
        vec![
            ClusterIpAllocator::new("10.96.0.0/12".parse()?),
            ClusterIpAllocator::new("fd00:10:96::/112".parse()?),
        ],
        NodePortAllocator::new(PortRange::default()),
    )?;
    // Nothing confirms values here: no per-namespace limit.
    let unconfirmed = UnconfirmedConfig {
        per_namespace: usize::MAX,
        ..UnconfirmedConfig::default()
    };
    let allocation = InMemoryAllocation::new(allocators, unconfirmed);
    let bodies = (0..count).map(review_body).collect::<Result<Vec<_>>>()?;
    let mut times = Vec::with_capacity(count);
    for body in &bodies {
        let started = Instant::now();
        let request = review::decode(body).map_err(anyhow::Error::msg)?;
        let response = mutate_service(&request, &allocation).await;
        anyhow::ensure!(
            response.allowed && response.patch.is_some(),
            "a benchmark create was not allocated: {}",
            response.result.message
        );
        let encoded = serde_json::to_vec(&response.into_review())?;
        std::hint::black_box(encoded);
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}
