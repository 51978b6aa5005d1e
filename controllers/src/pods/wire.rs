//! A Pod as the controllers read it from a watch: only the fields a [`PodInfo`] is made of.
//!
//! Every pod change reaches the controllers as a whole Pod in JSON. Read as
//! `k8s_openapi::api::core::v1::Pod`, each event allocates the managed fields, every container's
//! image, env, probes and resources, the volumes and the tolerations, only to drop them when the
//! Pod becomes a [`PodInfo`]. [`WatchedPod`] names the few fields a [`PodInfo`] needs and lets
//! the JSON reader step over the rest without building it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodCondition, PodIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::{Deserialize, Deserializer};

use super::PodInfo;

/// The fields of a Pod that decide its endpoints, read from its JSON; it is listed and watched
/// as a Pod.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct WatchedPod {
    /// name, namespace, uid, resourceVersion, labels and deletionTimestamp; nothing else.
    #[serde(default, deserialize_with = "identity")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
}

fn identity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let Some(meta) = Option::<Identity>::deserialize(deserializer)? else {
        return Ok(ObjectMeta::default());
    };
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: meta.labels,
        deletion_timestamp: meta.deletion_timestamp,
        ..Default::default()
    })
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    node_name: Option<String>,
    hostname: Option<String>,
    subdomain: Option<String>,
    containers: Option<Vec<ContainerPorts>>,
    init_containers: Option<Vec<ContainerPorts>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPorts {
    ports: Option<Vec<ContainerPort>>,
    restart_policy: Option<String>,
}

impl From<Container> for ContainerPorts {
    fn from(container: Container) -> Self {
        ContainerPorts {
            ports: container.ports,
            restart_policy: container.restart_policy,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Status {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<PodIP>>,
    conditions: Option<Vec<Condition>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    last_transition_time: Option<Time>,
}

impl From<PodCondition> for Condition {
    fn from(condition: PodCondition) -> Self {
        Condition {
            type_: condition.type_,
            status: condition.status,
            last_transition_time: condition.last_transition_time,
        }
    }
}

impl From<Pod> for WatchedPod {
    fn from(pod: Pod) -> Self {
        let containers =
            |list: Vec<Container>| list.into_iter().map(ContainerPorts::from).collect();
        WatchedPod {
            metadata: ObjectMeta {
                name: pod.metadata.name,
                namespace: pod.metadata.namespace,
                uid: pod.metadata.uid,
                resource_version: pod.metadata.resource_version,
                labels: pod.metadata.labels,
                deletion_timestamp: pod.metadata.deletion_timestamp,
                ..Default::default()
            },
            spec: pod.spec.map(|spec| Spec {
                node_name: spec.node_name,
                hostname: spec.hostname,
                subdomain: spec.subdomain,
                containers: Some(containers(spec.containers)),
                init_containers: spec.init_containers.map(containers),
            }),
            status: pod.status.map(|status| Status {
                phase: status.phase,
                pod_ip: status.pod_ip,
                pod_ips: status.pod_ips,
                conditions: status
                    .conditions
                    .map(|list| list.into_iter().map(Condition::from).collect()),
            }),
        }
    }
}

impl Resource for WatchedPod {
    const API_VERSION: &'static str = <Pod as Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as Resource>::GROUP;
    const KIND: &'static str = <Pod as Resource>::KIND;
    const VERSION: &'static str = <Pod as Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as Resource>::URL_PATH_SEGMENT;
    type Scope = NamespaceResourceScope;
}

impl Metadata for WatchedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn named_ports<'a>(
    containers: impl IntoIterator<Item = &'a ContainerPorts>,
) -> impl Iterator<Item = super::NamedPort> {
    containers
        .into_iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(super::NamedPort {
                name: p.name.clone()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.container_port,
            })
        })
}

