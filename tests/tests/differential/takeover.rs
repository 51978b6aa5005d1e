//! Taking over from the in-tree controllers on a live control plane of its own: svcplane must
//! adopt their Endpoints and slices as they are (no rewrite storm, no second set of slices),
//! and then change only what a later change needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use controllers::runtime::ControllersConfig;
use e2e::view::PublishedView;
use e2e::writes::WriteCounter;
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS, create_namespace, wait};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use plumbing::lease::LeaderElectionConfig;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::expect::*;
use crate::harness::{IN_TREE_MANAGER, Planes, Side};

const NODE: &str = "takeover-node";
const READY: (bool, bool, bool) = (true, true, false);
const HTTP: [(&str, i32, &str); 1] = [("http", 8080, "TCP")];
const PODS: usize = 150;

fn ip(i: usize) -> String {
    format!("10.50.{}.{}", i / 200, i % 200 + 1)
}

fn expected(ready: &[bool]) -> PublishedView {
    let mut subset = subset(&HTTP);
    for (i, ready) in ready.iter().enumerate() {
        let address = address(&ip(i), NODE, &format!("t{i:03}"));
        subset = if *ready {
            subset.ready(address)
        } else {
            subset.not_ready(address)
        };
    }
    let group = ready.iter().enumerate().map(|(i, ready)| {
        let conditions = if *ready { READY } else { (false, false, false) };
        endpoint(&ip(i), NODE, None, &format!("t{i:03}"), conditions)
    });
    published(
        Some(endpoints([subset], &[])),
        None,
        slices("web", false).group("IPv4", &HTTP, group),
    )
}

/// Name -> (resourceVersion, managed-by) of the slices of `web`.
async fn slice_versions(side: &Side) -> Result<BTreeMap<String, (String, String)>> {
    let slices: Api<EndpointSlice> = side.api();
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|s| {
            let manager = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by").cloned())
                .unwrap_or_default();
            (
                s.metadata.name.unwrap_or_default(),
                (s.metadata.resource_version.unwrap_or_default(), manager),
            )
        })
        .collect())
}

async fn wait_for(side: &Side, what: &str, want: &PublishedView) -> Result<()> {
    wait::until_eq(what.to_string(), want, || async {
        Ok(side.published("web").await?.0)
    })
    .await?;
    Ok(())
}

