//! What the caches keep of each object, and which changes matter to the controllers.
//!
//! Pods are read from the watch as [`WatchedPod`](crate::pods::WatchedPod) and become
//! [`PodInfo`]; Nodes are cut down to the fields the desired-state functions read: that keeps
//! the caches small, and makes "did anything relevant change" a plain comparison of the
//! trimmed objects. Endpoints and EndpointSlices are written back from the cache, so they keep
//! everything but `managedFields` (which the apiserver preserves when an update leaves it out).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Node, NodeCondition, NodeStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::pods::PodInfo;
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

/// Compares two versions of a pod.
pub fn pod_change(old: &PodInfo, new: &PodInfo) -> PodChange {
    // Destructured so that a field added to PodInfo cannot be forgotten here.
    let PodInfo {
        namespace,
        name,
        uid,
        labels,
        terminating,
        terminal,
        node_name,
        hostname,
        subdomain,
        named_ports,
        has_ip,
        ips,
        primary_ip,
        ready,
        ready_since,
    } = old;
    let endpoints_differ = (namespace, name, uid, terminating, terminal, node_name)
        != (
            &new.namespace,
            &new.name,
            &new.uid,
            &new.terminating,
            &new.terminal,
            &new.node_name,
        )
        || (hostname, subdomain, named_ports, has_ip, ips, primary_ip)
            != (
                &new.hostname,
                &new.subdomain,
                &new.named_ports,
                &new.has_ip,
                &new.ips,
                &new.primary_ip,
            )
        || (ready, ready_since) != (&new.ready, &new.ready_since);
    if endpoints_differ {
        PodChange::Endpoints
    } else if *labels != new.labels {
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
    use k8s_openapi::api::core::v1::{EnvVar, Pod, PodCondition, PodIP, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::fixtures;

    fn web_pod() -> fixtures::PodBuilder {
        fixtures::pod("web-1", "10.0.0.1")
            .label("app", "web")
            .ip("fd00::1")
            .node("node-a")
            .hostname("web-1", "web")
            .container_port("http", 8080, "TCP")
            .init_container_port("metrics", 9090, true)
    }

    /// The same pod with much that does not decide endpoints.
    fn full_pod() -> Pod {
        let mut pod = web_pod().build_pod();
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
    fn a_pod_keeps_what_decides_its_endpoints() {
        let info = PodInfo::from(full_pod());
        assert_eq!(info, web_pod().build());
        assert_eq!(
            (info.namespace.as_str(), info.name.as_str()),
            ("default", "web-1")
        );
        assert_eq!(
            info.ips
                .iter()
                .map(|ip| ip.text.as_str())
                .collect::<Vec<_>>(),
            ["10.0.0.1", "fd00::1"]
        );
        assert_eq!(
            info.named_ports
                .iter()
                .map(|p| (p.name.as_str(), p.port))
                .collect::<Vec<_>>(),
            [("http", 8080), ("metrics", 9090)]
        );
        assert!(info.ready && info.has_ip && !info.terminating && !info.terminal);
        assert_eq!(info.node_name.as_deref(), Some("node-a"));
    }

    #[test]
    fn pod_changes_that_matter() {
        let base = PodInfo::from(full_pod());
        let mut bumped = full_pod();
        bumped.metadata.resource_version = Some("42".into());
        assert_eq!(pod_change(&base, &PodInfo::from(bumped)), PodChange::None);

        let mut relabelled = base.clone();
        relabelled.labels = base.labels.iter().chain([("tier", "front")]).collect();
        assert_eq!(pod_change(&base, &relabelled), PodChange::LabelsOnly);

        let mut moved = full_pod();
        moved.status.as_mut().unwrap().pod_ips = Some(vec![PodIP {
            ip: "10.0.0.9".into(),
        }]);
        assert_eq!(
            pod_change(&base, &PodInfo::from(moved)),
            PodChange::Endpoints
        );

        let mut deleting = relabelled.clone();
        deleting.terminating = true;
        assert_eq!(pod_change(&base, &deleting), PodChange::Endpoints);

        let mut flipped = full_pod();
        flipped
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .last_transition_time = Some(Time(Timestamp::new(7, 0).unwrap()));
        assert_eq!(
            pod_change(&base, &PodInfo::from(flipped)),
            PodChange::Endpoints
        );

        // A probe timestamp on another condition is not kept, so it is no change.
        let mut probed = full_pod();
        probed.status.as_mut().unwrap().conditions.as_mut().unwrap()[1].last_probe_time =
            Some(Time(Timestamp::new(6, 0).unwrap()));
        assert_eq!(pod_change(&base, &PodInfo::from(probed)), PodChange::None);
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
