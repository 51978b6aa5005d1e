//! How slices and endpoints are recognised across syncs: by their port list, and an endpoint by
//! its addresses, hostname and pod, so that condition or topology changes are updates in place.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice,
};

use crate::pods::{PodInfo, addresses_of_family, pod_reference};
use crate::service::IpFamily;

/// A slice's port list, order and spelling normalised (no name is `""`, no protocol is TCP).
/// Endpoints with the same resolved ports share slices; slices of different port lists never
/// mix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PortsKey(Vec<(String, Option<i32>, String, Option<String>)>);

impl PortsKey {
    pub(crate) fn of(ports: &[EndpointPort]) -> Self {
        let mut key: Vec<_> = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.app_protocol.clone(),
                )
            })
            .collect();
        key.sort();
        PortsKey(key)
    }

    pub(crate) fn of_slice(slice: &EndpointSlice) -> Self {
        Self::of(slice.ports.as_deref().unwrap_or_default())
    }
}

/// Identifies an endpoint: its addresses, hostname and pod. Everything else about it (ready,
/// serving, terminating, node, zone, hints) may change without it becoming a new endpoint.
/// Borrowed from the endpoint: syncs key thousands of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EndpointKey<'a> {
    addresses: Addresses<'a>,
    hostname: &'a str,
    namespace: &'a str,
    name: &'a str,
}

