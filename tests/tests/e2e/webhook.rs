//! svcplane's admission webhook called by a real apiserver: allocation, refusals with the
//! in-tree wording, releases, type transitions, dual-stack, dry-run, endpoint validation.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use allocator::{ClusterIpAllocator, NodePortAllocator};
use anyhow::{Context, Result};
use e2e::{TestEnv, wait};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use webhook::state::RangeAllocation;

const WEBHOOK: &str = "admission webhook \"allocate.services.svcplane.io\" denied the request";

fn service(name: &str, spec: Value) -> Result<Service> {
    Ok(serde_json::from_value(
        json!({ "metadata": { "name": name }, "spec": spec }),
    )?)
}

fn node_port_service(name: &str, node_port: Option<i32>) -> Result<Service> {
    let mut port = json!({ "name": "http", "port": 80, "protocol": "TCP" });
    if let Some(node_port) = node_port {
        port["nodePort"] = json!(node_port);
    }
    service(
        name,
        json!({ "type": "NodePort", "selector": { "app": name }, "ports": [port] }),
    )
}

fn spec(service: &Service) -> k8s_openapi::api::core::v1::ServiceSpec {
    service.spec.clone().unwrap_or_default()
}

/// The error message of a refused create.
async fn refusal(api: &Api<Service>, service: &Service) -> Result<String> {
    match api.create(&PostParams::default(), service).await {
        Ok(created) => anyhow::bail!(
            "expected a refusal, the Service was created: {:?}",
            created.spec
        ),
        Err(kube::Error::Api(status)) => Ok(status.message),
        Err(error) => Err(error.into()),
    }
}

async fn stored_cluster_ips(client: &Client, name: &str) -> Result<ClusterIpAllocator> {
    let object: RangeAllocation = Api::all(client.clone()).get(name).await?;
    Ok(ClusterIpAllocator::from_snapshot(&object.spec.snapshot())?)
}

async fn stored_node_ports(client: &Client) -> Result<NodePortAllocator> {
    let object: RangeAllocation = Api::all(client.clone()).get("node-ports").await?;
    Ok(NodePortAllocator::from_snapshot(&object.spec.snapshot())?)
}

/// The values listed in the reservation entries of svcplane's webhook replicas.
async fn pooled(client: &Client) -> Result<BTreeSet<allocator::Value>> {
    let api: Api<RangeAllocation> = Api::all(client.clone());
    let mut pooled = BTreeSet::new();
    for object in api.list(&Default::default()).await? {
        let kind = object
            .kind()
            .context("a range object svcplane never writes")?;
        for entry in object.spec.reservations.values() {
            pooled.extend(entry.values(kind));
        }
    }
    Ok(pooled)
}

/// A nodePort free in svcplane's state, from `start` up, in the static band that automatic
/// allocation leaves alone: tests that ask for specific ports can run again on a cluster
/// that still holds an earlier run's Services.
async fn free_static_port(client: &Client, start: u16) -> Result<i32> {
    let ports = stored_node_ports(client).await?;
    (start..30086)
        .find(|&port| !ports.has(port))
        .map(i32::from)
        .with_context(|| format!("no free static nodePort from {start}"))
}

/// A Service gets its ClusterIP and nodePort from svcplane's persisted state, and the
/// values existing before svcplane (default/kubernetes) are known to it.
pub async fn allocates_from_the_persisted_state(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-alloc").await?;
    let client = env.client();
    let api: Api<Service> = ns.api();
    let created = api
        .create(
            &PostParams::default(),
            &node_port_service("nginx-basic", None)?,
        )
        .await?;
    let spec = spec(&created);
    let ip: IpAddr = spec.cluster_ip.context("no clusterIP")?.parse()?;
    let node_port = spec.ports.unwrap_or_default()[0]
        .node_port
        .context("no nodePort")?;
    anyhow::ensure!(
        (30000..=32767).contains(&node_port),
        "nodePort {node_port} outside the range"
    );

    let ips = stored_cluster_ips(&client, "cluster-ips-ipv4").await?;
    anyhow::ensure!(ips.has(ip), "{ip} is not in svcplane's stored state");
    anyhow::ensure!(
        ips.has("10.96.0.1".parse()?),
        "default/kubernetes's 10.96.0.1 was not learned"
    );
    let ports = stored_node_ports(&client).await?;
    anyhow::ensure!(
        ports.has(u16::try_from(node_port)?),
        "{node_port} is not in svcplane's stored state"
    );
    Ok(())
}

