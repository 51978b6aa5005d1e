//! Admission of user-written Endpoints and EndpointSlices: refuse addresses that would turn
//! a Service into a way to reach what its author should not reach.

use std::collections::BTreeSet;
use std::net::IpAddr;

use axum::http::StatusCode;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::admission::AdmissionResponse;
use kube::core::response::StatusSummary;
use tokio::sync::watch;

use super::addresses::{containing_cidr, parse_ip, special_address};
use crate::review::{FieldError, Request, deny_invalid, typed_object};

/// The user kube-apiserver's own writes come as (its loopback client).
pub const APISERVER_USER: &str = "system:apiserver";
/// The namespace and name of the `kubernetes` Service, whose Endpoints and EndpointSlice
/// kube-apiserver keeps equal to the live apiservers.
pub const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");

/// What user-written endpoints are checked against.
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    /// The cluster's Service CIDRs: an endpoint there would point a Service at a virtual IP.
    pub service_cidrs: ServiceCidrs,
    /// Refuse pod IPs that belong to another namespace (CVE-2021-25740).
    pub deny_foreign_pod_ips: bool,
    /// Users whose writes are not checked: the endpoint controllers, which only write what
    /// they computed from pods.
    pub trusted_writers: BTreeSet<String>,
}

/// The cluster's Service CIDRs as the webhook knows them now: the flags' ranges and every
/// range the ServiceCIDR objects list, which the ServiceCIDR watch keeps up to date through
/// the sender [`ServiceCidrs::following`] returns.
#[derive(Clone, Debug)]
pub struct ServiceCidrs(watch::Receiver<Vec<IpNet>>);

impl ServiceCidrs {
    /// CIDRs that never change.
    pub fn fixed(cidrs: Vec<IpNet>) -> Self {
        ServiceCidrs(watch::channel(cidrs).1)
    }

    /// `initial` until the returned sender sends others.
    pub fn following(initial: Vec<IpNet>) -> (watch::Sender<Vec<IpNet>>, Self) {
        let (sender, receiver) = watch::channel(initial);
        (sender, ServiceCidrs(receiver))
    }

    /// The CIDR that holds `ip`, if any.
    fn containing(&self, ip: IpAddr) -> Option<IpNet> {
        containing_cidr(&self.0.borrow(), ip).copied()
    }
}

impl Default for ServiceCidrs {
    fn default() -> Self {
        ServiceCidrs::fixed(Vec::new())
    }
}

/// Which namespaces' pods hold an IP, as far as the webhook's pod cache knows.
pub trait PodIps {
    /// Whether the cache has seen a complete list of pods. Before that, a pod it does not
    /// know of may hold any IP, so no address can be judged.
    fn synced(&self) -> bool;
    /// The namespaces of the pods that hold `ip` (canonical, see
    /// `validate::addresses::parse_ip`); empty when no known pod does. An IP has several
    /// holders while it moves from a deleted pod to a new one.
    fn namespaces_of(&self, ip: IpAddr) -> BTreeSet<String>;
}

/// Whether `request` is kube-apiserver keeping the `kubernetes` Service's endpoints. Those
/// writes must never depend on svcplane (the webhook configuration leaves them out with a
/// match condition built from the same constants); they are not checked either, so both
/// sides agree.
pub fn is_apiserver_own_write(request: &Request) -> bool {
    request.user_info.username.as_deref() == Some(APISERVER_USER)
        && request.namespace.as_deref() == Some(KUBERNETES_SERVICE.0)
        && request.name == KUBERNETES_SERVICE.1
}