fn successful_slice_syncs(registry: &Registry) -> u64 {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text.lines()
        .find(|l| l.starts_with("endpoint_slice_controller_syncs_total{result=\"success\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A control plane of its own, kube-controller-manager's endpoint controllers on it, and
/// `namespace` with the Node the pods run on.
async fn in_tree_plane(namespace: &'static str) -> Result<(ControlPlane, Side)> {
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    plane.start_controller_manager(ENDPOINT_CONTROLLERS)?;
    let client = plane.client().await?;
    create_namespace(&client, namespace).await?;
    let side = Side {
        label: namespace,
        slice_manager: IN_TREE_MANAGER,
        client,
        namespace: namespace.into(),
    };
    side.node(NODE, None).await?;
    Ok((plane, side))
}

/// 150 pods behind a Service, published by kube-controller-manager in two slices; then
/// kube-controller-manager stops and svcplane starts on the same cluster.
pub async fn from_in_tree(_planes: Arc<Planes>) -> Result<()> {
    let (plane, side) = in_tree_plane("takeover").await?;
    let (client, namespace) = (side.client.clone(), side.namespace.as_str());
    let pods: Vec<_> = (0..PODS)
        .map(|i| {
            (
                pod(&format!("t{i:03}"), "web", NODE, ("http", 8080)),
                running(&ip(i), true),
            )
        })
        .collect();
    side.start_pods(&pods).await?;
    side.create_service(service(
        "web",
        &[("app", "web")],
        &[("http", 80, "TCP", "http")],
    ))
    .await?;
    let mut ready = vec![true; PODS];
    wait_for(&side, "in-tree publishes web", &expected(&ready)).await?;
    let before = slice_versions(&side).await?;
    let endpoints_version = || async {
        Ok::<_, anyhow::Error>(
            side.api::<Endpoints>()
                .get("web")
                .await?
                .metadata
                .resource_version,
        )
    };
    let endpoints_before = endpoints_version().await?;

    plane.stop_controller_manager();
    let counter = WriteCounter::start(&client, namespace).await?;
    let mut registry = Registry::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = ControllersConfig {
        leader_election: LeaderElectionConfig {
            enabled: false,
            ..LeaderElectionConfig::default()
        },
        ..ControllersConfig::default()
    };
    let run = controllers::runtime::run(client.clone(), config, &mut registry, async {
        let _ = stopped.await;
    });
    let mut readiness = run.readiness();
    anyhow::ensure!(!readiness.is_ready(), "ready before its caches synced");
    let controllers = tokio::spawn(run);
    let synced = tokio::time::timeout(wait::wait_limit(), readiness.ready()).await;
    anyhow::ensure!(matches!(synced, Ok(true)), "not ready: {synced:?}");

    // 1. svcplane syncs the Service and writes nothing: the in-tree objects already say it.
    wait::until("svcplane syncs web", || async {
        let syncs = successful_slice_syncs(&registry);
        // Two Services: default/kubernetes (selectorless, nothing to do) and web.
        Ok(if syncs >= 2 { Ok(()) } else { Err(syncs) })
    })
    .await?;
    let writes = counter
        .settled(Duration::from_secs(2), wait::wait_limit())
        .await;
    anyhow::ensure!(writes.total() == 0, "taking over rewrote objects: {writes}");
    anyhow::ensure!(slice_versions(&side).await? == before, "slices changed");
    anyhow::ensure!(
        endpoints_version().await? == endpoints_before,
        "Endpoints changed"
    );

    // 2. One pod turns not ready: one slice and the Endpoints are written, and only the
    //    written slice changes hands.
    side.set_pod("t007", &running(&ip(7), false)).await?;
    ready[7] = false;
    wait_for(&side, "svcplane publishes the change", &expected(&ready)).await?;
    let writes = counter
        .settled(Duration::from_secs(2), wait::wait_limit())
        .await;
    let after = slice_versions(&side).await?;
    let changed: Vec<_> = after
        .iter()
        .filter(|(name, version)| before.get(*name) != Some(version))
        .collect();
    println!(
        "  takeover: {} in-tree slices adopted; one pod change: {writes}; slices rewritten: {changed:?}",
        before.len()
    );
    anyhow::ensure!(
        writes.endpoints.total() == 1 && writes.slices.total() == 1,
        "one Endpoints update and one slice update expected: {writes}"
    );
    anyhow::ensure!(after.len() == before.len(), "the set of slices changed");
    let svcplane = controllers::well_known::SVCPLANE_SLICE_MANAGER;
    anyhow::ensure!(
        changed.len() == 1 && changed[0].1.1 == svcplane,
        "the written slice should now be svcplane's: {changed:?}"
    );

    let _ = stop.send(());
    controllers
        .await
        .context("svcplane's controllers panicked")?
        .context("svcplane's controllers failed")?;
    anyhow::ensure!(!readiness.is_ready(), "still ready after stopping");
    Ok(())
}

const SERVICES: usize = 50;
const PODS_PER_SERVICE: usize = 3;

fn many_ip(service: usize, pod: usize) -> String {
    format!("10.60.{service}.{}", pod + 1)
}

fn many_pod(service: usize, pod: usize) -> String {
    format!("s{service:02}-p{pod}")
}

/// What every Service of the takeover-and-back scenario publishes; `not_ready` holds the
/// (service, pod) pairs turned not ready.
fn expected_many(service: usize, not_ready: &[(usize, usize)]) -> PublishedView {
    let name = format!("svc-{service:02}");
    let mut subset = subset(&HTTP);
    let mut group = Vec::new();
    for pod in 0..PODS_PER_SERVICE {
        let ready = !not_ready.contains(&(service, pod));
        let address = address(&many_ip(service, pod), NODE, &many_pod(service, pod));
        subset = if ready {
            subset.ready(address)
        } else {
            subset.not_ready(address)
        };
        let conditions = if ready { READY } else { (false, false, false) };
        group.push(endpoint(
            &many_ip(service, pod),
            NODE,
            None,
            &many_pod(service, pod),
            conditions,
        ));
    }
    published(
        Some(endpoints([subset], &[])),
        None,
        slices(&name, false).group("IPv4", &HTTP, group),
    )
}

async fn wait_for_all(side: &Side, what: &str, not_ready: &[(usize, usize)]) -> Result<()> {
    for service in 0..SERVICES {
        let name = format!("svc-{service:02}");
        wait::until_eq(
            format!("{what}: {name}"),
            &expected_many(service, not_ready),
            || async { Ok(side.published(&name).await?.0) },
        )
        .await?;
    }
    Ok(())
}

/// The poller's task: how many polls it made, and what it saw listed twice.
type DuplicatePoller = tokio::task::JoinHandle<Result<(u64, Vec<String>)>>;

/// Polls every slice of `namespace` until stopped and counts the instants at which one
/// pod of a Service is listed by slices of two different managers: what a consumer would
/// see as duplicate endpoints.
fn watch_for_duplicates(
    client: kube::Client,
    namespace: &str,
) -> (oneshot::Sender<()>, DuplicatePoller) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let task = tokio::spawn(async move {
        let (mut polls, mut duplicates) = (0u64, Vec::new());
        loop {
            let list = api.list(&ListParams::default()).await?;
            polls += 1;
            let mut managers: BTreeMap<(String, String), std::collections::BTreeSet<String>> =
                BTreeMap::new();
            for slice in &list.items {
                let labels = slice.metadata.labels.clone().unwrap_or_default();
                let service = labels
                    .get("kubernetes.io/service-name")
                    .cloned()
                    .unwrap_or_default();
                let manager = labels
                    .get("endpointslice.kubernetes.io/managed-by")
                    .cloned()
                    .unwrap_or_default();
                for endpoint in slice.endpoints.iter().flatten() {
                    let pod = endpoint
                        .target_ref
                        .as_ref()
                        .and_then(|r| r.name.clone())
                        .unwrap_or_default();
                    managers
                        .entry((service.clone(), pod))
                        .or_default()
                        .insert(manager.clone());
                }
            }
            duplicates.extend(
                managers
                    .into_iter()
                    .filter(|(_, m)| m.len() > 1)
                    .map(|((service, pod), m)| format!("{service}/{pod} listed by {m:?}")),
            );
            tokio::select! {
                _ = &mut stopped => return Ok((polls, duplicates)),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    (stop, task)
}

/// What an operator does to hand back: give svcplane's objects the in-tree managed-by values
/// (the in-tree controllers then adopt them instead of creating a second set, and the
/// in-tree mirroring controller does not take svcplane's Endpoints for user-written ones).
async fn relabel_for_in_tree(side: &Side) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    let slices: Api<EndpointSlice> = side.api();
    let selector = format!(
        "endpointslice.kubernetes.io/managed-by={}",
        controllers::well_known::SVCPLANE_SLICE_MANAGER
    );
    for slice in slices
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let patch = serde_json::json!({ "metadata": { "labels": { "endpointslice.kubernetes.io/managed-by": IN_TREE_MANAGER } } });
        slices
            .patch(
                &slice.metadata.name.unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    let endpoints: Api<Endpoints> = side.api();
    let selector = format!(
        "endpoints.kubernetes.io/managed-by={}",
        controllers::well_known::SVCPLANE_ENDPOINTS_MANAGER
    );
    for object in endpoints
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let patch = serde_json::json!({ "metadata": { "labels": { "endpoints.kubernetes.io/managed-by": "endpoint-controller" } } });
        endpoints
            .patch(
                &object.metadata.name.unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(())
}

/// 50 Services published by kube-controller-manager; it stops and svcplane takes over; then
/// svcplane stops and kube-controller-manager takes back. A poller checks throughout that no
/// consumer ever sees a pod listed by slices of two managers, and every step converges.
pub async fn fifty_services_and_back(_planes: Arc<Planes>) -> Result<()> {
    let (plane, side) = in_tree_plane("takeover-many").await?;
    let (client, namespace) = (side.client.clone(), side.namespace.as_str());
    let pods: Vec<_> = (0..SERVICES)
        .flat_map(|s| (0..PODS_PER_SERVICE).map(move |p| (s, p)))
        .map(|(s, p)| {
            (
                pod(
                    &many_pod(s, p),
                    &format!("svc-{s:02}"),
                    NODE,
                    ("http", 8080),
                ),
                running(&many_ip(s, p), true),
            )
        })
        .collect();
    side.start_pods(&pods).await?;
    for s in 0..SERVICES {
        let name = format!("svc-{s:02}");
        side.create_service(service(
            &name,
            &[("app", &name)],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
    }
    wait_for_all(&side, "in-tree publishes", &[]).await?;

    let (stop_watch, duplicates) = watch_for_duplicates(client.clone(), namespace);
    let counter = WriteCounter::start(&client, namespace).await?;

    // svcplane takes over, then ten pods change.
    plane.stop_controller_manager();
    let mut registry = Registry::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = ControllersConfig {
        leader_election: LeaderElectionConfig {
            enabled: false,
            ..LeaderElectionConfig::default()
        },
        ..ControllersConfig::default()
    };
    let run = controllers::runtime::run(client.clone(), config, &mut registry, async {
        let _ = stopped.await;
    });
    let mut readiness = run.readiness();
    let controllers = tokio::spawn(run);
    let synced = tokio::time::timeout(wait::wait_limit(), readiness.ready()).await;
    anyhow::ensure!(matches!(synced, Ok(true)), "svcplane not ready: {synced:?}");
    let adopted = counter
        .settled(Duration::from_secs(2), wait::wait_limit())
        .await;
    let mut not_ready = Vec::new();
    for s in 0..10 {
        side.set_pod(&many_pod(s, 0), &running(&many_ip(s, 0), false))
            .await?;
        not_ready.push((s, 0));
    }
    wait_for_all(&side, "svcplane publishes", &not_ready).await?;
    let svcplane_writes = counter
        .settled(Duration::from_secs(2), wait::wait_limit())
        .await;

    // Hand back: svcplane stops, its objects are relabelled, kube-controller-manager starts
    // again, and ten more pods change.
    let _ = stop.send(());
    controllers
        .await
        .context("svcplane's controllers panicked")?
        .context("svcplane's controllers failed")?;
    relabel_for_in_tree(&side).await?;
    plane.start_controller_manager(ENDPOINT_CONTROLLERS)?;
    for s in 10..20 {
        side.set_pod(&many_pod(s, 1), &running(&many_ip(s, 1), false))
            .await?;
        not_ready.push((s, 1));
    }
    wait_for_all(&side, "in-tree publishes again", &not_ready).await?;
    let handback_writes = counter
        .settled(Duration::from_secs(2), wait::wait_limit())
        .await;

    let _ = stop_watch.send(());
    let (polls, duplicates) = duplicates
        .await
        .context("the duplicate poller panicked")??;
    println!(
        "  takeover of {SERVICES} Services: {polls} polls of every slice, {} instants with a pod listed by two managers; \
         writes: adoption {adopted}; with 10 pod changes (cumulative) {svcplane_writes}; after handing back and 10 more {handback_writes}",
        duplicates.len()
    );
    anyhow::ensure!(polls >= 10, "the poller ran only {polls} times");
    anyhow::ensure!(
        duplicates.is_empty(),
        "consumers saw duplicate endpoints: {:?}",
        &duplicates[..duplicates.len().min(5)]
    );
    anyhow::ensure!(
        adopted.total() == 0,
        "taking over rewrote objects: {adopted}"
    );
    Ok(())
}
