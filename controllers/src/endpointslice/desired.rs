//! What a Service's EndpointSlices should contain: per address type, the endpoints grouped by
//! the port list they resolve to, and the metadata every slice of the Service carries.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::index::SliceIndex;
use crate::pods::PodInfo;
use crate::service::{IpFamily, has_cluster_ip};
use crate::slice_name::generate_name_prefix;
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
pub(super) fn endpoint_ports(
    service_ports: &[ServicePort],
    resolved: &[(usize, i32)],
) -> Vec<EndpointPort> {
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

/// The desired slice contents for the Service, or `None` when the pod controllers do not manage
/// its slices (no selector, or `ExternalName`).
///
/// `pods` may hold any pods: those the Service does not select are ignored. `node` looks a Node
/// up by name (from a cache); its `topology.kubernetes.io/zone` label becomes the endpoints'
/// zone. A pod whose Node is unknown is left out and reported in
/// [`DesiredEndpointSlices::pods_on_missing_nodes`], unless the Service publishes not-ready
/// addresses, in which case it is added without a zone. The same as a [`SliceIndex`] fed these
/// pods.
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
    let mut index = SliceIndex::new(service)?;
    let pods: Vec<Arc<PodInfo>> = pods.iter().map(|p| Arc::new(p.borrow().clone())).collect();
    index.apply_pods(pods.iter().map(|p| (p.name.as_str(), Some(p))), node);
    Some(index.desired())
}

/// A Node's zone, from its `topology.kubernetes.io/zone` label.
pub(super) fn node_zone(node: &Node) -> Option<String> {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
        .filter(|zone| !zone.is_empty())
        .cloned()
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
            generate_name: Some(generate_name_prefix(
                service.metadata.name.as_deref().unwrap_or_default(),
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service, managed_by)),
            owner_references: Some(vec![owner_reference(service)]),
            ..Default::default()
        },
        address_type: address_type.as_str().into(),
        endpoints: Some(Vec::new()),
        ports: Some(ports),
    }
}

#[cfg(test)]
mod tests;