/// Admits an Endpoints or EndpointSlice create or update.
///
/// While the pod cache has not synced and pod IPs are checked, an object with an address
/// that passes every other check is refused with HTTP 503 (`ServiceUnavailable`): allowing
/// it could let a foreign pod's IP through, and a client retries a 503.
pub fn admit_endpoints(
    request: &Request,
    policy: &EndpointPolicy,
    pods: &dyn PodIps,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    if policy
        .trusted_writers
        .contains(request.user_info.username.as_deref().unwrap_or_default())
        || is_apiserver_own_write(request)
    {
        return allowed;
    }
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let addresses = match request.kind.kind.as_str() {
        "Endpoints" => match typed_object::<Endpoints>(request) {
            Ok(Some(endpoints)) => endpoints_addresses(endpoints),
            Ok(None) => return allowed,
            Err(reason) => return allowed.deny(reason),
        },
        "EndpointSlice" => match typed_object::<EndpointSlice>(request) {
            Ok(Some(slice)) => slice_addresses(slice),
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
    let mut errors = Vec::new();
    let mut unjudged = 0;
    for (field, address) in addresses {
        match check_address(field, &address, namespace, policy, pods) {
            Verdict::Fine => {}
            Verdict::Refused(error) => errors.push(error),
            Verdict::Unjudged => unjudged += 1,
        }
    }
    if !errors.is_empty() {
        deny_invalid(request, &errors)
    } else if unjudged > 0 {
        not_synced(request, unjudged)
    } else {
        allowed
    }
}

/// The refusal of a write that needs the pod cache before it synced.
fn not_synced(request: &Request, unjudged: usize) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request).deny(format!(
        "svcplane's pod index is not synced yet, so {unjudged} address(es) cannot be checked against other namespaces' pods; retry"
    ));
    response.result.code = StatusCode::SERVICE_UNAVAILABLE.as_u16();
    response.result.reason = "ServiceUnavailable".to_string();
    response.result.status = Some(StatusSummary::Failure);
    response
}

/// Each address with the path of its field.
fn endpoints_addresses(endpoints: Endpoints) -> Vec<(String, String)> {
    let mut addresses = Vec::new();
    for (s, subset) in endpoints.subsets.into_iter().flatten().enumerate() {
        for (list, items) in [
            ("addresses", subset.addresses),
            ("notReadyAddresses", subset.not_ready_addresses),
        ] {
            for (a, address) in items.into_iter().flatten().enumerate() {
                addresses.push((format!("subsets[{s}].{list}[{a}].ip"), address.ip));
            }
        }
    }
    addresses
}

/// Each address with the path of its field; none for FQDN slices.
fn slice_addresses(slice: EndpointSlice) -> Vec<(String, String)> {
    if slice.address_type == "FQDN" {
        return Vec::new();
    }
    let mut addresses = Vec::new();
    for (e, endpoint) in slice.endpoints.into_iter().flatten().enumerate() {
        for (a, address) in endpoint.addresses.into_iter().enumerate() {
            addresses.push((format!("endpoints[{e}].addresses[{a}]"), address));
        }
    }
    addresses
}

/// What the checks say of one address.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    Refused(FieldError),
    /// It needs the pod cache, which has not synced.
    Unjudged,
}

fn check_address(
    field: String,
    address: &str,
    namespace: &str,
    policy: &EndpointPolicy,
    pods: &dyn PodIps,
) -> Verdict {
    let Some(ip) = parse_ip(address) else {
        return Verdict::Refused(FieldError::invalid(
            field,
            address,
            "must be a valid IP address",
        ));
    };
    if let Some(reason) = special_address(ip) {
        return Verdict::Refused(FieldError::invalid(field, address, reason));
    }
    if let Some(cidr) = policy.service_cidrs.containing(ip) {
        return Verdict::Refused(FieldError::invalid(
            field,
            address,
            format!(
                "may not be in the service IP range {cidr}: endpoints must point at pods or hosts, not at virtual IPs"
            ),
        ));
    }
    if !policy.deny_foreign_pod_ips {
        return Verdict::Fine;
    }
    if !pods.synced() {
        return Verdict::Unjudged;
    }
    match foreign_owners(&pods.namespaces_of(ip), namespace) {
        None => Verdict::Fine,
        Some(owners) => Verdict::Refused(FieldError::invalid(
            field,
            address,
            format!(
                "belongs to a pod in namespace {owners}: endpoints may only point at pods of their own namespace"
            ),
        )),
    }
}

