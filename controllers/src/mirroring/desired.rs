//! Whether a user-written Endpoints object is mirrored, and what its mirrored slices hold.
//!
//! The Endpoints' subsets are first brought into their canonical form, as the apiserver's
//! repacking does: every (port, address) pair expanded, addresses de-duplicated by IP and target
//! UID with not-ready winning, and ports sharing exactly the same addresses grouped again. Each
//! canonical subset then becomes one slice per address family, capped at
//! `--mirroring-max-endpoints-per-subset` addresses (ready ones first).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::endpointslice::{EndpointGroup, MaxEndpointsPerSlice};
use crate::service::{IpFamily, parse_ip};
use crate::slice_name::generate_name_prefix;
use crate::well_known::{
    ANNOTATION_LAST_APPLIED_CONFIGURATION, ANNOTATION_LAST_CHANGE_TRIGGER_TIME,
    ANNOTATION_LEADER_ELECTION, IN_TREE_ENDPOINTS_MANAGER, LABEL_ENDPOINTS_MANAGED_BY,
    LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR, LABEL_SLICE_MANAGED_BY, SVCPLANE_ENDPOINTS_MANAGER,
    SVCPLANE_MIRRORING_MANAGER,
};

/// Event reason (type Warning, on the Endpoints object) for addresses that are not IPs.
pub const REASON_INVALID_IP_ADDRESS: &str = "InvalidIPAddress";
/// Event reason (type Warning, on the Endpoints object) for addresses beyond the per-subset cap.
pub const REASON_TOO_MANY_ADDRESSES_TO_MIRROR: &str = "TooManyAddressesToMirror";

/// Inputs of [`desired_mirrored_slices`] that do not come from the cluster objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirroringParams {
    /// `--mirroring-max-endpoints-per-subset`: addresses mirrored per canonical subset, so that
    /// each subset fits one slice per family (1 to 1000, default 1000).
    pub max_endpoints_per_subset: MaxEndpointsPerSlice,
}

impl Default for MirroringParams {
    fn default() -> Self {
        MirroringParams {
            max_endpoints_per_subset: MaxEndpointsPerSlice::new(1000)
                .expect("1000 is within --mirroring-max-endpoints-per-subset's range"),
        }
    }
}

/// Why an Endpoints object is not mirrored. Whatever the reason, its mirrored slices are
/// deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The Endpoints object does not exist (any more).
    EndpointsMissing,
    /// No Service of the same name exists.
    ServiceMissing,
    /// The Service has a selector: the EndpointSlice controller writes its slices.
    ServiceHasSelector,
    /// The Endpoints carries `endpointslice.kubernetes.io/skip-mirror: "true"`.
    SkipMirrorLabel,
    /// The Endpoints is an old-style leader election lock, not a list of endpoints.
    LeaderElection,
    /// The Endpoints was written by an Endpoints controller (the value of its
    /// `endpoints.kubernetes.io/managed-by` label), not by a user.
    ManagedByController(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::EndpointsMissing => f.write_str("the Endpoints object does not exist"),
            SkipReason::ServiceMissing => f.write_str("no Service of the same name exists"),
            SkipReason::ServiceHasSelector => f.write_str("the Service has a selector"),
            SkipReason::SkipMirrorLabel => {
                write!(f, "the Endpoints is labelled {LABEL_SKIP_MIRROR}=true")
            }
            SkipReason::LeaderElection => {
                write!(f, "the Endpoints carries {ANNOTATION_LEADER_ELECTION}")
            }
            SkipReason::ManagedByController(manager) => {
                write!(f, "the Endpoints is managed by {manager}")
            }
        }
    }
}

/// An event to record on the Endpoints object. Both mirroring events are of type Warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroringEvent {
    /// [`REASON_INVALID_IP_ADDRESS`] or [`REASON_TOO_MANY_ADDRESSES_TO_MIRROR`].
    pub reason: &'static str,
    /// The in-tree controller's message.
    pub message: String,
}

/// Everything the mirrored slices of one Endpoints object should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredMirroredSlices {
    /// The metadata every mirrored slice carries: namespace, `generateName`, the Endpoints'
    /// labels and annotations as mirrored, and the controller reference to the Endpoints.
    pub metadata: ObjectMeta,
    /// One group per address type and port list, each holding at least one endpoint; each
    /// becomes exactly one slice. Ordered by address type and port list.
    pub groups: Vec<EndpointGroup>,
    /// The Endpoints is being deleted: nothing new is created for it.
    pub endpoints_being_deleted: bool,
    /// Addresses left out, invalid ones included (the in-tree
    /// `addresses_skipped_per_sync` metric).
    pub addresses_skipped: usize,
    /// Events to record on the Endpoints object.
    pub events: Vec<MirroringEvent>,
}

