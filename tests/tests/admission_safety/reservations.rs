//! Cases: what a Service kube-apiserver refuses after the webhook answered leaves held, and
//! what one tenant can hold.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use e2e::harness::Case;
use e2e::svcplane::{self, WebhookReplica};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace, wait};
use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use webhook::state::{PoolConfig, RangeAllocation, UnconfirmedConfig};

pub fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![
        a_service_kube_apiserver_refuses_holds_nothing,
        a_tenant_resending_refused_creates_cannot_stop_other_namespaces,
        values_of_created_services_are_kept,
        a_replica_with_other_ranges_refuses_to_start_and_changes_nothing,
    ]
}

/// How long values wait for their Service in these cases: short, so that a case sees them
/// given back.
const TIMEOUT: Duration = Duration::from_secs(3);

struct Cluster {
    replica: WebhookReplica,
    client: Client,
    _plane: ControlPlane,
}

/// A control plane with one replica without pools (so that the stored node-port count is
/// exactly what Services and admissions hold), values waiting `TIMEOUT`, at most
/// `per_namespace` unconfirmed per namespace.
async fn cluster(per_namespace: usize) -> Result<Cluster> {
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let client = plane.client().await?;
    svcplane::install_crd(&client).await?;
    let mut config = svcplane::webhook_config(&plane)?;
    config.pool = PoolConfig::OFF;
    config.unconfirmed = UnconfirmedConfig {
        timeout: TIMEOUT,
        per_namespace,
    };
    let ca = std::fs::read(plane.dir().join("ca.crt"))?;
    let replica = svcplane::start_replica(client.clone(), config).await?;
    svcplane::register(&client, &replica.url, ca, false).await?;
    svcplane::wait_until_called(&client, replica.admin).await?;
    Ok(Cluster {
        replica,
        client,
        _plane: plane,
    })
}

/// A ResourceQuota allowing no node port in `namespace`. kube-apiserver enforces what a
/// quota's status says; with no kube-controller-manager here, the case writes the status the
/// quota controller would.
async fn no_node_port_quota(client: &Client, namespace: &str) -> Result<()> {
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), namespace);
    let hard = json!({ "services.nodeports": "0" });
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "no-node-ports" },
                "spec": { "hard": hard },
            }))?,
        )
        .await?;
    quotas
        .patch_status(
            "no-node-ports",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "hard": hard, "used": hard } })),
        )
        .await?;
    Ok(())
}

/// How many node ports svcplane's stored state holds.
async fn stored_node_ports(client: &Client) -> Result<u64> {
    let api: Api<RangeAllocation> = Api::all(client.clone());
    Ok(api.get("node-ports").await?.spec.used)
}

fn node_port_service(name: &str, ports: usize) -> Result<Service> {
    let ports: Vec<_> = (0..ports)
        .map(|i| json!({ "name": format!("p{i}"), "port": 1000 + i }))
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "type": "NodePort", "ports": ports },
    }))?)
}

fn api_error(result: kube::Result<Service>) -> Result<kube::core::Status> {
    match result {
        Ok(service) => bail!("created {:?}, expected a refusal", service.metadata.name),
        Err(kube::Error::Api(status)) => Ok(*status),
        Err(error) => Err(error.into()),
    }
}