impl From<WatchedPod> for PodInfo {
    fn from(pod: WatchedPod) -> Self {
        let meta = pod.metadata;
        let spec = pod.spec.unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let containers = spec.containers.as_deref().unwrap_or_default();
        let sidecars = spec
            .init_containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let ready_condition = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready");
        let pod_ip = status.pod_ip.as_deref();
        let pod_ips = status.pod_ips.as_deref().unwrap_or_default();
        let ips = if pod_ips.is_empty() {
            pod_ip.and_then(super::PodIp::parse).into_iter().collect()
        } else {
            pod_ips
                .iter()
                .filter_map(|p| super::PodIp::parse(&p.ip))
                .collect()
        };
        PodInfo {
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name.unwrap_or_default(),
            uid: meta.uid,
            labels: meta.labels.unwrap_or_default().into(),
            terminating: meta.deletion_timestamp.is_some(),
            terminal: matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")),
            node_name: spec.node_name.filter(|n| !n.is_empty()),
            hostname: spec.hostname.filter(|h| !h.is_empty()),
            subdomain: spec.subdomain,
            named_ports: named_ports(containers)
                .chain(named_ports(sidecars))
                .collect(),
            has_ip: pod_ip.is_some_and(|ip| !ip.is_empty()) || !pod_ips.is_empty(),
            ips,
            primary_ip: pod_ip.and_then(crate::service::parse_ip),
            ready: ready_condition.is_some_and(|c| c.status == "True"),
            ready_since: ready_condition
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::pod;
    use crate::pods::NamedPort;

    /// A pod read from its JSON as the watch reads it.
    fn watched(json: &str) -> PodInfo {
        PodInfo::from(serde_json::from_str::<WatchedPod>(json).unwrap())
    }

    fn whole(json: &str) -> PodInfo {
        PodInfo::from(serde_json::from_str::<Pod>(json).unwrap())
    }

    #[test]
    fn a_pod_reads_the_same_as_a_watched_pod_and_as_a_whole_pod() {
        let pods = [
            pod("a", "10.0.0.1").build_pod(),
            pod("b", "10.0.0.2")
                .ip("fd00::2")
                .label("app", "web")
                .build_pod(),
            pod("c", "10.0.0.3").not_ready().terminating().build_pod(),
            pod("d", "10.0.0.4").phase("Failed").build_pod(),
            pod("e", "10.0.0.5").no_ip().build_pod(),
            pod("f", "10.0.0.6")
                .hostname("f", "db")
                .container_port("http", 8080, "TCP")
                .container_port("dns", 53, "UDP")
                .init_container_port("proxy", 15001, true)
                .init_container_port("setup", 9000, false)
                .build_pod(),
            pod("g", "10.0.0.7").ready_since(1_700_000_000).build_pod(),
            Pod::default(),
        ];
        for pod in pods {
            let json = serde_json::to_string(&pod).unwrap();
            assert_eq!(watched(&json), whole(&json), "{json}");
        }
    }

    #[test]
    fn a_deployments_pod_with_everything_a_kubelet_writes() {
        let json = include_str!("../../benches/data/pod.json");
        let info = watched(json);
        assert_eq!(info, whole(json));
        assert_eq!(
            (info.namespace.as_str(), info.name.as_str()),
            ("shop", "web-7d9c6b5f4-x2k8q")
        );
        assert!(info.ready && info.has_ip && !info.terminating && !info.terminal);
        assert_eq!(info.ips[0].text, "10.244.3.17");
        assert_eq!(info.node_name.as_deref(), Some("node-b-07"));
        assert_eq!(info.labels.get("pod-template-hash"), Some("7d9c6b5f4"));
        let http = NamedPort {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 8080,
        };
        let metrics = NamedPort {
            name: "metrics".into(),
            port: 9090,
            ..http.clone()
        };
        assert_eq!(*info.named_ports, [http, metrics]);
        assert!(info.ready_since.is_some());
    }

    #[test]
    fn nulls_read_as_absent() {
        let json = r#"{"metadata": {"name": "a", "namespace": "ns", "labels": null},
            "spec": {"containers": null, "initContainers": null},
            "status": {"podIPs": null, "conditions": null}}"#;
        assert_eq!(watched(json), whole(json));
        assert_eq!(
            watched(r#"{"metadata": null, "spec": null, "status": null}"#),
            PodInfo::default()
        );
    }

    #[test]
    fn only_the_identity_of_the_metadata_is_kept() {
        let json = include_str!("../../benches/data/pod.json");
        let pod: WatchedPod = serde_json::from_str(json).unwrap();
        assert!(pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.annotations.is_none());
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("1843302"));
    }
}