/// The other namespaces among an IP's holders, quoted and comma-separated, or `None` when
/// every holder is in `namespace` (or there is none).
///
/// One foreign holder is enough to refuse, even when a pod of `namespace` holds the IP too:
/// two pods hold one IP only while it moves from a deleted pod to a new one, and an endpoint
/// written in that window stays after the old holder is gone. Refusing costs the rightful
/// namespace a retry once the old pod's deletion is seen; allowing could hand another
/// namespace's pod to a Service for good.
fn foreign_owners(owners: &BTreeSet<String>, namespace: &str) -> Option<String> {
    let foreign: Vec<String> = owners
        .iter()
        .filter(|owner| *owner != namespace)
        .map(|owner| format!("{owner:?}"))
        .collect();
    (!foreign.is_empty()).then(|| foreign.join(", "))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use serde_json::{Value, json};

    /// A fixed map, synced from the start: one namespace per IP.
    impl PodIps for HashMap<IpAddr, String> {
        fn synced(&self) -> bool {
            true
        }

        fn namespaces_of(&self, ip: IpAddr) -> BTreeSet<String> {
            self.get(&ip).cloned().into_iter().collect()
        }
    }

    fn request(kind: &str, object: Value, user: &str) -> Request {
        request_for(kind, object, user, "team-a", "external")
    }

    fn request_for(kind: &str, object: Value, user: &str, namespace: &str, name: &str) -> Request {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": { "group": "", "version": "v1", "kind": kind },
                "resource": { "group": "", "version": "v1", "resource": "endpoints" },
                "name": name,
                "namespace": namespace,
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
            service_cidrs: ServiceCidrs::fixed(vec!["10.96.0.0/12".parse().unwrap()]),
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
    fn a_service_cidr_added_later_is_refused_too() {
        let (sender, service_cidrs) =
            ServiceCidrs::following(vec!["10.96.0.0/12".parse().unwrap()]);
        let policy = EndpointPolicy {
            service_cidrs,
            deny_foreign_pod_ips: false,
            ..policy()
        };
        let admit = || {
            admit_endpoints(
                &request("Endpoints", endpoints(&["10.200.0.3"]), "alice"),
                &policy,
                &pods(),
            )
        };
        let before = admit();
        assert!(
            before.allowed,
            "not a Service CIDR yet: {}",
            before.result.message
        );
        sender.send_replace(vec![
            "10.96.0.0/12".parse().unwrap(),
            "10.200.0.0/24".parse().unwrap(),
        ]);
        let response = admit();
        assert!(!response.allowed);
        assert!(
            response.result.message.contains("10.200.0.0/24"),
            "{}",
            response.result.message
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

    /// A pod cache as the webhook keeps it: several holders per IP, synced or not.
    struct Cache {
        synced: bool,
        holders: HashMap<IpAddr, BTreeSet<String>>,
    }

    impl PodIps for Cache {
        fn synced(&self) -> bool {
            self.synced
        }

        fn namespaces_of(&self, ip: IpAddr) -> BTreeSet<String> {
            self.holders.get(&ip).cloned().unwrap_or_default()
        }
    }

    fn cache(synced: bool, holders: &[(&str, &[&str])]) -> Cache {
        Cache {
            synced,
            holders: holders
                .iter()
                .map(|(ip, namespaces)| {
                    (
                        ip.parse().unwrap(),
                        namespaces.iter().map(|n| n.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    fn verdict(address: &str, pods: &dyn PodIps) -> Verdict {
        check_address("ip".to_string(), address, "team-a", &policy(), pods)
    }

    fn refused(address: &str, detail: &str) -> Verdict {
        Verdict::Refused(FieldError::invalid("ip", address, detail))
    }

    #[test]
    fn one_foreign_holder_is_enough_to_refuse() {
        let pods = cache(
            true,
            &[
                ("192.168.1.10", &["team-a"]),
                ("192.168.1.20", &["team-a", "team-b"]),
                ("192.168.1.30", &["team-b", "team-c"]),
            ],
        );
        assert_eq!(verdict("192.168.1.10", &pods), Verdict::Fine);
        assert_eq!(
            verdict("192.168.1.20", &pods),
            refused(
                "192.168.1.20",
                "belongs to a pod in namespace \"team-b\": endpoints may only point at pods of their own namespace"
            )
        );
        assert_eq!(
            verdict("192.168.1.30", &pods),
            refused(
                "192.168.1.30",
                "belongs to a pod in namespace \"team-b\", \"team-c\": endpoints may only point at pods of their own namespace"
            )
        );
        assert_eq!(verdict("192.168.1.40", &pods), Verdict::Fine);
    }

    #[test]
    fn other_spellings_of_an_address_are_judged_as_the_address() {
        let pods = cache(true, &[("192.168.1.20", &["team-b"])]);
        for spelling in ["::ffff:192.168.1.20", "192.168.001.020", "::FFFF:c0a8:114"] {
            assert!(
                matches!(verdict(spelling, &pods), Verdict::Refused(ref e) if e.detail.contains("team-b")),
                "{spelling}"
            );
        }
        assert!(
            matches!(verdict("::ffff:10.96.0.10", &pods), Verdict::Refused(ref e) if e.detail.contains("service IP range")),
        );
        assert!(
            matches!(verdict("::ffff:127.0.0.1", &pods), Verdict::Refused(ref e) if e.detail.contains("loopback")),
        );
        assert_eq!(
            verdict("0x7f.0.0.1", &pods),
            refused("0x7f.0.0.1", "must be a valid IP address")
        );
    }

    #[test]
    fn before_the_pod_cache_synced_only_what_needs_it_waits() {
        let pods = cache(false, &[]);
        assert_eq!(verdict("192.168.1.20", &pods), Verdict::Unjudged);
        assert!(matches!(verdict("127.0.0.1", &pods), Verdict::Refused(_)));
        let response = admit_endpoints(
            &request("Endpoints", endpoints(&["192.168.1.20"]), "alice"),
            &policy(),
            &pods,
        );
        assert!(!response.allowed);
        assert_eq!(response.result.code, 503);
        assert_eq!(response.result.reason, "ServiceUnavailable");
        assert_eq!(
            response.result.message,
            "svcplane's pod index is not synced yet, so 1 address(es) cannot be checked against other namespaces' pods; retry"
        );
        let response = admit_endpoints(
            &request(
                "Endpoints",
                endpoints(&["192.168.1.20", "127.0.0.1"]),
                "alice",
            ),
            &policy(),
            &pods,
        );
        assert_eq!(response.result.code, 422, "a definite refusal wins");
        let response = admit_endpoints(
            &request("Endpoints", endpoints(&[]), "alice"),
            &policy(),
            &pods,
        );
        assert!(response.allowed, "no address, nothing to judge");
        let unchecked = EndpointPolicy {
            deny_foreign_pod_ips: false,
            ..policy()
        };
        let response = admit_endpoints(
            &request("Endpoints", endpoints(&["192.168.1.20"]), "alice"),
            &unchecked,
            &pods,
        );
        assert!(
            response.allowed,
            "the cache is not needed when the check is off"
        );
    }

    #[test]
    fn only_the_apiservers_own_kubernetes_endpoints_skip_the_checks() {
        let kubernetes = || {
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": { "name": "kubernetes", "namespace": "default" },
                "subsets": [{ "addresses": [{ "ip": "127.0.0.1" }], "ports": [{ "port": 6443 }] }],
            })
        };
        let admit = |user: &str, namespace: &str, name: &str| {
            admit_endpoints(
                &request_for("Endpoints", kubernetes(), user, namespace, name),
                &policy(),
                &cache(false, &[]),
            )
            .allowed
        };
        assert!(admit(APISERVER_USER, "default", "kubernetes"));
        assert!(!admit("alice", "default", "kubernetes"));
        assert!(!admit(APISERVER_USER, "default", "other"));
        assert!(!admit(APISERVER_USER, "team-a", "kubernetes"));
    }
}