/// Refused by kube-apiserver's validation (checked by the webhook before reserving), by the
/// name being taken and by a ResourceQuota: nothing stays held once `TIMEOUT` has passed,
/// and NodePort creates in the same namespace go on meanwhile.
async fn a_service_kube_apiserver_refuses_holds_nothing(_: Arc<()>) -> Result<()> {
    let cluster = cluster(UnconfirmedConfig::default().per_namespace).await?;
    let client = &cluster.client;
    create_namespace(client, "tenant").await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "tenant");
    let baseline = stored_node_ports(client).await?;

    // 2,768 unnamed ports: every node port of the default range, refused by validation.
    let unnamed: Service = serde_json::from_value(json!({
        "metadata": { "name": "all-ports" },
        "spec": {
            "type": "NodePort",
            "ports": (1..=2768).map(|port| json!({ "port": port })).collect::<Vec<_>>(),
        },
    }))?;
    let refusal = api_error(services.create(&PostParams::default(), &unnamed).await)?;
    eprintln!(
        "2,768 unnamed ports: {} {}",
        refusal.code,
        refusal.message.chars().take(160).collect::<String>()
    );
    ensure!(refusal.code == 422, "{refusal:?}");
    ensure!(
        refusal
            .message
            .contains("spec.ports[0].name: Required value"),
        "{}",
        refusal.message
    );
    ensure!(
        stored_node_ports(client).await? == baseline,
        "a Service refused by validation reserved node ports"
    );

    // A name already taken: the webhook answers, then kube-apiserver refuses the create.
    services
        .create(&PostParams::default(), &node_port_service("taken", 1)?)
        .await?;
    let refusal = api_error(
        services
            .create(&PostParams::default(), &node_port_service("taken", 3)?)
            .await,
    )?;
    ensure!(refusal.code == 409, "{refusal:?}");

    // A quota of no node ports: refused by the quota admission after the webhook.
    no_node_port_quota(client, "tenant").await?;
    wait::until("the quota enforced", || async {
        let refused = services
            .create(&PostParams::default(), &node_port_service("over-quota", 5)?)
            .await;
        Ok(match refused {
            Err(kube::Error::Api(status)) if status.message.contains("exceeded quota") => Ok(()),
            Ok(_) => {
                services
                    .delete("over-quota", &DeleteParams::default())
                    .await?;
                Err("created".to_string())
            }
            Err(error) => Err(error.to_string()),
        })
    })
    .await?;
    let held_right_after = stored_node_ports(client).await?;
    eprintln!(
        "node ports stored: {baseline} before, {held_right_after} right after the refusals (1 held by Service taken)"
    );
    ensure!(
        held_right_after > baseline + 1,
        "the refused creates were given no node port: the case tests nothing"
    );

    // The values of refused creates are given back after the timeout; only the Service
    // that exists keeps its node port.
    wait::until_eq("node ports stored", &(baseline + 1), || async {
        stored_node_ports(client).await
    })
    .await?;
    Ok(())
}

/// One namespace resends creates that kube-apiserver refuses after the webhook answered
/// (its quota allows no node port): it is held to its limit of unconfirmed values (HTTP
/// 429 beyond), and another namespace's NodePort creates keep succeeding throughout.
async fn a_tenant_resending_refused_creates_cannot_stop_other_namespaces(_: Arc<()>) -> Result<()> {
    const LIMIT: usize = 20;
    let cluster = cluster(LIMIT).await?;
    let client = &cluster.client;
    create_namespace(client, "hostile").await?;
    create_namespace(client, "neighbour").await?;
    no_node_port_quota(client, "hostile").await?;
    let hostile: Api<Service> = Api::namespaced(client.clone(), "hostile");
    let neighbour: Api<Service> = Api::namespaced(client.clone(), "neighbour");
    let baseline = stored_node_ports(client).await?;

    // The webhook's refusals: the client retries an HTTP 429 on its own (kube-rs's
    // default), so the client mostly sees the quota's refusal of a later try.
    let denied = "svcplane_admission_reviews_total{webhook=\"mutate-services\",allowed=\"false\"";
    let denied_before = svcplane::metric_sum(cluster.replica.admin, denied).await?;
    let mut refusals = BTreeSet::new();
    let mut peak = 0;
    const ROUNDS: u64 = 6;
    for round in 0..ROUNDS {
        // Eight creates of four node ports at once: more than the limit in one round.
        let service = node_port_service("again", 4)?;
        let params = PostParams::default();
        let creates = (0..8).map(|_| hostile.create(&params, &service));
        for outcome in futures::future::join_all(creates).await {
            let error = api_error(outcome)?;
            refusals.insert(format!("{} {}", error.code, error.reason));
        }
        let name = format!("neighbour-{round}");
        neighbour
            .create(&PostParams::default(), &node_port_service(&name, 1)?)
            .await
            .with_context(|| format!("the neighbour's create {round} failed"))?;
        let held = stored_node_ports(client)
            .await?
            .saturating_sub(baseline + round + 1);
        peak = peak.max(held);
    }
    let too_many = svcplane::metric_sum(cluster.replica.admin, denied).await? - denied_before;
    eprintln!(
        "hostile refusals seen: {refusals:?}; webhook refusals (429): {too_many}; most node ports held for it: {peak}"
    );
    ensure!(
        too_many > 0.0,
        "the tenant never reached its limit: the case tests nothing"
    );
    ensure!(
        peak <= LIMIT as u64,
        "the tenant held {peak} node ports, over its limit of {LIMIT}"
    );
    wait::until_eq("node ports stored", &(baseline + ROUNDS), || async {
        stored_node_ports(client).await
    })
    .await?;
    Ok(())
}

