//! The local mode: a control plane on loopback with svcplane running on it, the seed
//! walkthrough played step by step so a newcomer sees each outcome, then up until Ctrl-C.
//!
//! `--in-tree` runs kube-controller-manager's endpoint controllers instead of svcplane's
//! (svcplane's webhook still allocates), to compare; `--no-walkthrough` skips the demo.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use e2e::kubelet::{PodState, PodTemplate, create_pod, ensure_node, set_pod_status};
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS, svcplane, wait};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const NODE: &str = "mac-k8s";
const NAMESPACE: &str = "default";

/// A control plane on loopback with svcplane running on it.
#[derive(Debug, Parser)]
#[command(name = "local-up")]
struct Options {
    /// kube-controller-manager's endpoint controllers instead of svcplane's.
    #[arg(long)]
    in_tree: bool,
    /// Skip the walkthrough.
    #[arg(long)]
    no_walkthrough: bool,
    /// The svcplane binary.
    #[arg(long = "svcplane", env = "SVCPLANE_BIN", value_name = "PATH")]
    svcplane_bin: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client::client::builder=off".into()),
        )
        .init();
    let Options {
        in_tree,
        no_walkthrough,
        svcplane_bin,
    } = Options::parse();

    step("Starting etcd and kube-apiserver on loopback");
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let client = plane.client().await?;
    println!(
        "  kube-apiserver {} (service-cluster-ip-range {}, service-node-port-range {})",
        plane.url(),
        plane.config().service_cluster_ip_range,
        plane.config().service_node_port_range
    );

    step("Starting svcplane");
    let (mode, flags) = if in_tree {
        ("webhook", Vec::new())
    } else {
        ("run", vec!["--leader-elect=false".to_string()])
    };
    let replica = svcplane::start_binary(&plane, &svcplane_bin, mode, &flags).await?;
    println!(
        "  svcplane {mode}: webhook {}, admin http://{}",
        replica.url, replica.admin
    );
    println!("  log: {}", plane.dir().join("svcplane.log").display());
    if in_tree {
        plane.start_controller_manager(ENDPOINT_CONTROLLERS)?;
        println!("  kube-controller-manager: {ENDPOINT_CONTROLLERS}");
    }

    if !no_walkthrough {
        play(&client, &svcplane_bin, plane.kubeconfig()).await?;
    }

    step("Ready");
    println!("Point kubectl at it from another terminal:");
    println!("  export KUBECONFIG={}", plane.kubeconfig().display());
    println!(
        "  {} get services,endpoints,endpointslices -A",
        plane.bins().kubectl.display()
    );
    println!("  {} status", svcplane_bin.display());
    println!("Ctrl-C stops everything and removes its files.");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = sigterm.recv() => {}
    }
    println!("stopping");
    drop(replica);
    drop(plane);
    Ok(())
}

fn step(title: &str) {
    println!("\n==> {title}");
}

fn service(name: &str, spec: Value) -> Result<Service> {
    Ok(serde_json::from_value(
        json!({ "metadata": { "name": name }, "spec": spec }),
    )?)
}

fn cluster_ip(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .unwrap_or_else(|| "(none)".to_string())
}

