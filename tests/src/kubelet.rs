//! Stand-ins for kubelets: there are none on a local control plane, so tests create Nodes
//! and write Pod status the way a kubelet would.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Node, Pod, PodSpec};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The label holding a Node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Creates a Ready Node (or leaves the existing one) with `cpu` allocatable and, if given,
/// a zone label.
pub async fn ensure_node(
    client: &Client,
    name: &str,
    zone: Option<&str>,
    cpu: &str,
) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]);
    if let Some(zone) = zone {
        labels.insert(ZONE_LABEL.to_string(), zone.to_string());
    }
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error).with_context(|| format!("creating node {name}")),
    }
    let status = json!({
        "status": {
            "capacity": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "stand-in kubelet",
            }],
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("setting the status of node {name}"))
}

/// A Pod to create: one container with the given ports, bound to a node.
#[derive(Clone, Debug, Default)]
pub struct PodTemplate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node: String,
    /// (name, containerPort, protocol)
    pub ports: Vec<(String, i32, String)>,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
}

impl PodTemplate {
    pub fn new(name: &str, node: &str) -> Self {
        Self {
            name: name.to_string(),
            node: node.to_string(),
            ..Self::default()
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn port(mut self, name: &str, port: i32, protocol: &str) -> Self {
        self.ports
            .push((name.to_string(), port, protocol.to_string()));
        self
    }

    pub fn hostname(mut self, hostname: &str, subdomain: &str) -> Self {
        self.hostname = Some(hostname.to_string());
        self.subdomain = Some(subdomain.to_string());
        self
    }

    pub fn to_pod(&self) -> Pod {
        let ports = self
            .ports
            .iter()
            .map(|(name, port, protocol)| ContainerPort {
                name: Some(name.clone()),
                container_port: *port,
                protocol: Some(protocol.clone()),
                ..ContainerPort::default()
            })
            .collect::<Vec<_>>();
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(self.node.clone()),
                hostname: self.hostname.clone(),
                subdomain: self.subdomain.clone(),
                termination_grace_period_seconds: Some(30),
                containers: vec![Container {
                    name: "app".to_string(),
                    image: Some("registry.invalid/app:1".to_string()),
                    ports: (!ports.is_empty()).then_some(ports),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }
}

/// Creates the pod described by `template`.
pub async fn create_pod(api: &Api<Pod>, template: &PodTemplate) -> Result<Pod> {
    api.create(&PostParams::default(), &template.to_pod())
        .await
        .with_context(|| format!("creating pod {}", template.name))
}

/// What a kubelet reports for a running pod.
#[derive(Clone, Debug)]
pub struct PodState {
    /// podIPs, primary first.
    pub ips: Vec<String>,
    pub ready: bool,
    pub phase: &'static str,
}

impl PodState {
    pub fn running(ip: &str, ready: bool) -> Self {
        Self {
            ips: vec![ip.to_string()],
            ready,
            phase: "Running",
        }
    }
}

/// Writes the pod's status through the status subresource.
pub async fn set_pod_status(api: &Api<Pod>, name: &str, state: &PodState) -> Result<Pod> {
    let ready = if state.ready { "True" } else { "False" };
    let pod_ips: Vec<_> = state.ips.iter().map(|ip| json!({ "ip": ip })).collect();
    let status = json!({
        "status": {
            "phase": state.phase,
            "podIP": state.ips.first(),
            "podIPs": pod_ips,
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Initialized", "status": "True" },
                { "type": "ContainersReady", "status": ready },
                { "type": "Ready", "status": ready },
            ],
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("setting the status of pod {name}"))
}

/// Deletes a pod gracefully. With no kubelet to finish the job, it stays terminating
/// (deletionTimestamp set) until [`force_delete_pod`].
pub async fn terminate_pod(api: &Api<Pod>, name: &str) -> Result<()> {
    api.delete(name, &DeleteParams::default().grace_period(30))
        .await
        .with_context(|| format!("deleting pod {name}"))?;
    Ok(())
}

/// Removes a pod at once, as a kubelet does when its containers have stopped.
pub async fn force_delete_pod(api: &Api<Pod>, name: &str) -> Result<()> {
    api.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .with_context(|| format!("force-deleting pod {name}"))?;
    Ok(())
}