/// Collisions and out-of-range values are refused by svcplane with the in-tree words and
/// the field named.
pub async fn refuses_taken_and_out_of_range_values(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-refuse").await?;
    let api: Api<Service> = ns.api();
    let taken = free_static_port(&env.client(), 30010).await?;
    api.create(
        &PostParams::default(),
        &node_port_service("first", Some(taken))?,
    )
    .await?;

    let message = refusal(&api, &node_port_service("second", Some(taken))?).await?;
    let expected = format!(
        "{WEBHOOK}: Service \"second\" is invalid: spec.ports[0].nodePort: Invalid value: {taken}: provided port is already allocated"
    );
    anyhow::ensure!(
        message == expected,
        "got:      {message}\nexpected: {expected}"
    );

    let message = refusal(&api, &node_port_service("third", Some(20000))?).await?;
    anyhow::ensure!(
        message.starts_with(WEBHOOK)
            && message.contains("spec.ports[0].nodePort: Invalid value: 20000: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "unexpected refusal: {message}"
    );

    let outside = service(
        "fourth",
        json!({ "clusterIP": "10.200.0.5", "ports": [{ "port": 80 }] }),
    )?;
    let message = refusal(&api, &outside).await?;
    anyhow::ensure!(
        message.starts_with(WEBHOOK)
            && message.contains("spec.clusterIPs: Invalid value: [\"10.200.0.5\"]: failed to allocate IP 10.200.0.5: the provided network does not match the current range"),
        "unexpected refusal: {message}"
    );
    Ok(())
}

/// A deleted Service's nodePort is released once the deletion is observed.
pub async fn releases_on_delete(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-release").await?;
    let api: Api<Service> = ns.api();
    let port = free_static_port(&env.client(), 30030).await?;
    api.create(
        &PostParams::default(),
        &node_port_service("holder", Some(port))?,
    )
    .await?;
    api.delete("holder", &DeleteParams::default()).await?;
    let client = env.client();
    wait::until(
        format!("nodePort {port} released in the stored state"),
        || async {
            Ok(
                if stored_node_ports(&client).await?.has(u16::try_from(port)?) {
                    Err("still allocated")
                } else {
                    Ok(())
                },
            )
        },
    )
    .await?;
    api.create(
        &PostParams::default(),
        &node_port_service("next", Some(port))?,
    )
    .await?;
    Ok(())
}

/// ClusterIP -> NodePort -> ExternalName -> ClusterIP, and TCP + UDP sharing a nodePort.
pub async fn type_transitions_and_shared_ports(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-types").await?;
    let api: Api<Service> = ns.api();
    let client = env.client();
    let created = api
        .create(
            &PostParams::default(),
            &service(
                "web",
                json!({ "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80 }] }),
            )?,
        )
        .await?;
    let ip = spec(&created).cluster_ip.context("no clusterIP")?;

    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "type": "NodePort" } })),
        )
        .await?;
    let node_port = spec(&patched).ports.unwrap_or_default()[0]
        .node_port
        .context("no nodePort after the change to NodePort")?;
    anyhow::ensure!(
        spec(&patched).cluster_ip.as_deref() == Some(ip.as_str()),
        "the clusterIP changed"
    );

    let external = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "type": "ExternalName", "externalName": "tencent.com",
                "clusterIP": null, "clusterIPs": null, "ipFamilies": null, "ipFamilyPolicy": null,
                "selector": null, "ports": [{ "name": "http", "port": 80, "nodePort": null }] } }),
            ),
        )
        .await?;
    anyhow::ensure!(
        spec(&external).cluster_ip.is_none(),
        "ExternalName kept a clusterIP"
    );
    wait::until(
        "the ExternalName change releasing the clusterIP and nodePort",
        || async {
            let ips = stored_cluster_ips(&client, "cluster-ips-ipv4").await?;
            let ports = stored_node_ports(&client).await?;
            // Once released, a value may be taken again by a replica's pool.
            let pooled = pooled(&client).await?;
            let (ip, port) = (ip.parse()?, u16::try_from(node_port)?);
            let held = (ips.has(ip) && !pooled.contains(&allocator::Value::ClusterIp(ip)))
                || (ports.has(port) && !pooled.contains(&allocator::Value::NodePort(port)));
            Ok(if held { Err("still allocated") } else { Ok(()) })
        },
    )
    .await?;

    let back = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "type": "ClusterIP", "externalName": null, "selector": { "app": "web" } } })),
        )
        .await?;
    anyhow::ensure!(
        spec(&back).cluster_ip.is_some(),
        "no clusterIP after the change back to ClusterIP"
    );

    let dns = api
        .create(
            &PostParams::default(),
            &service(
                "dns",
                json!({ "type": "NodePort", "selector": { "app": "dns" }, "ports": [
                { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
                { "name": "dns-udp", "port": 53, "protocol": "UDP" } ] }),
            )?,
        )
        .await?;
    let ports = spec(&dns).ports.unwrap_or_default();
    anyhow::ensure!(
        ports[0].node_port.is_some() && ports[0].node_port == ports[1].node_port,
        "TCP and UDP on port 53 do not share a nodePort: {:?} / {:?}",
        ports[0].node_port,
        ports[1].node_port
    );
    Ok(())
}