/// An endpoint's addresses, sorted; the usual single address without an allocation.
#[derive(Debug, Clone)]
enum Addresses<'a> {
    One(&'a str),
    Sorted(Vec<&'a str>),
}

impl<'a> Addresses<'a> {
    fn of(addresses: &'a [String]) -> Self {
        Self::of_texts(addresses.iter().map(String::as_str))
    }

    fn of_texts(mut texts: impl Iterator<Item = &'a str>) -> Self {
        match (texts.next(), texts.next()) {
            (Some(one), None) => Addresses::One(one),
            (first, second) => {
                let mut sorted: Vec<&str> = first.into_iter().chain(second).chain(texts).collect();
                sorted.sort_unstable();
                Addresses::Sorted(sorted)
            }
        }
    }

    fn as_slice(&self) -> &[&'a str] {
        match self {
            Addresses::One(one) => std::slice::from_ref(one),
            Addresses::Sorted(sorted) => sorted,
        }
    }
}

impl PartialEq for Addresses<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Addresses<'_> {}

impl PartialOrd for Addresses<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Addresses<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::hash::Hash for Addresses<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl<'a> EndpointKey<'a> {
    pub(crate) fn of(endpoint: &'a Endpoint) -> Self {
        let addresses = Addresses::of(&endpoint.addresses);
        let target = endpoint.target_ref.as_ref();
        EndpointKey {
            addresses,
            hostname: endpoint.hostname.as_deref().unwrap_or_default(),
            namespace: target
                .and_then(|t| t.namespace.as_deref())
                .unwrap_or_default(),
            name: target.and_then(|t| t.name.as_deref()).unwrap_or_default(),
        }
    }
}

/// Sorts endpoints by [`EndpointKey`], each key computed once.
pub(crate) fn sort_by_key(endpoints: &mut Vec<Endpoint>) {
    let order: Vec<usize> = {
        let mut keyed: Vec<(EndpointKey<'_>, usize)> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (EndpointKey::of(e), i))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, i)| i).collect()
    };
    let mut slots: Vec<Option<Endpoint>> =
        std::mem::take(endpoints).into_iter().map(Some).collect();
    *endpoints = order.into_iter().filter_map(|i| slots[i].take()).collect();
}

/// An endpoint's fields as compared: addresses sorted, empty strings and empty conditions as
/// unset, the pod's resourceVersion left out. Borrowed: syncs compare thousands of endpoints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointFields<'a> {
    addresses: Addresses<'a>,
    conditions: Option<&'a EndpointConditions>,
    deprecated_topology: Option<&'a BTreeMap<String, String>>,
    hints: Option<&'a EndpointHints>,
    /// Hostname, node name, zone.
    names: [Option<&'a str>; 3],
    /// API version, field path, kind, name, namespace, uid.
    target: Option<[Option<&'a str>; 6]>,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

impl<'a> EndpointFields<'a> {
    pub(crate) fn of(endpoint: &'a Endpoint) -> Self {
        // Destructured so that a field added to Endpoint or ObjectReference cannot be forgotten.
        let Endpoint {
            addresses,
            conditions,
            deprecated_topology,
            hints,
            hostname,
            node_name,
            target_ref,
            zone,
        } = endpoint;
        let target = target_ref.as_ref().map(|target| {
            let ObjectReference {
                api_version,
                field_path,
                kind,
                name,
                namespace,
                resource_version: _,
                uid,
            } = target;
            [api_version, field_path, kind, name, namespace, uid].map(Option::as_deref)
        });
        EndpointFields {
            addresses: Addresses::of(addresses),
            conditions: conditions
                .as_ref()
                .filter(|c| **c != EndpointConditions::default()),
            deprecated_topology: deprecated_topology.as_ref(),
            hints: hints.as_ref(),
            names: [hostname, node_name, zone].map(|s| non_empty(s.as_deref())),
            target,
        }
    }

    /// The fields of a pod's endpoint as [`DesiredEndpoint::to_endpoint`] writes it out,
    /// without writing it out.
    pub(crate) fn of_pod(endpoint: PodEndpoint<'a>) -> Self {
        let pod = endpoint.pod;
        EndpointFields {
            addresses: Addresses::of_texts(endpoint.addresses()),
            conditions: Some(endpoint.conditions).filter(|c| **c != EndpointConditions::default()),
            deprecated_topology: None,
            hints: endpoint.hints,
            names: [endpoint.hostname, pod.node_name.as_deref(), endpoint.zone].map(non_empty),
            target: Some([
                None,
                None,
                Some("Pod"),
                Some(&pod.name),
                Some(&pod.namespace),
                pod.uid.as_deref(),
            ]),
        }
    }

    /// The endpoint's identity.
    pub(crate) fn key(&self) -> EndpointKey<'a> {
        let target = self.target.unwrap_or_default();
        EndpointKey {
            addresses: self.addresses.clone(),
            hostname: self.names[0].unwrap_or_default(),
            namespace: target[4].unwrap_or_default(),
            name: target[3].unwrap_or_default(),
        }
    }
}

/// An endpoint the reconciler is to place: recognised by its fields, written out only when the
/// slice it goes into is written.
pub(crate) trait DesiredEndpoint<'a>: Copy {
    /// Its fields as compared.
    fn fields(self) -> EndpointFields<'a>;
    /// Its identity.
    fn key(self) -> EndpointKey<'a> {
        self.fields().key()
    }
    /// The endpoint, written out.
    fn to_endpoint(self) -> Endpoint;
}

impl<'a> DesiredEndpoint<'a> for &'a Endpoint {
    fn fields(self) -> EndpointFields<'a> {
        EndpointFields::of(self)
    }

    fn to_endpoint(self) -> Endpoint {
        self.clone()
    }
}

/// A pod's endpoint of one address type, from what an index keeps of the pod: written out
/// only when a slice is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodEndpoint<'a> {
    pub pod: &'a PodInfo,
    pub family: IpFamily,
    pub conditions: &'a EndpointConditions,
    pub hints: Option<&'a EndpointHints>,
    pub hostname: Option<&'a str>,
    pub zone: Option<&'a str>,
}

impl<'a> PodEndpoint<'a> {
    /// The pod's addresses of the endpoint's address type.
    pub(crate) fn addresses(self) -> impl Iterator<Item = &'a str> {
        addresses_of_family(self.pod, self.family)
    }
}

impl<'a> DesiredEndpoint<'a> for PodEndpoint<'a> {
    fn fields(self) -> EndpointFields<'a> {
        EndpointFields::of_pod(self)
    }

    fn key(self) -> EndpointKey<'a> {
        EndpointKey {
            addresses: Addresses::of_texts(self.addresses()),
            hostname: self.hostname.unwrap_or_default(),
            namespace: &self.pod.namespace,
            name: &self.pod.name,
        }
    }

    fn to_endpoint(self) -> Endpoint {
        let pod = self.pod;
        Endpoint {
            addresses: self.addresses().map(str::to_string).collect(),
            conditions: Some(self.conditions.clone()),
            hints: self.hints.cloned(),
            hostname: self.hostname.map(str::to_string),
            node_name: pod.node_name.clone(),
            target_ref: Some(pod_reference(pod)),
            zone: self.zone.map(str::to_string),
            deprecated_topology: None,
        }
    }
}

