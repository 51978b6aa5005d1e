//! Admission of user-written Endpoints and EndpointSlices: refuse addresses that would turn
//! a Service into a way to reach what its author should not reach.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::admission::AdmissionResponse;

use super::addresses::{containing_cidr, special_address};
use crate::review::{FieldError, Request, deny_invalid, typed_object};

/// What user-written endpoints are checked against.
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    /// The cluster's Service CIDRs: an endpoint there would point a Service at a virtual IP.
    pub service_cidrs: Vec<IpNet>,
    /// Refuse pod IPs that belong to another namespace (CVE-2021-25740).
    pub deny_foreign_pod_ips: bool,
    /// Users whose writes are not checked: the endpoint controllers, which only write what
    /// they computed from pods.
    pub trusted_writers: BTreeSet<String>,
}

/// Which namespace a pod IP belongs to, as far as the webhook's pod cache knows.
pub trait PodIps {
    /// The namespace of the pod that has `ip`, if any.
    fn namespace_of(&self, ip: IpAddr) -> Option<String>;
}

impl PodIps for HashMap<IpAddr, String> {
    fn namespace_of(&self, ip: IpAddr) -> Option<String> {
        self.get(&ip).cloned()
    }
}

/// Admits an Endpoints or EndpointSlice create or update.
pub fn admit_endpoints(
    request: &Request,
    policy: &EndpointPolicy,
    pods: &dyn PodIps,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    if policy
        .trusted_writers
        .contains(request.user_info.username.as_deref().unwrap_or_default())
    {
        return allowed;
    }
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let errors = match request.kind.kind.as_str() {
        "Endpoints" => match typed_object::<Endpoints>(request) {
            Ok(Some(endpoints)) => endpoints_errors(&endpoints, namespace, policy, pods),
            Ok(None) => return allowed,
            Err(reason) => return allowed.deny(reason),
        },
        "EndpointSlice" => match typed_object::<EndpointSlice>(request) {
            Ok(Some(slice)) => slice_errors(&slice, namespace, policy, pods),
            Ok(None) => return allowed,
            Err(reason) => return allowed.deny(reason),
        },
        other => {
            tracing::warn!(
                kind = other,
                "endpoint validation called for another kind: check the webhook configuration"
            );
            let mut response = allowed;
            response.warnings = Some(vec![format!("svcplane does not validate {other} objects")]);
            return response;
        }
    };
    if errors.is_empty() {
        allowed
    } else {
        deny_invalid(request, &errors)
    }
}

fn endpoints_errors(
    endpoints: &Endpoints,
    namespace: &str,
    policy: &EndpointPolicy,
    pods: &dyn PodIps,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (s, subset) in endpoints.subsets.iter().flatten().enumerate() {
        for (list, addresses) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (a, address) in addresses.iter().flatten().enumerate() {
                let field = format!("subsets[{s}].{list}[{a}].ip");
                errors.extend(address_error(field, &address.ip, namespace, policy, pods));
            }
        }
    }
    errors
}

fn slice_errors(
    slice: &EndpointSlice,
    namespace: &str,
    policy: &EndpointPolicy,
    pods: &dyn PodIps,
) -> Vec<FieldError> {
    if slice.address_type == "FQDN" {
        return Vec::new();
    }
    let mut errors = Vec::new();
    for (e, endpoint) in slice.endpoints.iter().flatten().enumerate() {
        for (a, address) in endpoint.addresses.iter().enumerate() {
            let field = format!("endpoints[{e}].addresses[{a}]");
            errors.extend(address_error(field, address, namespace, policy, pods));
        }
    }
    errors
}