/// RequireDualStack gets one address of each family from svcplane.
pub async fn dual_stack(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-dual").await?;
    let api: Api<Service> = ns.api();
    let created = api
        .create(
            &PostParams::default(),
            &service("dual", json!({ "ipFamilyPolicy": "RequireDualStack", "selector": { "app": "dual" }, "ports": [{ "port": 80 }] }))?,
        )
        .await?;
    let spec = spec(&created);
    let ips = spec.cluster_ips.unwrap_or_default();
    anyhow::ensure!(ips.len() == 2, "expected two clusterIPs, got {ips:?}");
    anyhow::ensure!(
        spec.ip_families == Some(vec!["IPv4".into(), "IPv6".into()]),
        "families {:?}",
        spec.ip_families
    );
    let v6 = stored_cluster_ips(&env.client(), "cluster-ips-ipv6").await?;
    anyhow::ensure!(
        v6.has(ips[1].parse()?),
        "{} is not in svcplane's IPv6 state",
        ips[1]
    );
    Ok(())
}

/// A dry-run create reserves nothing: the same nodePort is free for a real create after.
pub async fn dry_run_persists_nothing(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-dry").await?;
    let api: Api<Service> = ns.api();
    let port = free_static_port(&env.client(), 30050).await?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let planned = api
        .create(&dry_run, &node_port_service("rehearsal", Some(port))?)
        .await?;
    anyhow::ensure!(
        spec(&planned).cluster_ip.is_some(),
        "the dry run reported no clusterIP"
    );
    anyhow::ensure!(
        !stored_node_ports(&env.client())
            .await?
            .has(u16::try_from(port)?),
        "the dry run persisted nodePort {port}"
    );
    api.create(
        &PostParams::default(),
        &node_port_service("real", Some(port))?,
    )
    .await?;
    Ok(())
}

/// User-written Endpoints may not point at the service range (kube-apiserver itself
/// refuses loopback and link-local); an external address (the seed's selectorless service)
/// is fine.
pub async fn validates_user_written_endpoints(env: Arc<TestEnv>) -> Result<()> {
    env.ensure_svcplane_webhook().await?;
    let ns = env.namespace("webhook-endpoints").await?;
    let api: Api<Endpoints> = ns.api();
    let endpoints = |ip: &str| -> Result<Endpoints> {
        Ok(serde_json::from_value(json!({
            "metadata": { "name": "service-without-selector" },
            "subsets": [{ "addresses": [{ "ip": ip }], "ports": [{ "name": "http", "port": 80 }] }],
        }))?)
    };
    match api.create(&PostParams::default(), &endpoints("10.96.0.10")?).await {
        Err(kube::Error::Api(status)) => anyhow::ensure!(
            status.message.contains(
                "subsets[0].addresses[0].ip: Invalid value: \"10.96.0.10\": may not be in the service IP range 10.96.0.0/12"
            ),
            "unexpected refusal: {}",
            status.message
        ),
        other => anyhow::bail!("Endpoints pointing at a ClusterIP were not refused: {other:?}"),
    }
    api.create(&PostParams::default(), &endpoints("172.67.185.241")?)
        .await?;
    Ok(())
}
