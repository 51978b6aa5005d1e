//! The seed walkthrough: a Service selecting nginx pods as they appear and become ready.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use e2e::kubelet::{PodState, PodTemplate, create_pod, ensure_node, set_pod_status};
use e2e::view::{AddressView, EndpointsView, ServiceSlicesView, SliceEndpointView, SubsetView};
use e2e::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NODE: &str = "mac-k8s";
const ZONE: &str = "zone-a";
const SERVICE: &str = "nginx-basic";
const FIRST: (&str, &str) = ("nginx-deployment-1", "192.168.185.14");
const SECOND: (&str, &str) = ("nginx-deployment-2", "192.168.185.15");

/// The walkthrough against the in-tree endpoint controllers: proves the harness and pins
/// the reference behaviour svcplane must reproduce.
pub async fn seed_walkthrough_in_tree(env: Arc<TestEnv>) -> Result<()> {
    env.run_reference_endpoint_controllers()?;
    seed_walkthrough(&env).await
}

async fn seed_walkthrough(env: &TestEnv) -> Result<()> {
    let ns = env.namespace("walkthrough").await?;
    ensure_node(&env.client(), NODE, Some(ZONE), "4").await?;
    let pods: Api<Pod> = ns.api();
    let services: Api<Service> = ns.api();

    // 1. One replica whose readiness probe fails.
    start_pod(&pods, FIRST, false).await?;

    // 2. The Service gets a ClusterIP; the pod is listed as not ready.
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": SERVICE },
        "spec": {
            "selector": { "app": "nginx" },
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": 80 }],
        }
    }))?;
    let created = services.create(&PostParams::default(), &service).await?;
    let cluster_ip: IpAddr = created
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no clusterIP")?
        .parse()?;
    let range: ipnet::IpNet = "10.96.0.0/12".parse()?;
    anyhow::ensure!(
        env.control_plane().is_none() || range.contains(&cluster_ip),
        "clusterIP {cluster_ip} is outside {range}"
    );

    let http = SubsetView::default().port("http", 80, "TCP");
    expect_endpoints(
        &ns,
        EndpointsView::default().subset(http.clone().not_ready(address(FIRST))),
    )
    .await?;
    let endpoints: Endpoints = ns.api().get(SERVICE).await?;
    let annotations = endpoints.metadata.annotations.unwrap_or_default();
    anyhow::ensure!(
        annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"),
        "Endpoints lack the last-change-trigger-time annotation: {annotations:?}"
    );
    expect_slices(&ns, [slice_endpoint(FIRST, (false, false, false))]).await?;

    // 3. A second replica, not ready either.
    start_pod(&pods, SECOND, false).await?;
    expect_endpoints(
        &ns,
        EndpointsView::default().subset(
            http.clone()
                .not_ready(address(FIRST))
                .not_ready(address(SECOND)),
        ),
    )
    .await?;
    expect_slices(
        &ns,
        [
            slice_endpoint(FIRST, (false, false, false)),
            slice_endpoint(SECOND, (false, false, false)),
        ],
    )
    .await?;

    // 4. The first becomes ready.
    set_pod_status(&pods, FIRST.0, &PodState::running(FIRST.1, true)).await?;
    expect_endpoints(
        &ns,
        EndpointsView::default().subset(
            http.clone()
                .ready(address(FIRST))
                .not_ready(address(SECOND)),
        ),
    )
    .await?;
    expect_slices(
        &ns,
        [
            slice_endpoint(FIRST, (true, true, false)),
            slice_endpoint(SECOND, (false, false, false)),
        ],
    )
    .await?;

    // 5. publishNotReadyAddresses lists both as ready; serving still tells them apart.
    services
        .patch(
            SERVICE,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "publishNotReadyAddresses": true } })),
        )
        .await?;
    expect_endpoints(
        &ns,
        EndpointsView::default().subset(http.ready(address(FIRST)).ready(address(SECOND))),
    )
    .await?;
    expect_slices(
        &ns,
        [
            slice_endpoint(FIRST, (true, true, false)),
            slice_endpoint(SECOND, (true, false, false)),
        ],
    )
    .await?;
    Ok(())
}

async fn start_pod(pods: &Api<Pod>, (name, ip): (&str, &str), ready: bool) -> Result<()> {
    let template = PodTemplate::new(name, NODE)
        .label("app", "nginx")
        .port("http", 80, "TCP");
    create_pod(pods, &template).await?;
    set_pod_status(pods, name, &PodState::running(ip, ready)).await?;
    Ok(())
}

fn address((name, ip): (&str, &str)) -> AddressView {
    AddressView::pod(ip, NODE, name)
}

fn slice_endpoint((name, ip): (&str, &str), conditions: (bool, bool, bool)) -> SliceEndpointView {
    SliceEndpointView::pod(ip, NODE, Some(ZONE), name, conditions)
}

async fn expect_endpoints(ns: &TestNamespace, expected: EndpointsView) -> Result<()> {
    let api: Api<Endpoints> = ns.api();
    wait::until_eq(
        format!("Endpoints {}/{SERVICE}", ns.name),
        &expected,
        || async {
            Ok(match api.get_opt(SERVICE).await? {
                Some(endpoints) => EndpointsView::of(&endpoints),
                None => EndpointsView::default(),
            })
        },
    )
    .await?;
    Ok(())
}

async fn expect_slices(
    ns: &TestNamespace,
    endpoints: impl IntoIterator<Item = SliceEndpointView>,
) -> Result<()> {
    let expected = ServiceSlicesView::default()
        .group("IPv4", &[("http", 80, "TCP")], endpoints)
        .labels(&[("kubernetes.io/service-name", SERVICE)]);
    let api: Api<EndpointSlice> = ns.api();
    let selector = format!("kubernetes.io/service-name={SERVICE}");
    wait::until_eq(
        format!("EndpointSlices of {}/{SERVICE}", ns.name),
        &expected,
        || async {
            let slices = api.list(&ListParams::default().labels(&selector)).await?;
            Ok(ServiceSlicesView::of(&slices.items))
        },
    )
    .await?;
    Ok(())
}
