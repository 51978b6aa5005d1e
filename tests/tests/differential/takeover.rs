//! Taking over from the in-tree controllers on a live control plane of its own: svcplane must
//! adopt their Endpoints and slices as they are (no rewrite storm, no second set of slices),
//! and then change only what a later change needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use controllers::runtime::{ControllersConfig, LeaderElectionConfig};
use e2e::view::PublishedView;
use e2e::writes::WriteCounter;
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS, wait};
use k8s_openapi::api::core::v1::{Endpoints, Namespace};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
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

/// 150 pods behind a Service, published by kube-controller-manager in two slices; then
/// kube-controller-manager stops and svcplane starts on the same cluster.
pub async fn from_in_tree(_planes: Arc<Planes>) -> Result<()> {
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    plane.start_controller_manager(ENDPOINT_CONTROLLERS)?;
    let client = plane.client().await?;
    let namespace = "takeover";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(namespace.into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    let side = Side {
        label: "takeover",
        slice_manager: IN_TREE_MANAGER,
        client: client.clone(),
        namespace: namespace.into(),
    };
    side.node(NODE, None).await?;
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
