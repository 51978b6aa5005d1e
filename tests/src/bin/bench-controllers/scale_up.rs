//! The scale-up scenario: one Service, then its pods in batches; and the final check both
//! scenarios end with.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::process::Resources;
use e2e::writes::{WriteCounter, Writes};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::audit::{self, Reactions};
use crate::plane::{Run, create_service, pod_ip, start_pods_in_batches};
use crate::published::{Goal, Published, is_mirrored, is_truncated, wait_for, watch_published};
use crate::report::seconds;
use crate::write_requests::WriteRequests;
use crate::{MAX_ENDPOINTS_PER_SLICE, Options, QUIET, Side};

pub struct ScaleUp {
    pub side: Side,
    pub load: String,
    pub pods_written: Duration,
    pub slices_complete: Duration,
    pub endpoints_complete: Duration,
    pub last_write: Duration,
    /// From the audit log: the controller's reaction to each pod status write.
    pub reactions: Reactions,
    pub writes: Writes,
    pub requests: WriteRequests,
    pub slices: usize,
    pub correct: String,
    pub resources: Resources,
}

pub async fn scale_up(side: Side, options: &Options) -> Result<ScaleUp> {
    const NS: &str = "scale";
    let (run, load) = Run::for_scenario("scale-up", NS, side, options).await?;
    let client = &run.client;
    let counter = WriteCounter::start(client, NS).await?;
    let published = Published::new(Goal {
        pods: options.pods,
        endpoints: 1,
        endpoints_ready: options.pods.min(1000),
        truncated: usize::from(options.pods > 1000),
    });
    let watches = watch_published(client, NS, &published);
    let requests_before = WriteRequests::read(client).await?;
    create_service(client, NS, "big", "big").await?;
    let pods: Vec<(String, String)> = (0..options.pods)
        .map(|i| (format!("big-{i:05}"), "big".to_string()))
        .collect();

    let start = Instant::now();
    let started = Timestamp::now();
    start_pods_in_batches(client, NS, &pods, options.nodes, options.batch).await?;
    let pods_written = start.elapsed();
    eprintln!(
        "scale-up, {side}: {} pods written in {}",
        options.pods,
        seconds(pods_written)
    );

    wait_for("the slices and the Endpoints", options.limit(), || {
        published.lock().unwrap().missing()
    })
    .await?;
    let (slices_done, endpoints_done) = {
        let p = published.lock().unwrap();
        (p.slices_done, p.endpoints_done)
    };
    let since_start =
        |t: Option<Instant>| t.map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    let writes = counter.settled(QUIET, options.limit()).await;
    let requests = WriteRequests::read(client).await?.since(requests_before);
    let last_write = published
        .lock()
        .unwrap()
        .last_write
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    let resources = run.resources()?;
    // One Service: every write in the namespace is its.
    let reactions = audit::reactions(
        &run.audit_log(),
        NS,
        started..,
        |_| Some("big".into()),
        None,
    )?;
    let (correct, slices) = check_final(client, NS, &pods).await?;
    for watch in watches {
        watch.abort();
    }
    Ok(ScaleUp {
        side,
        load,
        pods_written,
        slices_complete: since_start(slices_done),
        endpoints_complete: since_start(endpoints_done),
        last_write,
        reactions,
        writes,
        requests,
        slices,
        correct,
        resources,
    })
}

/// Lists the slices and Endpoints again and checks them against the pods (all ready, each
/// once, with its IP; slices within the maximum; Endpoints truncated to 1000 with the
/// annotation when over). Returns "yes" or what is wrong, and the number of slices.
pub async fn check_final(
    client: &Client,
    namespace: &str,
    pods: &[(String, String)],
) -> Result<(String, usize)> {
    let ips: HashMap<&str, String> = pods
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), pod_ip(i)))
        .collect();
    let mut problems = Vec::new();
    let slices: Vec<EndpointSlice> = Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| !is_mirrored(s))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for slice in &slices {
        let endpoints = slice.endpoints.as_deref().unwrap_or_default();
        if endpoints.len() > MAX_ENDPOINTS_PER_SLICE as usize {
            problems.push(format!(
                "slice {:?} holds {}",
                slice.metadata.name,
                endpoints.len()
            ));
        }
        for endpoint in endpoints {
            let pod = endpoint
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_default();
            *seen.entry(pod.clone()).or_default() += 1;
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            let ip_right = ips.get(pod.as_str()) == endpoint.addresses.first();
            if !ready || !ip_right {
                problems.push(format!(
                    "slice endpoint of {pod}: ready {ready}, IP right {ip_right}"
                ));
            }
        }
    }
    let once = seen.values().filter(|n| **n == 1).count();
    if once != pods.len() || seen.len() != pods.len() {
        problems.push(format!(
            "{} of {} pods in exactly one slice, {} pods in slices",
            once,
            pods.len(),
            seen.len()
        ));
    }
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let mut per_service: HashMap<&str, usize> = HashMap::new();
    for (_, service) in pods {
        *per_service.entry(service.as_str()).or_default() += 1;
    }
    for object in &endpoints {
        let name = object.metadata.name.clone().unwrap_or_default();
        let Some(&selected) = per_service.get(name.as_str()) else {
            continue;
        };
        let mut ready = 0;
        for subset in object.subsets.iter().flatten() {
            if subset
                .not_ready_addresses
                .as_ref()
                .is_some_and(|a| !a.is_empty())
            {
                problems.push(format!("Endpoints {name} has not-ready addresses"));
            }
            for address in subset.addresses.iter().flatten() {
                let pod = address
                    .target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_default();
                if ips.get(pod.as_str()) != Some(&address.ip) {
                    problems.push(format!("Endpoints {name}: {pod} with IP {}", address.ip));
                }
                ready += 1;
            }
        }
        let truncated = is_truncated(object);
        if ready != selected.min(1000) || truncated != (selected > 1000) {
            problems.push(format!(
                "Endpoints {name}: {ready} ready addresses, truncated {truncated}"
            ));
        }
    }
    if endpoints
        .iter()
        .filter(|e| per_service.contains_key(e.metadata.name.as_deref().unwrap_or("")))
        .count()
        != per_service.len()
    {
        problems.push("Endpoints missing".into());
    }
    let verdict = if problems.is_empty() {
        "yes".to_string()
    } else {
        problems.truncate(3);
        format!("NO: {}", problems.join("; "))
    };
    Ok((verdict, slices.len()))
}
