//! The core/v1 Endpoints object a Service with a selector should have, and whether the one in
//! the cluster needs a write.
//!
//! Each selected pod contributes one address (of the Service's primary family) per Service port
//! it serves; addresses are then grouped into subsets by identical port sets, de-duplicated by
//! (IP, pod UID) with not-ready winning. Order carries no meaning: comparisons are
//! order-insensitive, so the in-tree controller's hash-driven order need not be copied.

mod index;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

pub use index::{EndpointsIndex, EndpointsSync};

use crate::pods::{PodInfo, addresses_of_family, hostname_for, pod_reference};
use crate::service::{endpoints_family, has_cluster_ip};
use crate::well_known::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, ANNOTATION_OVER_CAPACITY, LABEL_ENDPOINTS_MANAGED_BY,
    LABEL_HEADLESS, OVER_CAPACITY_TRUNCATED, format_trigger_time,
};

/// Inputs of [`desired_endpoints`] that do not come from the cluster objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointsParams<'a> {
    /// The earliest pod or Service change not yet reflected in a write, tracked by the caller.
    /// Written as `endpoints.kubernetes.io/last-change-trigger-time`; `None` removes it.
    pub trigger_time: Option<&'a Time>,
    /// Value of the `endpoints.kubernetes.io/managed-by` label; `None` leaves the label off.
    pub managed_by: Option<&'a str>,
}

/// A write the Endpoints controller should make.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointsWrite {
    /// No Endpoints object exists yet: create this one.
    Create(Endpoints),
    /// Replace the existing object with this one (same name, resourceVersion kept for
    /// optimistic concurrency, unrelated annotations kept).
    Update(Endpoints),
}

/// A Service port as it appears in Endpoints, comparable and orderable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

impl PortKey {
    fn to_api(&self) -> EndpointPort {
        EndpointPort {
            name: (!self.name.is_empty()).then(|| self.name.clone()),
            port: self.port,
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }
}

/// The Endpoints object the Service should have, or `None` when the pod controllers do not
/// manage its Endpoints (no selector, or `ExternalName`).
///
/// `pods` may hold any pods: those the Service does not select are ignored. The result has no
/// resourceVersion; use [`plan_endpoints_write`] to turn it into a write.
pub fn desired_endpoints<P: Borrow<PodInfo>>(
    service: &Service,
    pods: &[P],
    params: &EndpointsParams<'_>,
) -> Option<Endpoints> {
    let mut index = EndpointsIndex::new(service)?;
    let pods: Vec<Arc<PodInfo>> = pods.iter().map(|p| Arc::new(p.borrow().clone())).collect();
    index.apply_pods(pods.iter().map(|p| (p.name.as_str(), Some(p))));
    Some(index.desired(params))
}

/// The Endpoints object of the Service with these subsets.
fn endpoints_object(
    service: &Service,
    subsets: Vec<EndpointSubset>,
    truncated: bool,
    params: &EndpointsParams<'_>,
) -> Endpoints {
    let mut annotations = BTreeMap::new();
    if let Some(time) = params.trigger_time {
        annotations.insert(
            ANNOTATION_LAST_CHANGE_TRIGGER_TIME.to_string(),
            format_trigger_time(time),
        );
    }
    if truncated {
        annotations.insert(
            ANNOTATION_OVER_CAPACITY.to_string(),
            OVER_CAPACITY_TRUNCATED.to_string(),
        );
    }
    Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: Some(endpoints_labels(service, params.managed_by)).filter(|l| !l.is_empty()),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

fn endpoints_labels(service: &Service, managed_by: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if has_cluster_ip(service) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    if let Some(manager) = managed_by {
        labels.insert(LABEL_ENDPOINTS_MANAGED_BY.to_string(), manager.to_string());
    }
    labels
}

fn pod_address(service: &Service, pod: &PodInfo) -> Option<EndpointAddress> {
    let family = endpoints_family(service, pod);
    let ip = addresses_of_family(pod, family).next()?.to_string();
    Some(EndpointAddress {
        ip,
        hostname: hostname_for(pod, service),
        node_name: pod.node_name.clone(),
        target_ref: Some(pod_reference(pod)),
    })
}

/// An address as consumers see it: the pod's resourceVersion in targetRef is not part of it.
/// Borrowed, as the comparison runs on every sync over every address.
type AddressView<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<[Option<&'a str>; 5]>,
);

fn address_view(address: &EndpointAddress) -> AddressView<'_> {
    fn non_empty(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|s| !s.is_empty())
    }
    (
        &address.ip,
        non_empty(&address.hostname),
        non_empty(&address.node_name),
        address.target_ref.as_ref().map(|r| {
            [&r.kind, &r.namespace, &r.name, &r.uid, &r.api_version].map(Option::as_deref)
        }),
    )
}

/// A port as [`PortKey`] spells it, borrowed.
type PortView<'a> = (&'a str, i32, &'a str, Option<&'a str>);

fn port_view(port: &EndpointPort) -> PortView<'_> {
    (
        port.name.as_deref().unwrap_or_default(),
        port.port,
        port.protocol.as_deref().unwrap_or("TCP"),
        port.app_protocol.as_deref(),
    )
}

/// Every (port, address, ready) the object lists, sorted, each once.
fn expanded(endpoints: &Endpoints) -> Vec<(Option<PortView<'_>>, AddressView<'_>, bool)> {
    let mut expansion = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<Option<PortView<'_>>> = match subset.ports.as_deref() {
            Some(ports) if !ports.is_empty() => ports.iter().map(|p| Some(port_view(p))).collect(),
            _ => vec![None],
        };
        for port in &ports {
            for (list, ready) in [
                (&subset.addresses, true),
                (&subset.not_ready_addresses, false),
            ] {
                for address in list.iter().flatten() {
                    expansion.push((*port, address_view(address), ready));
                }
            }
        }
    }
    // Sorted once rather than inserted into a set: this runs on every sync over every address.
    expansion.sort_unstable();
    expansion.dedup();
    expansion
}