async fn play(client: &Client, svcplane_bin: &Path, kubeconfig: &Path) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let create = PostParams::default();
    let merge = |patch: Value| Patch::Merge(patch);
    ensure_node(client, NODE, Some("zone-a"), "4").await?;

    step("1. nginx-deployment: one replica whose readiness probe fails (pod 192.168.185.14)");
    start_pod(&pods, "nginx-deployment-1", "192.168.185.14", false).await?;

    step("2. Service nginx-basic (port 80 named http, selector app=nginx)");
    let spec = json!({ "selector": { "app": "nginx" },
        "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": 80 }] });
    let created = services
        .create(&create, &service("nginx-basic", spec)?)
        .await?;
    println!("  clusterIP {} (from svcplane)", cluster_ip(&created));
    show(client, "nginx-basic", |e| {
        not_ready(e) == ["192.168.185.14"]
    })
    .await?;

    step("3. Scaled to 2: pod 192.168.185.15, not ready either");
    start_pod(&pods, "nginx-deployment-2", "192.168.185.15", false).await?;
    show(client, "nginx-basic", |e| not_ready(e).len() == 2).await?;

    step("4. Pod .14 becomes ready and moves to addresses");
    set_pod_status(
        &pods,
        "nginx-deployment-1",
        &PodState::running("192.168.185.14", true),
    )
    .await?;
    show(client, "nginx-basic", |e| ready(e) == ["192.168.185.14"]).await?;

    step("5. publishNotReadyAddresses: true lists both as addresses");
    let patch = merge(json!({ "spec": { "publishNotReadyAddresses": true } }));
    services
        .patch("nginx-basic", &PatchParams::default(), &patch)
        .await?;
    show(client, "nginx-basic", |e| ready(e).len() == 2).await?;

    step("6. Headless nginx-headless (clusterIP: None)");
    let spec = json!({ "clusterIP": "None", "selector": { "app": "nginx" },
        "ports": [{ "name": "http", "port": 80 }] });
    let headless = services
        .create(&create, &service("nginx-headless", spec)?)
        .await?;
    println!("  clusterIP {}", cluster_ip(&headless));
    show(client, "nginx-headless", |e| ready(e) == ["192.168.185.14"]).await?;

    step("7. service-without-selector and a user-written Endpoints at 172.67.185.241");
    let spec = json!({ "ports": [{ "name": "http", "port": 80 }] });
    let plain = services
        .create(&create, &service("service-without-selector", spec)?)
        .await?;
    println!("  clusterIP {}", cluster_ip(&plain));
    let user_endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": { "name": "service-without-selector" },
        "subsets": [{ "addresses": [{ "ip": "172.67.185.241" }],
                      "ports": [{ "name": "http", "port": 80 }] }],
    }))?;
    Api::<Endpoints>::namespaced(client.clone(), NAMESPACE)
        .create(&create, &user_endpoints)
        .await?;
    show(client, "service-without-selector", |e| {
        ready(e) == ["172.67.185.241"]
    })
    .await?;

    step("8. nginx-basic becomes type NodePort");
    let patch = merge(json!({ "spec": { "type": "NodePort" } }));
    let nodeport = services
        .patch("nginx-basic", &PatchParams::default(), &patch)
        .await?;
    let node_port = nodeport
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p[0].node_port)
        .context("no nodePort")?;
    println!(
        "  clusterIP {} kept, nodePort {node_port} from 30000-32767",
        cluster_ip(&nodeport)
    );

    step(&format!(
        "9. Another Service asking for nodePort {node_port}"
    ));
    let spec = json!({ "type": "NodePort", "selector": { "app": "nginx" },
        "ports": [{ "name": "http", "port": 80, "nodePort": node_port }] });
    match services
        .create(&create, &service("nginx-copy", spec)?)
        .await
    {
        Err(kube::Error::Api(status)) => println!("  refused: {}", status.message),
        other => anyhow::bail!("the duplicate nodePort was not refused: {other:?}"),
    }

    step("10. ExternalName external-service -> tencent.com");
    let spec = json!({ "type": "ExternalName", "externalName": "tencent.com" });
    let external = services
        .create(&create, &service("external-service", spec)?)
        .await?;
    println!("  clusterIP {}, no Endpoints", cluster_ip(&external));

    step("11. svcplane status");
    let output = tokio::process::Command::new(svcplane_bin)
        .args(["status", &format!("--kubeconfig={}", kubeconfig.display())])
        .output()
        .await?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    anyhow::ensure!(
        output.status.success(),
        "svcplane status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

async fn start_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> Result<()> {
    let template = PodTemplate::new(name, NODE)
        .label("app", "nginx")
        .port("http", 80, "TCP");
    create_pod(pods, &template).await?;
    set_pod_status(pods, name, &PodState::running(ip, ready)).await?;
    Ok(())
}

fn ready(endpoints: &Endpoints) -> Vec<String> {
    addresses(endpoints, true)
}

fn not_ready(endpoints: &Endpoints) -> Vec<String> {
    addresses(endpoints, false)
}

fn addresses(endpoints: &Endpoints, ready: bool) -> Vec<String> {
    let mut ips: Vec<String> = endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            if ready {
                &s.addresses
            } else {
                &s.not_ready_addresses
            }
            .iter()
            .flatten()
        })
        .map(|a| a.ip.clone())
        .collect();
    ips.sort();
    ips
}

/// Waits until the Endpoints of `name` satisfy `done`, then prints them and the slices.
async fn show(client: &Client, name: &str, done: impl Fn(&Endpoints) -> bool) -> Result<()> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let endpoints = wait::until(format!("Endpoints {name}"), || async {
        Ok(match api.get_opt(name).await? {
            Some(e) if done(&e) => Ok(e),
            Some(e) => Err(format!("{:?}", e.subsets)),
            None => Err("no Endpoints yet".to_string()),
        })
    })
    .await?;
    println!("  Endpoints {name}:");
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<String> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.port,
                    p.protocol.as_deref().unwrap_or("")
                )
            })
            .collect();
        let ips = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
            list.iter()
                .flatten()
                .map(|a| a.ip.clone())
                .collect::<Vec<_>>()
        };
        println!(
            "    ports [{}] addresses {:?} notReadyAddresses {:?}",
            ports.join(", "),
            ips(&subset.addresses),
            ips(&subset.not_ready_addresses)
        );
    }
    let selector = format!("kubernetes.io/service-name={name}");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(&selector))
        .await?;
    for slice in &slices.items {
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        println!(
            "  EndpointSlice {} ({}, managed-by {}):",
            slice.metadata.name.as_deref().unwrap_or(""),
            slice.address_type,
            labels
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str)
                .unwrap_or("")
        );
        for endpoint in slice.endpoints.iter().flatten() {
            let c = endpoint.conditions.clone().unwrap_or_default();
            println!(
                "    {:?} ready={} serving={} terminating={} node={} zone={}",
                endpoint.addresses,
                c.ready.unwrap_or_default(),
                c.serving.unwrap_or_default(),
                c.terminating.unwrap_or_default(),
                endpoint.node_name.as_deref().unwrap_or(""),
                endpoint.zone.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