/// Whether the Endpoints object itself allows mirroring, whatever its Service: not labelled
/// `skip-mirror: "true"`, not a leader-election lock, not written by an Endpoints controller.
/// A watch event needs a mirroring sync only when this holds for the old or the new object.
pub fn endpoints_mirrorable(endpoints: &Endpoints) -> Result<(), SkipReason> {
    let labels = endpoints.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(LABEL_SKIP_MIRROR) == Some("true") {
        return Err(SkipReason::SkipMirrorLabel);
    }
    if endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_LEADER_ELECTION))
    {
        return Err(SkipReason::LeaderElection);
    }
    if let Some(manager @ (IN_TREE_ENDPOINTS_MANAGER | SVCPLANE_ENDPOINTS_MANAGER)) =
        label(LABEL_ENDPOINTS_MANAGED_BY)
    {
        return Err(SkipReason::ManagedByController(manager.to_string()));
    }
    Ok(())
}

/// Whether the Endpoints object should be mirrored, given the Service of the same name; both
/// come from caches and may be missing.
pub fn should_mirror(
    service: Option<&Service>,
    endpoints: Option<&Endpoints>,
) -> Result<(), SkipReason> {
    endpoints_mirrorable(endpoints.ok_or(SkipReason::EndpointsMissing)?)?;
    let service = service.ok_or(SkipReason::ServiceMissing)?;
    if service.spec.as_ref().is_some_and(|s| s.selector.is_some()) {
        return Err(SkipReason::ServiceHasSelector);
    }
    Ok(())
}

/// The mirrored slices the Endpoints object should have, or why it is not mirrored (then every
/// mirrored slice of it goes: see [`plan_mirrored_slices`](super::plan_mirrored_slices)).
///
/// Ready addresses become endpoints with `ready: true`, not-ready ones `ready: false` (no other
/// condition is set, as in-tree). Addresses that do not parse as IPs are skipped with an
/// `InvalidIPAddress` event; a canonical subset with more than
/// [`MirroringParams::max_endpoints_per_subset`] addresses keeps the first ones (ready first,
/// then by IP) and the rest are reported with a `TooManyAddressesToMirror` event. IPv4 and IPv6
/// addresses of one subset go to separate slices.
pub fn desired_mirrored_slices(
    service: Option<&Service>,
    endpoints: Option<&Endpoints>,
    params: &MirroringParams,
) -> Result<DesiredMirroredSlices, SkipReason> {
    should_mirror(service, endpoints)?;
    let endpoints = endpoints.ok_or(SkipReason::EndpointsMissing)?;
    let cap = params.max_endpoints_per_subset.get();

    let mut groups: BTreeMap<(IpFamily, Vec<PortKey>), EndpointGroup> = BTreeMap::new();
    let mut invalid = 0;
    let mut skipped = 0;
    for subset in canonical_subsets(endpoints.subsets.as_deref().unwrap_or_default()) {
        let total = subset.addresses.len();
        let mut added = 0;
        for (address, ready) in subset.addresses {
            if added == cap {
                break;
            }
            let Some(ip) = parse_ip(&address.ip).map(unmap_ipv4) else {
                invalid += 1;
                continue;
            };
            added += 1;
            let family = IpFamily::of(&ip);
            groups
                .entry((family, subset.ports.clone()))
                .or_insert_with(|| EndpointGroup {
                    address_type: family,
                    ports: subset.ports.iter().map(PortKey::to_api).collect(),
                    endpoints: Vec::new(),
                })
                .endpoints
                .push(mirrored_endpoint(address, ip, ready));
        }
        skipped += total - added;
    }

    let mut events = Vec::new();
    if invalid > 0 {
        events.push(MirroringEvent {
            reason: REASON_INVALID_IP_ADDRESS,
            message: format!(
                "Skipped {invalid} invalid IP addresses when mirroring to EndpointSlices"
            ),
        });
    }
    if skipped > invalid {
        events.push(MirroringEvent {
            reason: REASON_TOO_MANY_ADDRESSES_TO_MIRROR,
            message: format!(
                "A max of {cap} addresses can be mirrored to EndpointSlices per Endpoints subset. {skipped} addresses were skipped"
            ),
        });
    }

    Ok(DesiredMirroredSlices {
        metadata: mirrored_metadata(endpoints),
        groups: groups.into_values().collect(),
        endpoints_being_deleted: endpoints.metadata.deletion_timestamp.is_some(),
        addresses_skipped: skipped,
        events,
    })
}