/// Services that were created keep every value they were given, through and past the
/// timeout: a later request for any of them is refused as allocated.
async fn values_of_created_services_are_kept(_: Arc<()>) -> Result<()> {
    let cluster = cluster(UnconfirmedConfig::default().per_namespace).await?;
    let client = &cluster.client;
    create_namespace(client, "kept").await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "kept");
    let baseline = stored_node_ports(client).await?;
    let creates = (0..40).map(|i| {
        let services = services.clone();
        async move {
            services
                .create(
                    &PostParams::default(),
                    &node_port_service(&format!("s{i}"), 2)?,
                )
                .await
                .context("create")
        }
    });
    let created: Vec<Service> = futures::future::try_join_all(creates).await?;
    tokio::time::sleep(TIMEOUT * 3).await;
    ensure!(
        stored_node_ports(client).await? == baseline + 80,
        "stored node ports changed after the timeout"
    );
    let node_ports: Vec<i32> = created
        .iter()
        .flat_map(|s| s.spec.iter().flat_map(|spec| spec.ports.iter().flatten()))
        .filter_map(|port| port.node_port)
        .collect();
    ensure!(node_ports.len() == 80, "{node_ports:?}");
    for (i, node_port) in node_ports.iter().enumerate().step_by(7) {
        let again: Service = serde_json::from_value(json!({
            "metadata": { "name": format!("again-{i}") },
            "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": node_port }] },
        }))?;
        let refusal = api_error(services.create(&PostParams::default(), &again).await)?;
        ensure!(
            refusal
                .message
                .contains("provided port is already allocated"),
            "node port {node_port}: {}",
            refusal.message
        );
    }
    Ok(())
}

/// A replica started with another node-port range than the stored state's refuses to
/// start, saying what to do, and leaves the state as it was.
async fn a_replica_with_other_ranges_refuses_to_start_and_changes_nothing(
    _: Arc<()>,
) -> Result<()> {
    let cluster = cluster(UnconfirmedConfig::default().per_namespace).await?;
    let client = &cluster.client;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &node_port_service("before", 2)?)
        .await?;
    let ranges: Api<RangeAllocation> = Api::all(client.clone());
    let before = ranges.get("node-ports").await?;

    let plane_config = svcplane::webhook_config(&cluster._plane)?;
    let mut other = plane_config.clone();
    other.service_node_port_range = "31000-31999".parse()?;
    let registry = &mut prometheus_client::registry::Registry::default();
    let started = tokio::time::timeout(
        wait::wait_limit(),
        webhook::runtime::run(
            client.clone(),
            other,
            webhook::server::metrics::AdmissionMetrics::register(registry),
            plumbing::Readiness::default().gate("webhook"),
            webhook::server::admin::Liveness::default(),
            std::future::pending(),
        ),
    )
    .await
    .context("the replica with other ranges neither failed nor stopped")?;
    let error = match started {
        Ok(()) => bail!("the replica with other ranges ran"),
        Err(error) => error.to_string(),
    };
    eprintln!("refused to start: {error}");
    ensure!(
        error.contains("start every replica with the same ranges"),
        "{error}"
    );
    let after = ranges.get("node-ports").await?;
    ensure!(
        after.spec == before.spec,
        "the stored state changed: {:?} -> {:?}",
        (before.spec.range, before.spec.used),
        (after.spec.range, after.spec.used)
    );
    Ok(())
}
