//! Small builders for test objects: each starts from a sensible default (namespace `default`,
//! uid `uid-<name>`, a ready running pod on `node-1`, a ClusterIP IPv4 Service selecting
//! `app=<name>` with port `http` 80 -> 8080) and changes one thing at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node,
    NodeCondition, NodeStatus, ObjectReference, Pod, PodCondition, PodIP, PodSpec, PodStatus,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use proptest::prelude::*;

use crate::SlicePlan;
use crate::pods::PodInfo;

pub const NS: &str = "default";

pub fn time(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn service_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.to_string()),
        port,
        protocol: Some("TCP".into()),
        target_port: Some(target),
        ..Default::default()
    }
}

pub struct ServiceBuilder(Service);

pub fn service(name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", name)])),
            cluster_ip: Some("10.96.0.100".into()),
            ip_families: Some(vec!["IPv4".into()]),
            type_: Some("ClusterIP".into()),
            ports: Some(vec![service_port("http", 80, IntOrString::Int(8080))]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

impl ServiceBuilder {
    fn spec(&mut self) -> &mut ServiceSpec {
        self.0.spec.as_mut().unwrap()
    }
    pub fn selector(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec().selector = Some(labels(pairs));
        self
    }
    pub fn no_selector(mut self) -> Self {
        self.spec().selector = None;
        self
    }
    pub fn ports(mut self, ports: Vec<ServicePort>) -> Self {
        self.spec().ports = Some(ports);
        self
    }
    pub fn no_ports(mut self) -> Self {
        self.spec().ports = None;
        self
    }
    pub fn cluster_ip(mut self, ip: &str) -> Self {
        self.spec().cluster_ip = Some(ip.into());
        self
    }
    pub fn headless(self) -> Self {
        self.cluster_ip("None")
    }
    pub fn families(mut self, families: &[&str]) -> Self {
        self.spec().ip_families =
            (!families.is_empty()).then(|| families.iter().map(|f| f.to_string()).collect());
        self
    }
    pub fn external_name(mut self, target: &str) -> Self {
        let spec = self.spec();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(target.into());
        spec.cluster_ip = None;
        self
    }
    pub fn publish_not_ready(mut self) -> Self {
        self.spec().publish_not_ready_addresses = Some(true);
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
    pub fn uid(mut self, uid: &str) -> Self {
        self.0.metadata.uid = Some(uid.into());
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
    pub fn traffic_distribution(mut self, value: &str) -> Self {
        self.spec().traffic_distribution = Some(value.into());
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(time(1_700_000_000));
        self
    }
    pub fn build(self) -> Service {
        self.0
    }
}

pub struct PodBuilder(Pod);

pub fn pod(name: &str, ip: &str) -> PodBuilder {
    PodBuilder(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.as_mut().unwrap()
    }
    fn status(&mut self) -> &mut PodStatus {
        self.0.status.as_mut().unwrap()
    }
    /// Adds a further IP (the second family of a dual-stack pod).
    pub fn ip(mut self, ip: &str) -> Self {
        self.status()
            .pod_ips
            .get_or_insert_with(Vec::new)
            .push(PodIP { ip: ip.into() });
        self
    }
    pub fn no_ip(mut self) -> Self {
        let status = self.status();
        status.pod_ip = None;
        status.pod_ips = None;
        self
    }
    pub fn ready(mut self, ready: bool) -> Self {
        self.status().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]);
        self
    }
    /// Sets the `Ready` condition's last transition time.
    pub fn ready_since(mut self, seconds: i64) -> Self {
        for condition in self.status().conditions.iter_mut().flatten() {
            condition.last_transition_time = Some(time(seconds));
        }
        self
    }
    pub fn not_ready(self) -> Self {
        self.ready(false)
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.status().phase = Some(phase.into());
        self
    }
    pub fn terminating(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(time(1_700_000_000));
        self
    }
    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.into());
        self
    }
    pub fn hostname(mut self, hostname: &str, subdomain: &str) -> Self {
        let spec = self.spec();
        spec.hostname = Some(hostname.into());
        spec.subdomain = Some(subdomain.into());
        self
    }
    pub fn container_port(mut self, name: &str, port: i32, protocol: &str) -> Self {
        self.spec().containers[0]
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                name: Some(name.into()),
                container_port: port,
                protocol: Some(protocol.into()),
                ..Default::default()
            });
        self
    }
    /// Adds an init container exposing a named port; `always` makes it a sidecar.
    pub fn init_container_port(mut self, name: &str, port: i32, always: bool) -> Self {
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: format!("init-{name}"),
                restart_policy: always.then(|| "Always".into()),
                ports: Some(vec![ContainerPort {
                    name: Some(name.into()),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        self
    }
    /// What the controllers keep of the pod.
    pub fn build(self) -> PodInfo {
        PodInfo::from(self.0)
    }
    /// The Pod itself, as the apiserver would return it.
    pub fn build_pod(self) -> Pod {
        self.0
    }
}

pub fn node(name: &str, zone: Option<&str>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: zone.map(|z| labels(&[("topology.kubernetes.io/zone", z)])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A Ready worker Node in `zone` (none: unlabelled) with `cpu` allocatable.
pub fn worker_node(name: &str, zone: Option<&str>, cpu: &str) -> Node {
    let mut node = node(name, zone);
    node.status = Some(NodeStatus {
        allocatable: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    node
}

/// The Node with its `Ready` condition set to `ready`.
pub fn node_ready(mut node: Node, ready: bool) -> Node {
    let status = node.status.get_or_insert_with(Default::default);
    status.conditions = Some(vec![NodeCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        ..Default::default()
    }]);
    node
}

/// The Node with one more label.
pub fn node_label(mut node: Node, key: &str, value: &str) -> Node {
    node.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
    node
}

/// An Endpoints port (protocol TCP unless given).
pub fn endpoints_port(name: &str, port: i32, protocol: &str) -> EndpointPort {
    EndpointPort {
        name: (!name.is_empty()).then(|| name.to_string()),
        port,
        protocol: Some(protocol.into()),
        app_protocol: None,
    }
}

/// An Endpoints address with a hostname and node named after the last octet or group of the IP.
pub fn endpoints_address(ip: &str) -> EndpointAddress {
    let suffix = ip.rsplit(['.', ':']).next().unwrap_or_default();
    EndpointAddress {
        ip: ip.into(),
        hostname: Some(format!("host-{suffix}")),
        node_name: Some(format!("node-{suffix}")),
        target_ref: None,
    }
}

/// The address pointing at a pod with this UID.
pub fn targeting(mut address: EndpointAddress, pod: &str, uid: &str) -> EndpointAddress {
    address.target_ref = Some(ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(NS.into()),
        name: Some(pod.into()),
        uid: Some(uid.into()),
        ..Default::default()
    });
    address
}

/// A subset: these ports, ready addresses and not-ready addresses.
pub fn subset(ports: Vec<EndpointPort>, ready: &[&str], not_ready: &[&str]) -> EndpointSubset {
    let listed = |ips: &[&str]| {
        (!ips.is_empty()).then(|| ips.iter().map(|ip| endpoints_address(ip)).collect())
    };
    EndpointSubset {
        addresses: listed(ready),
        not_ready_addresses: listed(not_ready),
        ports: (!ports.is_empty()).then_some(ports),
    }
}

pub struct EndpointsBuilder(Endpoints);

/// A user-written Endpoints object (uid `uid-<name>-endpoints`) without subsets.
pub fn endpoints(name: &str) -> EndpointsBuilder {
    EndpointsBuilder(Endpoints {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("uid-{name}-endpoints")),
            ..Default::default()
        },
        subsets: None,
    })
}

impl EndpointsBuilder {
    pub fn subsets(mut self, subsets: Vec<EndpointSubset>) -> Self {
        self.0.subsets = Some(subsets);
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
    pub fn uid(mut self, uid: &str) -> Self {
        self.0.metadata.uid = Some(uid.into());
        self
    }
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(time(1_700_000_000));
        self
    }
    pub fn build(self) -> Endpoints {
        self.0
    }
}

/// A stand-in apiserver: names created slices, checks updates against the stored version.
#[derive(Default)]
pub struct Cluster {
    pub slices: Vec<EndpointSlice>,
    version: u64,
}

impl Cluster {
    pub fn with(slices: Vec<EndpointSlice>) -> Self {
        Cluster {
            slices,
            version: 100,
        }
    }

    /// Applies the plan; returns the created and updated slices as stored.
    pub fn apply(&mut self, plan: &SlicePlan) -> Vec<EndpointSlice> {
        let mut written = Vec::new();
        for gone in &plan.delete {
            let before = self.slices.len();
            self.slices
                .retain(|s| s.metadata.name != gone.metadata.name);
            assert_eq!(
                self.slices.len(),
                before - 1,
                "deleted a slice that does not exist"
            );
        }
        for updated in &plan.update {
            self.version += 1;
            let stored = self
                .slices
                .iter_mut()
                .find(|s| s.metadata.name == updated.metadata.name)
                .expect("updated a slice that does not exist");
            assert_eq!(
                stored.metadata.resource_version, updated.metadata.resource_version,
                "update from a stale version"
            );
            assert_eq!(
                stored.address_type, updated.address_type,
                "addressType is immutable"
            );
            let generation = stored.metadata.generation.unwrap_or_default() + 1;
            *stored = updated.clone();
            stored.metadata.generation = Some(generation);
            stored.metadata.resource_version = Some(self.version.to_string());
            written.push(stored.clone());
        }
        for created in &plan.create {
            self.version += 1;
            assert_eq!(created.metadata.name, None);
            let mut slice = created.clone();
            let name = format!(
                "{}{}",
                created.metadata.generate_name.as_deref().unwrap(),
                self.version
            );
            slice.metadata.uid = Some(format!("uid-{name}"));
            slice.metadata.name = Some(name);
            slice.metadata.generation = Some(1);
            slice.metadata.resource_version = Some(self.version.to_string());
            written.push(slice.clone());
            self.slices.push(slice);
        }
        written
    }

    pub fn lengths(&self) -> Vec<usize> {
        let mut lengths: Vec<usize> = self
            .slices
            .iter()
            .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
            .collect();
        lengths.sort();
        lengths
    }
}

/// A pod as the index property tests vary it.
#[derive(Debug, Clone)]
pub struct PodState {
    pub ip: u8,
    pub ready: bool,
    pub terminating: bool,
    pub finished: bool,
    pub node: u8,
    /// The number of its container port `http`, if it has one.
    pub port: Option<i32>,
    pub dual: bool,
    pub hostname: Option<u8>,
    /// A UID shared with every other pod that shares it (impossible in a cluster, but the
    /// de-duplication of addresses is about it).
    pub shared_uid: bool,
}

pub fn pod_state() -> impl Strategy<Value = PodState> {
    let flags = (
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    );
    let port = prop::option::weighted(0.85, prop::sample::select(vec![8080, 9090]));
    let more = (
        any::<bool>(),
        prop::option::weighted(0.3, 0u8..2),
        prop::bool::weighted(0.1),
    );
    ((0u8..3, 0u8..4), flags, port, more).prop_map(
        |((ip, node), (ready, terminating, finished), port, (dual, hostname, shared_uid))| {
            PodState {
                ip,
                ready,
                terminating,
                finished,
                node,
                port,
                dual,
                hostname,
                shared_uid,
            }
        },
    )
}

impl PodState {
    /// Pod `pod<i>` of the Service `app` (selected by `app=<app>`, its hostname's subdomain) in
    /// this state. Every four pods share their IPs, so that de-duplication is tested too.
    pub fn build(&self, i: usize, app: &str) -> PodInfo {
        let mut builder = pod(
            &format!("pod{i:02}"),
            &format!("10.{}.0.{}", self.ip + 1, i % 4),
        )
        .label("app", app)
        .ready(self.ready)
        .node(&format!("node-{}", self.node));
        if self.dual {
            builder = builder.ip(&format!("fd00::{}:{:x}", self.ip, i % 4));
        }
        if let Some(port) = self.port {
            builder = builder.container_port("http", port, "TCP");
        }
        if let Some(hostname) = self.hostname {
            builder = builder.hostname(&format!("host{hostname}"), app);
        }
        if self.terminating {
            builder = builder.terminating();
        }
        if self.finished {
            builder = builder.phase("Failed");
        }
        let mut built = builder.build();
        if self.shared_uid {
            built.uid = Some("uid-shared".into());
        }
        built
    }
}

/// What a round of an index property test does after its pod events: sync; a sync whose
/// writes fail; or someone else edits what was published, then a sync.
#[derive(Debug, Clone, Copy)]
pub enum Round {
    Sync,
    Fail,
    Edited,
}

pub fn round() -> impl Strategy<Value = Round> {
    prop::sample::select(vec![
        Round::Sync,
        Round::Sync,
        Round::Sync,
        Round::Fail,
        Round::Edited,
    ])
}
