//! How slices and endpoints are recognised across syncs: by their port list, and an endpoint by
//! its addresses, hostname and pod, so that condition or topology changes are updates in place.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EndpointKey {
    addresses: Vec<String>,
    hostname: String,
    namespace: String,
    name: String,
}

impl EndpointKey {
    pub(crate) fn of(endpoint: &Endpoint) -> Self {
        let mut addresses = endpoint.addresses.clone();
        addresses.sort();
        let target = endpoint.target_ref.as_ref();
        EndpointKey {
            addresses,
            hostname: endpoint.hostname.clone().unwrap_or_default(),
            namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
            name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        }
    }
}

fn normalised(endpoint: &Endpoint) -> Endpoint {
    let mut e = endpoint.clone();
    e.addresses.sort();
    if let Some(target) = &mut e.target_ref {
        target.resource_version = None;
    }
    if e.conditions == Some(EndpointConditions::default()) {
        e.conditions = None;
    }
    for field in [&mut e.hostname, &mut e.node_name, &mut e.zone] {
        if field.as_deref() == Some("") {
            *field = None;
        }
    }
    e
}

/// Whether two endpoints publish the same thing, ignoring address order and the pod's
/// resourceVersion in `targetRef` (a pod annotation change must not rewrite slices).
pub(crate) fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    normalised(a) == normalised(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

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