/// An IPv4-mapped IPv6 address counts as IPv4, as Go's `To4` has it.
fn unmap_ipv4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mirrored_endpoint(address: &EndpointAddress, ip: IpAddr, ready: bool) -> Endpoint {
    Endpoint {
        // Re-spelled: `010.0.0.1` is published as `10.0.0.1`.
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    }
}

/// The labels a mirrored slice carries: the Endpoints' own, with the service name and this
/// controller as manager.
pub(super) fn mirrored_labels(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        endpoints.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_SLICE_MANAGED_BY.into(),
        SVCPLANE_MIRRORING_MANAGER.into(),
    );
    labels
}

fn mirrored_metadata(endpoints: &Endpoints) -> ObjectMeta {
    let annotations: BTreeMap<String, String> = endpoints
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| {
            !matches!(
                key.as_str(),
                ANNOTATION_LAST_CHANGE_TRIGGER_TIME | ANNOTATION_LAST_APPLIED_CONFIGURATION
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = endpoints.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        generate_name: Some(generate_name_prefix(&name)),
        namespace: endpoints.metadata.namespace.clone(),
        labels: Some(mirrored_labels(endpoints)),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            name,
            uid: endpoints.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    }
}

/// A port of an Endpoints subset, spelled as a slice port would be (no name is `""`, no
/// protocol is TCP). Also identifies a mirrored slice's port list, order aside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

impl PortKey {
    fn of_endpoints(port: &k8s_openapi::api::core::v1::EndpointPort) -> Self {
        PortKey {
            name: port.name.clone().unwrap_or_default(),
            port: port.port,
            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: port.app_protocol.clone(),
        }
    }

    /// The sorted port list of a slice, `None` when a port has no number (never written by
    /// this controller, so such a slice matches no desired group).
    pub(super) fn list_of_slice(ports: &[EndpointPort]) -> Option<Vec<Self>> {
        let mut list = ports
            .iter()
            .map(|p| {
                Some(PortKey {
                    name: p.name.clone().unwrap_or_default(),
                    port: p.port?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        list.sort();
        Some(list)
    }

    pub(super) fn list_of_group(group: &EndpointGroup) -> Option<Vec<Self>> {
        Self::list_of_slice(&group.ports)
    }

    fn to_api(&self) -> EndpointPort {
        EndpointPort {
            name: Some(self.name.clone()),
            port: Some(self.port),
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }
}

/// Addresses are told apart by IP and target UID (a missing target counts as an empty UID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AddressKey {
    ip: String,
    uid: String,
}

impl AddressKey {
    fn of(address: &EndpointAddress) -> Self {
        AddressKey {
            ip: address.ip.clone(),
            uid: address
                .target_ref
                .as_ref()
                .and_then(|t| t.uid.clone())
                .unwrap_or_default(),
        }
    }
}

/// A subset in canonical form: sorted ports (empty for a port-less subset) and its addresses,
/// ready ones first, each group by IP then target UID.
struct CanonicalSubset<'a> {
    ports: Vec<PortKey>,
    addresses: Vec<(&'a EndpointAddress, bool)>,
}

fn canonical_subsets(subsets: &[EndpointSubset]) -> Vec<CanonicalSubset<'_>> {
    let mut first_seen: BTreeMap<AddressKey, &EndpointAddress> = BTreeMap::new();
    // `None` stands for "no ports": port-less subsets keep their addresses.
    let mut readiness_by_port: BTreeMap<Option<PortKey>, BTreeMap<AddressKey, bool>> =
        BTreeMap::new();
    for subset in subsets {
        let ports: Vec<Option<PortKey>> = match subset.ports.as_deref() {
            Some(ports) if !ports.is_empty() => ports
                .iter()
                .map(|p| Some(PortKey::of_endpoints(p)))
                .collect(),
            _ => vec![None],
        };
        let listed = [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ];
        for port in ports {
            let readiness = readiness_by_port.entry(port).or_default();
            for (list, ready) in listed {
                for address in list.iter().flatten() {
                    let key = AddressKey::of(address);
                    first_seen.entry(key.clone()).or_insert(address);
                    readiness
                        .entry(key)
                        .and_modify(|was_ready| *was_ready &= ready)
                        .or_insert(ready);
                }
            }
        }
    }

    let mut ports_by_members: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, readiness) in readiness_by_port {
        let ports = ports_by_members
            .entry(readiness.into_iter().collect())
            .or_default();
        ports.extend(port);
    }
    ports_by_members
        .into_iter()
        .map(|(members, mut ports)| {
            ports.sort();
            let (ready, not_ready): (Vec<_>, Vec<_>) = members.into_iter().partition(|(_, r)| *r);
            CanonicalSubset {
                ports,
                addresses: ready
                    .into_iter()
                    .chain(not_ready)
                    .map(|(key, ready)| (first_seen[&key], ready))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