fn address_error(
    field: String,
    address: &str,
    namespace: &str,
    policy: &EndpointPolicy,
    pods: &dyn PodIps,
) -> Option<FieldError> {
    let Ok(ip) = address.parse::<IpAddr>() else {
        return Some(FieldError::invalid(
            field,
            address,
            "must be a valid IP address",
        ));
    };
    if let Some(reason) = special_address(ip) {
        return Some(FieldError::invalid(field, address, reason));
    }
    if let Some(cidr) = containing_cidr(&policy.service_cidrs, ip) {
        return Some(FieldError::invalid(
            field,
            address,
            format!(
                "may not be in the service IP range {cidr}: endpoints must point at pods or hosts, not at virtual IPs"
            ),
        ));
    }
    if policy.deny_foreign_pod_ips
        && let Some(owner) = pods.namespace_of(ip)
        && owner != namespace
    {
        return Some(FieldError::invalid(
            field,
            address,
            format!(
                "belongs to a pod in namespace {owner:?}: endpoints may only point at pods of their own namespace"
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn request(kind: &str, object: Value, user: &str) -> Request {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": { "group": "", "version": "v1", "kind": kind },
                "resource": { "group": "", "version": "v1", "resource": "endpoints" },
                "name": "external",
                "namespace": "team-a",
                "operation": "CREATE",
                "userInfo": { "username": user },
                "object": object,
            }
        });
        crate::review::decode(&serde_json::to_vec(&review).unwrap()).unwrap()
    }

    fn endpoints(ips: &[&str]) -> Value {
        let addresses: Vec<Value> = ips.iter().map(|ip| json!({ "ip": ip })).collect();
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": "external", "namespace": "team-a" },
            "subsets": [{ "addresses": addresses, "ports": [{ "name": "http", "port": 80 }] }],
        })
    }

    fn policy() -> EndpointPolicy {
        EndpointPolicy {
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            deny_foreign_pod_ips: true,
            trusted_writers: BTreeSet::from(["system:kube-controller-manager".to_string()]),
        }
    }

    fn pods() -> HashMap<IpAddr, String> {
        HashMap::from([
            ("192.168.1.10".parse().unwrap(), "team-a".to_string()),
            ("192.168.1.20".parse().unwrap(), "team-b".to_string()),
        ])
    }

    #[test]
    fn an_external_address_is_admitted() {
        let response = admit_endpoints(
            &request(
                "Endpoints",
                endpoints(&["172.67.185.241", "192.168.1.10"]),
                "alice",
            ),
            &policy(),
            &pods(),
        );
        assert!(response.allowed, "{:?}", response.result);
    }

    #[test]
    fn each_bad_address_is_named_with_its_field() {
        let response = admit_endpoints(
            &request(
                "Endpoints",
                endpoints(&["127.0.0.1", "10.96.0.10", "192.168.1.20", "1.2.3.4"]),
                "alice",
            ),
            &policy(),
            &pods(),
        );
        assert!(!response.allowed);
        assert_eq!(response.result.code, 422);
        assert_eq!(
            response.result.message,
            "Endpoints \"external\" is invalid: [\
             subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128), \
             subsets[0].addresses[1].ip: Invalid value: \"10.96.0.10\": may not be in the service IP range 10.96.0.0/12: endpoints must point at pods or hosts, not at virtual IPs, \
             subsets[0].addresses[2].ip: Invalid value: \"192.168.1.20\": belongs to a pod in namespace \"team-b\": endpoints may only point at pods of their own namespace]"
        );
    }

    #[test]
    fn foreign_pod_ips_pass_when_the_check_is_off() {
        let policy = EndpointPolicy {
            deny_foreign_pod_ips: false,
            ..policy()
        };
        let response = admit_endpoints(
            &request("Endpoints", endpoints(&["192.168.1.20"]), "alice"),
            &policy,
            &pods(),
        );
        assert!(response.allowed);
    }

    #[test]
    fn trusted_writers_are_not_checked() {
        let response = admit_endpoints(
            &request(
                "Endpoints",
                endpoints(&["127.0.0.1"]),
                "system:kube-controller-manager",
            ),
            &policy(),
            &pods(),
        );
        assert!(response.allowed);
    }

    #[test]
    fn slices_are_checked_per_address_and_fqdn_slices_skipped() {
        let slice = |address_type: &str, address: &str| {
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": { "name": "external-1", "namespace": "team-a" },
                "addressType": address_type,
                "endpoints": [{ "addresses": ["172.67.185.241"] }, { "addresses": [address] }],
            })
        };
        let response = admit_endpoints(
            &request("EndpointSlice", slice("IPv6", "fe80::1"), "alice"),
            &policy(),
            &pods(),
        );
        assert!(!response.allowed);
        assert!(response.result.message.contains("endpoints[1].addresses[0]: Invalid value: \"fe80::1\": may not be in the link-local range"), "{}", response.result.message);
        let response = admit_endpoints(
            &request("EndpointSlice", slice("FQDN", "example.com"), "alice"),
            &policy(),
            &pods(),
        );
        assert!(response.allowed);
    }

    #[test]
    fn a_malformed_object_is_denied_with_the_reason() {
        let response = admit_endpoints(
            &request(
                "Endpoints",
                json!({ "apiVersion": "v1", "kind": "Endpoints", "subsets": "oops" }),
                "alice",
            ),
            &policy(),
            &pods(),
        );
        assert!(!response.allowed);
        assert!(
            response
                .result
                .message
                .starts_with("the Endpoints in the request is malformed"),
            "{}",
            response.result.message
        );
    }
}