/// Whether two Endpoints objects publish the same thing: the same (port, address, readiness)
/// triples, however they are ordered or grouped into subsets, ignoring the pod resourceVersion
/// in `targetRef`. Metadata is not compared.
pub fn endpoints_equivalent(a: &Endpoints, b: &Endpoints) -> bool {
    expanded(a) == expanded(b)
}

fn labels_without_manager(endpoints: &Endpoints) -> BTreeMap<&str, &str> {
    endpoints
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LABEL_ENDPOINTS_MANAGED_BY)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn annotation<'a>(endpoints: &'a Endpoints, key: &str) -> Option<&'a str> {
    endpoints
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The write that brings `current` (the cached object, if any) to `desired` (from
/// [`desired_endpoints`]), or `None` when nothing consumers see changed.
///
/// A write is needed when the addresses differ ([`endpoints_equivalent`]), when the labels
/// differ, or when the over-capacity annotation is wrong. The trigger-time annotation alone never
/// causes a write, and neither does the managed-by label alone: taking over from the in-tree
/// controller must not rewrite every Endpoints object.
pub fn plan_endpoints_write(
    current: Option<&Endpoints>,
    desired: &Endpoints,
) -> Option<EndpointsWrite> {
    let Some(current) = current else {
        return Some(EndpointsWrite::Create(desired.clone()));
    };
    let unchanged = endpoints_equivalent(current, desired)
        && labels_without_manager(current) == labels_without_manager(desired)
        && annotation(current, ANNOTATION_OVER_CAPACITY)
            == annotation(desired, ANNOTATION_OVER_CAPACITY);
    if unchanged {
        return None;
    }
    let mut updated = current.clone();
    updated.subsets = desired.subsets.clone();
    updated.metadata.labels = desired.metadata.labels.clone();
    let mut annotations = current.metadata.annotations.clone().unwrap_or_default();
    for key in [
        ANNOTATION_LAST_CHANGE_TRIGGER_TIME,
        ANNOTATION_OVER_CAPACITY,
    ] {
        match annotation(desired, key) {
            Some(value) => annotations.insert(key.to_string(), value.to_string()),
            None => annotations.remove(key),
        };
    }
    updated.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(EndpointsWrite::Update(updated))
}

/// What this controller last wrote to each Endpoints object it updated, kept until the cache
/// shows it.
///
/// A sync that finds the cache still showing a version this controller replaced plans from
/// what it wrote instead of waiting for the watch to bring its own write back: a Service's
/// next write follows the last one's answer, not its echo. A version the tracker does not
/// know, or no object at all, is someone else's later doing: the cache is used, and the entry
/// dropped. Creates are not kept: "no object" after a create cannot be told from a deletion
/// since (a create planned from a cache behind fails as already existing, and is retried). A
/// write planned from a written object that someone else has since replaced fails on its
/// resourceVersion, as any write from a stale cache does; [`EndpointsTracker::forget`] on that
/// failure makes the next sync plan from the cache again. An entry is dropped by the first
/// sync that finds the cache caught up, so it may outlive the echo until the Service's next
/// sync: at most one written object per Service, beside the cache's copy.
#[derive(Debug, Default, Clone)]
pub struct EndpointsTracker {
    written: HashMap<(String, String), Written>,
}

#[derive(Debug, Clone)]
struct Written {
    object: Arc<Endpoints>,
    /// The versions replaced since the cache last showed a written object.
    replaced: Vec<String>,
}

fn namespaced_name(endpoints: &Endpoints) -> (String, String) {
    (
        endpoints.metadata.namespace.clone().unwrap_or_default(),
        endpoints.metadata.name.clone().unwrap_or_default(),
    )
}

impl EndpointsTracker {
    /// The object a sync of the Service `namespace/name` should plan from, given the cached
    /// one: what this controller wrote while the cache still shows a version it replaced, the
    /// cached object otherwise.
    pub fn current(
        &mut self,
        namespace: &str,
        name: &str,
        cached: Option<Arc<Endpoints>>,
    ) -> Option<Arc<Endpoints>> {
        let key = (namespace.to_string(), name.to_string());
        let Some(written) = self.written.get(&key) else {
            return cached;
        };
        let version = cached
            .as_ref()
            .and_then(|c| c.metadata.resource_version.as_ref());
        if let Some(version) = version
            && written.replaced.contains(version)
            && Some(version) != written.object.metadata.resource_version.as_ref()
        {
            return Some(written.object.clone());
        }
        self.written.remove(&key);
        cached
    }

    /// Records a successful update: `previous` is the object it was planned from, `sent` the
    /// object sent and `stored` the metadata the apiserver answered with.
    pub fn record_update(&mut self, previous: &Endpoints, sent: Endpoints, stored: ObjectMeta) {
        let Some(replaced) = previous.metadata.resource_version.clone() else {
            return;
        };
        let object = Arc::new(Endpoints {
            metadata: ObjectMeta {
                managed_fields: None,
                ..stored
            },
            subsets: sent.subsets,
        });
        let entry = self
            .written
            .entry(namespaced_name(&object))
            .or_insert_with(|| Written {
                object: object.clone(),
                replaced: Vec::new(),
            });
        entry.object = object;
        entry.replaced.push(replaced);
    }

    /// Forgets what was written to a Service's Endpoints: after a failed write (the next sync
    /// plans from the cache) or when the Service is gone.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        self.written
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests;