/// Whether two endpoints publish the same thing, ignoring address order and the pod's
/// resourceVersion in `targetRef` (a pod annotation change must not rewrite slices).
pub(crate) fn same_endpoint<'a>(a: impl DesiredEndpoint<'a>, b: &Endpoint) -> bool {
    a.fields() == EndpointFields::of(b)
}

/// [`same_endpoint`] without the hints, as in-tree's `EndpointsEqualBeyondHash`
/// (k8s.io/endpointslice util/controller_utils.go) compares them when Auto hints are given
/// after planning.
pub(crate) fn same_endpoint_beyond_hints<'a>(a: impl DesiredEndpoint<'a>, b: &Endpoint) -> bool {
    let (mut a, mut b) = (a.fields(), EndpointFields::of(b));
    (a.hints, b.hints) = (None, None);
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(addresses: &[&str], pod: &str) -> Endpoint {
        Endpoint {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some(pod.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn identity_survives_condition_changes_but_not_address_changes() {
        let a = endpoint(&["10.0.0.1"], "a");
        let mut not_ready = a.clone();
        not_ready.conditions = Some(EndpointConditions {
            ready: Some(false),
            ..Default::default()
        });
        assert_eq!(EndpointKey::of(&a), EndpointKey::of(&not_ready));
        assert!(!same_endpoint(&a, &not_ready));
        assert_ne!(
            EndpointKey::of(&a),
            EndpointKey::of(&endpoint(&["10.0.0.2"], "a"))
        );
        assert_ne!(
            EndpointKey::of(&a),
            EndpointKey::of(&endpoint(&["10.0.0.1"], "b"))
        );
    }

    #[test]
    fn address_order_does_not_matter_and_keys_order_like_sorted_lists() {
        let two = endpoint(&["10.0.0.2", "10.0.0.1"], "a");
        assert_eq!(
            EndpointKey::of(&two),
            EndpointKey::of(&endpoint(&["10.0.0.1", "10.0.0.2"], "a"))
        );
        assert!(same_endpoint(
            &two,
            &endpoint(&["10.0.0.1", "10.0.0.2"], "a")
        ));
        // One address compares as the one-element list it is.
        let one = endpoint(&["10.0.0.1"], "a");
        let after = endpoint(&["10.0.0.10"], "a");
        assert!(EndpointKey::of(&one) < EndpointKey::of(&two));
        assert!(EndpointKey::of(&two) < EndpointKey::of(&after));
    }

    #[test]
    fn sameness_ignores_pod_resource_version_and_empty_spellings() {
        let a = endpoint(&["10.0.0.1"], "a");
        let mut b = a.clone();
        b.target_ref.as_mut().unwrap().resource_version = Some("99".into());
        b.hostname = Some(String::new());
        b.conditions = Some(EndpointConditions::default());
        assert!(same_endpoint(&a, &b));
    }

    #[test]
    fn ports_key_ignores_order_and_default_spellings() {
        let http = EndpointPort {
            name: Some("http".into()),
            port: Some(80),
            protocol: Some("TCP".into()),
            app_protocol: None,
        };
        let unnamed = EndpointPort {
            name: None,
            port: Some(81),
            protocol: None,
            app_protocol: None,
        };
        let unnamed_spelled = EndpointPort {
            name: Some(String::new()),
            port: Some(81),
            protocol: Some("TCP".into()),
            app_protocol: None,
        };
        assert_eq!(
            PortsKey::of(&[http.clone(), unnamed]),
            PortsKey::of(&[unnamed_spelled, http])
        );
        assert_eq!(
            PortsKey::of(&[]),
            PortsKey::of_slice(&EndpointSlice::default())
        );
    }
}
