//! What the caches keep of each object, and which changes matter to the controllers.
//!
//! Pods and Nodes are cut down to the fields the desired-state functions read: that keeps the
//! caches small, and makes "did anything relevant change" a plain comparison of the trimmed
//! objects. Endpoints and EndpointSlices are written back from the cache, so they keep
//! everything but `managedFields` (which the apiserver preserves when an update leaves it out).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Endpoints, Node, NodeCondition, NodeStatus, Pod, PodCondition, PodSpec, PodStatus,
    Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::well_known::LABEL_TOPOLOGY_ZONE;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn identity(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        labels: meta.labels,
        ..Default::default()
    }
}

fn ports_only(container: Container) -> Container {
    Container {
        name: container.name,
        ports: container.ports,
        restart_policy: container.restart_policy,
        ..Default::default()
    }
}

/// A Pod with only what decides its endpoints: identity, labels, deletion, node, hostname and
/// subdomain, container ports, phase, IPs and the `Ready` condition.
pub fn pod(pod: Pod) -> Pod {
    let spec = pod.spec.map(|spec| PodSpec {
        node_name: spec.node_name,
        hostname: spec.hostname,
        subdomain: spec.subdomain,
        containers: spec.containers.into_iter().map(ports_only).collect(),
        init_containers: spec
            .init_containers
            .map(|list| list.into_iter().map(ports_only).collect()),
        ..Default::default()
    });
    let status = pod.status.map(|status| PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    last_transition_time: c.last_transition_time,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
    Pod {
        metadata: identity(pod.metadata),
        spec,
        status,
    }
}

/// A Node with its labels, allocatable resources and `Ready` condition.
pub fn node(node: Node) -> Node {
    let status = node.status.map(|status| NodeStatus {
        allocatable: status.allocatable,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| NodeCondition {
                    type_: c.type_,
                    status: c.status,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
    Node {
        metadata: identity(node.metadata),
        spec: None,
        status,
    }
}

/// A Service without status, managed fields and kubectl's copy of the applied manifest.
pub fn service(service: Service) -> Service {
    let mut metadata = service.metadata;
    metadata.managed_fields = None;
    if let Some(annotations) = &mut metadata.annotations {
        annotations.remove(LAST_APPLIED);
    }
    Service {
        metadata,
        spec: service.spec,
        status: None,
    }
}

/// Endpoints without managed fields.
pub fn endpoints(mut endpoints: Endpoints) -> Endpoints {
    endpoints.metadata.managed_fields = None;
    endpoints
}

/// An EndpointSlice without managed fields.
pub fn endpoint_slice(mut slice: EndpointSlice) -> EndpointSlice {
    slice.metadata.managed_fields = None;
    slice
}

/// How a (trimmed) pod changed, as far as Services care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodChange {
    /// Nothing the controllers read.
    None,
    /// Only the labels: Services selecting both versions are unaffected.
    LabelsOnly,
    /// Something that shows in endpoints (IPs, readiness, phase, deletion, node, hostname,
    /// ports), and perhaps the labels too.
    Endpoints,
}

/// Compares two trimmed versions of a pod.
pub fn pod_change(old: &Pod, new: &Pod) -> PodChange {
    let endpoints_differ = old.spec != new.spec
        || old.status != new.status
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || old.metadata.uid != new.metadata.uid;
    if endpoints_differ {
        PodChange::Endpoints
    } else if old.metadata.labels != new.metadata.labels {
        PodChange::LabelsOnly
    } else {
        PodChange::None
    }
}

fn zone(node: &Node) -> Option<&String> {
    node.metadata
        .labels
        .as_ref()
        .and_then(|labels: &BTreeMap<String, String>| labels.get(LABEL_TOPOLOGY_ZONE))
}

/// Whether a Node change shows in the endpoints of pods on it: only its zone does.
pub fn node_zone_changed(old: &Node, new: &Node) -> bool {
    zone(old) != zone(new)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, PodIP, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::fixtures;
    use crate::{EndpointsParams, desired_endpoint_slices, desired_endpoints};

    fn full_pod() -> Pod {
        let mut pod = fixtures::pod("web-1", "10.0.0.1")
            .label("app", "web")
            .ip("fd00::1")
            .node("node-a")
            .hostname("web-1", "web")
            .container_port("http", 8080, "TCP")
            .init_container_port("metrics", 9090, true)
            .build();
        pod.metadata.annotations = Some([("note".into(), "x".repeat(1000))].into());
        pod.metadata.resource_version = Some("41".into());
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes = Some(vec![Volume {
            name: "data".into(),
            ..Default::default()
        }]);
        spec.containers[0].image = Some("app:1".into());
        spec.containers[0].env = Some(vec![EnvVar {
            name: "A".into(),
            value: Some("b".into()),
            ..Default::default()
        }]);
        let status = pod.status.as_mut().unwrap();
        status.host_ip = Some("192.168.0.1".into());
        status.conditions.as_mut().unwrap().push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_probe_time: Some(Time(Timestamp::new(5, 0).unwrap())),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn trimming_a_pod_keeps_its_endpoints() {
        let full = full_pod();
        let trimmed = pod(full.clone());
        assert!(trimmed.metadata.annotations.is_none());
        assert!(trimmed.spec.as_ref().unwrap().volumes.is_none());
        assert_eq!(
            trimmed
                .status
                .as_ref()
                .unwrap()
                .conditions
                .as_ref()
                .unwrap()
                .len(),
            1
        );

        let headless = fixtures::service("web")
            .selector(&[("app", "web")])
            .cluster_ip("None")
            .build();
        let named = fixtures::service("web")
            .selector(&[("app", "web")])
            .ports(vec![
                fixtures::service_port("http", 80, IntOrString::String("http".into())),
                fixtures::service_port("metrics", 9090, IntOrString::String("metrics".into())),
            ])
            .build();
        for service in [headless, named] {
            let params = EndpointsParams::default();
            assert_eq!(
                desired_endpoints(&service, std::slice::from_ref(&full), &params),
                desired_endpoints(&service, std::slice::from_ref(&trimmed), &params)
            );
            let no_node = |_: &str| Some(Node::default());
            assert_eq!(
                desired_endpoint_slices(&service, std::slice::from_ref(&full), no_node),
                desired_endpoint_slices(&service, std::slice::from_ref(&trimmed), no_node)
            );
        }
    }

    #[test]
    fn pod_changes_that_matter() {
        let base = pod(full_pod());
        let mut bumped = base.clone();
        bumped.metadata.resource_version = Some("42".into());
        assert_eq!(pod_change(&base, &bumped), PodChange::None);

        let mut relabelled = base.clone();
        relabelled
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("tier".into(), "front".into());
        assert_eq!(pod_change(&base, &relabelled), PodChange::LabelsOnly);

        let mut moved = base.clone();
        moved.status.as_mut().unwrap().pod_ips = Some(vec![PodIP {
            ip: "10.0.0.9".into(),
        }]);
        assert_eq!(pod_change(&base, &moved), PodChange::Endpoints);

        let mut deleting = relabelled.clone();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::new(9, 0).unwrap()));
        assert_eq!(pod_change(&base, &deleting), PodChange::Endpoints);

        // A probe timestamp on another condition is trimmed away, so it is no change.
        let mut probed = full_pod();
        probed.status.as_mut().unwrap().conditions.as_mut().unwrap()[1].last_probe_time =
            Some(Time(Timestamp::new(6, 0).unwrap()));
        assert_eq!(pod_change(&base, &pod(probed)), PodChange::None);
    }

    #[test]
    fn node_zone() {
        let mut a = Node::default();
        let b = a.clone();
        assert!(!node_zone_changed(&a, &b));
        a.metadata.labels = Some([(LABEL_TOPOLOGY_ZONE.to_string(), "z1".to_string())].into());
        assert!(node_zone_changed(&a, &b));
    }
}
