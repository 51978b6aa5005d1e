//! What a Service's EndpointSlices should contain: per address type, the endpoints grouped by
//! the port list they resolve to, and the metadata every slice of the Service carries.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::identity::{PortsKey, sort_by_key};
use crate::pods::{
    self, PodInfo, ResolvedPorts, addresses_of_family, hostname_for, resolved_ports,
};
use crate::service::{self, IpFamily, has_cluster_ip, publishes_not_ready, slice_families};
use crate::well_known::{
    LABEL_HEADLESS, LABEL_SERVICE_NAME, LABEL_SLICE_MANAGED_BY, LABEL_TOPOLOGY_ZONE,
};

/// Endpoints of one address type that resolve the Service's ports to the same list: they share
/// slices.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointGroup {
    /// The slices' `addressType`.
    pub address_type: IpFamily,
    /// The slices' `ports`, in Service port order; empty for a headless Service without ports or
    /// for pods that resolve none of the Service's ports.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, one per pod, ordered by address.
    pub endpoints: Vec<Endpoint>,
}

/// A pod left out because its Node is not known (yet): the caller should retry the sync later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOnMissingNode {
    /// The pod's name.
    pub pod: String,
    /// The Node the pod names (empty if unscheduled).
    pub node: String,
}

/// Everything a Service's EndpointSlices should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredEndpointSlices {
    /// The address types that get slices (each gets at least a placeholder); slices of any other
    /// type are deleted.
    pub address_types: Vec<IpFamily>,
    /// The non-empty endpoint groups, ordered by address type and port list.
    pub groups: Vec<EndpointGroup>,
    /// Pods skipped because their Node is missing; non-empty means "sync again later".
    pub pods_on_missing_nodes: Vec<PodOnMissingNode>,
}

impl DesiredEndpointSlices {
    /// Whether the sync should be retried because some pods could not be placed.
    pub fn needs_retry(&self) -> bool {
        !self.pods_on_missing_nodes.is_empty()
    }
}

/// The slices' port list for pods that resolve the Service's ports to `resolved`.
fn endpoint_ports(service_ports: &[ServicePort], resolved: &[(usize, i32)]) -> Vec<EndpointPort> {
    resolved
        .iter()
        .map(|&(i, number)| {
            let port = &service_ports[i];
            EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            }
        })
        .collect()
}

fn pod_endpoint(
    service: &Service,
    pod: &PodInfo,
    zone: Option<String>,
    addresses: Vec<String>,
) -> Endpoint {
    let serving = pod.ready;
    let terminating = pod.terminating;
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(publishes_not_ready(service) || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, service),
        node_name: pod.node_name.clone(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: pod.uid.clone(),
            ..Default::default()
        }),
        zone,
        ..Default::default()
    }
}

/// The desired slice contents for the Service, or `None` when the pod controllers do not manage
/// its slices (no selector, or `ExternalName`).
///
/// `pods` may hold any pods: those the Service does not select are ignored. `node` looks a Node
/// up by name (from a cache); its `topology.kubernetes.io/zone` label becomes the endpoints'
/// zone. A pod whose Node is unknown is left out and reported in
/// [`DesiredEndpointSlices::pods_on_missing_nodes`], unless the Service publishes not-ready
/// addresses, in which case it is added without a zone.
pub fn desired_endpoint_slices<P, F, N>(
    service: &Service,
    pods: &[P],
    node: F,
) -> Option<DesiredEndpointSlices>
where
    P: Borrow<PodInfo>,
    F: Fn(&str) -> Option<N>,
    N: Borrow<Node>,
{
    if !service::manages_endpoints(service) {
        return None;
    }
    let address_types = slice_families(service);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    // Grouped by resolved ports while collecting; each port list is written out once.
    let mut by_ports: HashMap<ResolvedPorts, BTreeMap<IpFamily, Vec<Endpoint>>> = HashMap::new();
    let mut pods_on_missing_nodes = Vec::new();
    // Each Node is looked up once per sync, not once per pod: Some(zone) when it exists.
    let mut zones: HashMap<&str, Option<Option<String>>> = HashMap::new();

    for pod in pods.iter().map(Borrow::borrow) {
        if !service::selects(service, pod) || !pods::counts_for_slices(pod) {
            continue;
        }
        let node_name = pod.node_name.as_deref().unwrap_or_default();
        let known = zones.entry(node_name).or_insert_with(|| {
            node(node_name).map(|node| {
                node.borrow()
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
                    .filter(|zone| !zone.is_empty())
                    .cloned()
            })
        });
        let zone = match known {
            Some(zone) => zone.clone(),
            None if publishes_not_ready(service) => None,
            None => {
                pods_on_missing_nodes.push(PodOnMissingNode {
                    pod: pod.name.clone(),
                    node: node_name.to_string(),
                });
                continue;
            }
        };
        let families = by_ports
            .entry(resolved_ports(service_ports, pod))
            .or_default();
        for &family in &address_types {
            let addresses = addresses_of_family(pod, family);
            if !addresses.is_empty() {
                let endpoint = pod_endpoint(service, pod, zone.clone(), addresses);
                families.entry(family).or_default().push(endpoint);
            }
        }
    }

    let mut groups: BTreeMap<(IpFamily, PortsKey), EndpointGroup> = BTreeMap::new();
    for (resolved, families) in by_ports {
        let ports = endpoint_ports(service_ports, &resolved);
        let ports_key = PortsKey::of(&ports);
        for (family, endpoints) in families {
            groups
                .entry((family, ports_key.clone()))
                .or_insert_with(|| EndpointGroup {
                    address_type: family,
                    ports: ports.clone(),
                    endpoints: Vec::new(),
                })
                .endpoints
                .extend(endpoints);
        }
    }
    let mut groups: Vec<EndpointGroup> = groups.into_values().collect();
    for group in &mut groups {
        sort_by_key(&mut group.endpoints);
    }
    Some(DesiredEndpointSlices {
        address_types,
        groups,
        pods_on_missing_nodes,
    })
}

fn is_reserved_label(key: &str) -> bool {
    matches!(
        key,
        LABEL_SERVICE_NAME | LABEL_SLICE_MANAGED_BY | LABEL_HEADLESS
    )
}

/// The labels every slice of the Service carries: the Service's own labels minus the reserved
/// keys, plus the service name, the manager and, without a ClusterIP, the headless label.
pub(crate) fn slice_labels(service: &Service, managed_by: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(key, _)| !is_reserved_label(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !has_cluster_ip(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_SLICE_MANAGED_BY.into(), managed_by.into());
    labels
}

/// The controller reference from a slice to its Service.
pub(crate) fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the slice belongs to this incarnation of the Service (same UID). Slices left by a
/// deleted Service of the same name are not.
pub(crate) fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let Some(uid) = service.metadata.uid.as_deref() else {
        return false;
    };
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// A new, empty slice for the Service, to be named by the apiserver (`generateName`).
pub(crate) fn new_slice(
    service: &Service,
    address_type: IpFamily,
    ports: Vec<EndpointPort>,
    managed_by: &str,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service, managed_by)),
            owner_references: Some(vec![owner_reference(service)]),
            ..Default::default()
        },
        address_type: address_type.as_api().into(),
        endpoints: Some(Vec::new()),
        ports: Some(ports),
    }
}

#[cfg(test)]
mod tests;
