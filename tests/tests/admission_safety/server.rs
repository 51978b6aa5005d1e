//! Cases: known callers (client certificates) and the bounded HTTPS and admin servers.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::harness::Case;
use e2e::svcplane::{self, ClientIdentity, WebhookReplica};
use e2e::{ControlPlane, ControlPlaneConfig, wait};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use webhook::server::paths;

pub fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![
        a_forged_review_without_the_apiservers_certificate_is_refused_and_holds_nothing,
        with_the_allocation_state_gone_service_creates_fail_open_and_livez_says_why,
    ]
}

/// A control plane and one replica registered with it; the replica writes every
/// allocation before answering (no pool), so a forged review that got through would hold
/// its values in the RangeAllocation at once.
struct Cluster {
    replica: WebhookReplica,
    client: Client,
    plane: ControlPlane,
}

async fn cluster() -> Result<Cluster> {
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let client = plane.client().await?;
    svcplane::install_crd(&client).await?;
    let mut config = svcplane::webhook_config(&plane)?;
    config.pool.size = 0;
    let replica = svcplane::start_replica(client.clone(), config).await?;
    let ca = std::fs::read(plane.dir().join("ca.crt"))?;
    svcplane::register(&client, &replica.url, ca, false).await?;
    svcplane::wait_until_called(&client, replica.admin).await?;
    Ok(Cluster {
        replica,
        client,
        plane,
    })
}

fn service(name: &str, cluster_ip: &str, node_port: i32) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "type": "NodePort",
            "clusterIP": cluster_ip,
            "ports": [{ "port": 80, "nodePort": node_port }],
        },
    }))
    .expect("a valid Service")
}

fn forged_review(service: &Service) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "6f1e0e2c-5d1b-4a8e-9a1f-000000000014",
            "kind": { "group": "", "version": "v1", "kind": "Service" },
            "resource": { "group": "", "version": "v1", "resource": "services" },
            "name": service.metadata.name,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": { "username": "mallory" },
            "object": service,
        }
    })
    .to_string()
    .into_bytes()
}

async fn a_forged_review_without_the_apiservers_certificate_is_refused_and_holds_nothing(
    _: std::sync::Arc<()>,
) -> Result<()> {
    let cluster = cluster().await?;
    let addr = cluster.replica.url.trim_start_matches("https://").parse()?;
    let ca = std::fs::read(cluster.plane.dir().join("ca.crt"))?;
    let wanted = service("wanted", "10.96.100.100", 30100);
    let review = forged_review(&wanted);

    // No certificate, then the cluster admin's (the cluster CA, not the webhook callers').
    let admin = ClientIdentity {
        cert: std::fs::read_to_string(cluster.plane.dir().join("admin.crt"))?,
        key: std::fs::read_to_string(cluster.plane.dir().join("admin.key"))?,
    };
    for (caller, identity) in [("no certificate", None), ("the admin's", Some(&admin))] {
        let answer =
            svcplane::post_review(addr, &ca, identity, paths::MUTATE_SERVICES, &review).await;
        ensure!(
            answer.is_err(),
            "a forged review with {caller} certificate was answered: {answer:?}"
        );
    }

    // kube-apiserver's own certificate is answered (the dry-run probe went through too).
    let apiserver = ClientIdentity {
        cert: std::fs::read_to_string(cluster.plane.dir().join("webhook-client.crt"))?,
        key: std::fs::read_to_string(cluster.plane.dir().join("webhook-client.key"))?,
    };
    let mut dry_run = serde_json::from_slice::<serde_json::Value>(&review)?;
    dry_run["request"]["dryRun"] = json!(true);
    let status = svcplane::post_review(
        addr,
        &ca,
        Some(&apiserver),
        paths::MUTATE_SERVICES,
        dry_run.to_string().as_bytes(),
    )
    .await?;
    ensure!(status == 200, "kube-apiserver's certificate got {status}");

    // The forged values are free: a real user gets them through kube-apiserver.
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let created = services
        .create(&PostParams::default(), &wanted)
        .await
        .context("creating the Service whose values the forged review asked for")?;
    let spec = created.spec.context("no spec")?;
    ensure!(spec.cluster_ip.as_deref() == Some("10.96.100.100"));
    services
        .create(
            &PostParams::default(),
            &e2e::load::cluster_ip_service("another"),
        )
        .await
        .context("an ordinary Service create")?;
    Ok(())
}

async fn with_the_allocation_state_gone_service_creates_fail_open_and_livez_says_why(
    _: std::sync::Arc<()>,
) -> Result<()> {
    let cluster = cluster().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let name = "rangeallocations.svcplane.io";
    crds.delete(name, &DeleteParams::default()).await?;
    wait::until("the RangeAllocation CRD gone", || async {
        Ok(match crds.get_opt(name).await? {
            None => Ok(()),
            Some(_) => Err("still there"),
        })
    })
    .await?;

    // Before the first failure: /livez must not fail sooner than 30 s after it.
    let started = tokio::time::Instant::now();
    // Every create succeeds: the webhook answers 500 and kube-apiserver, with
    // failurePolicy Ignore, allocates on its own.
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    for i in 0..5 {
        let created = services
            .create(
                &PostParams::default(),
                &e2e::load::node_port_service(&format!("fail-open-{i}"), false),
            )
            .await
            .with_context(|| format!("Service create {i} with the allocation state gone"))?;
        let spec = created.spec.context("no spec")?;
        ensure!(spec.cluster_ip.is_some_and(|ip| ip != "None"));
    }

    // /livez fails once admissions have kept failing for 30 s (one failure alone, as while
    // an apiserver restarts, never restarts a replica): creates go on meanwhile.
    let mut attempt = 0;
    let livez = wait::until("/livez failing on the allocation state", || {
        attempt += 1;
        let (services, admin) = (services.clone(), cluster.replica.admin);
        async move {
            let service = e2e::load::cluster_ip_service(&format!("still-{attempt}"));
            services.create(&PostParams::default(), &service).await?;
            let body = svcplane::http_get(admin, "/livez").await?;
            Ok(if body.contains("allocation-state failed") {
                Ok(body)
            } else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Err(body)
            })
        }
    })
    .await?;
    ensure!(
        started.elapsed() >= Duration::from_secs(29),
        "/livez failed {:?} after the first failure: sooner than its 30 s",
        started.elapsed()
    );
    eprintln!("/livez with the allocation state gone:\n{livez}");
    // The process keeps answering meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ensure!(cluster.replica.is_ready());
    Ok(())
}
