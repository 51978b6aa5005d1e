//! Service admission: allocation on create and update (mutating) and the externalIPs
//! allow-list (validating).

use std::net::IpAddr;

use allocator::Error as AllocError;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::response::StatusSummary;
use serde_json::Value as Json;

use super::cluster_ips;
use super::precheck::port_refusals;
use super::spec::{Unconvertible, patch, to_spec};
use crate::review::{self, FieldError, Request, deny_invalid, typed_object, typed_old_object};
use crate::state::{AdmitRequest, Allocate, ServiceName, StoreError};

/// Fills in the ClusterIPs, IP families and node ports of a Service being created or
/// updated, honouring the values it asks for, or refuses it naming the field and why.
pub async fn mutate_service(request: &Request, store: &impl Allocate) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return allowed;
    }
    let service: Service = match typed_object(request) {
        Ok(Some(service)) => service,
        Ok(None) => return allowed.deny("the request carries no Service"),
        Err(reason) => return allowed.deny(reason),
    };
    let old_service = typed_old_object::<Service>(request).ok().flatten();
    // Allocation works on the fields as kube-apiserver will see them; the patch still
    // applies to the object as sent.
    let mut reconciled = service.clone();
    cluster_ips::reconcile(&mut reconciled, old_service.as_ref());
    // Nothing is reserved for what kube-apiserver will refuse anyway. Its allocator checks
    // the cluster IP fields first and answers with those errors alone.
    let mut refusals = cluster_ips::refusals(&reconciled, old_service.as_ref());
    if refusals.is_empty() {
        refusals = port_refusals(&service, old_service.is_none());
    }
    if !refusals.is_empty() {
        return deny_invalid(request, &refusals);
    }
    let new = match to_spec(&reconciled) {
        Ok(spec) => spec,
        Err(Unconvertible::Refused(error)) => return deny_invalid(request, &[error]),
        // Nothing is reserved, and kube-apiserver refuses the request in its own words.
        Err(Unconvertible::PortOutOfRange) => return allowed,
    };
    // An old object that does not convert is treated as holding nothing: the update then
    // allocates as a create would, and the apiserver's own validation has the last word.
    let old = old_service.and_then(|old| to_spec(&old).ok());
    let admit = AdmitRequest {
        uid: request.uid.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        service: service_name(request, &service),
        old,
        new,
        dry_run: request.dry_run,
    };
    match store.admit(admit).await {
        Ok(filled) => {
            let patch = patch(&service, &filled);
            if patch.0.is_empty() {
                return allowed;
            }
            match allowed.clone().with_patch(patch) {
                Ok(response) => response,
                Err(error) => {
                    review::internal_error(allowed, &format!("encoding the patch: {error}"))
                }
            }
        }
        Err(StoreError::Allocation(error)) => {
            deny_invalid(request, &[allocation_refusal(&reconciled, &error)])
        }
        Err(error @ StoreError::TooManyUnconfirmed { .. }) => too_many_requests(allowed, &error),
        Err(error) => review::internal_error(allowed, &error.to_string()),
    }
}

/// The allocator's refusal of `service` as kube-apiserver v1.37.2 words it. Its allocator
/// (`pkg/registry/core/service/storage/alloc.go`) refuses a requested cluster IP on the
/// whole list, `spec.clusterIPs: Invalid value: [...]: failed to allocate IP <ip>: <why>`
/// (`allocIPs`), and a requested node port with the number, `Invalid value: 30080`
/// (`initNodePorts`); validation (`pkg/apis/core/validation/validation.go`) prints the
/// whole list for an address changed on update and the address alone otherwise, and says
/// `Forbidden` for a changed `healthCheckNodePort`.
fn allocation_refusal(service: &Service, error: &allocator::Error) -> FieldError {
    let field = error.field().unwrap_or("spec");
    let reason = error.reason();
    let ips = service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ips.clone())
        .unwrap_or_default();
    if let Some(index) = field.strip_prefix("spec.clusterIPs") {
        let index: Option<usize> = index
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .and_then(|i| i.parse().ok());
        let address = index.and_then(|i| ips.get(i));
        return match (reason, address) {
            (AllocError::IpAllocated | AllocError::IpNotInRange { .. }, Some(address)) => {
                FieldError::invalid_list(
                    "spec.clusterIPs",
                    &ips,
                    format!("failed to allocate IP {address}: {reason}"),
                )
            }
            (AllocError::Immutable | AllocError::PrimaryIpUnset, _) | (_, None) => {
                FieldError::invalid_list(field, &ips, reason.to_string())
            }
            (_, Some(address)) => FieldError::invalid(field, address, reason.to_string()),
        };
    }
    if matches!(reason, AllocError::FieldImmutable) {
        return FieldError::forbidden(field, reason.to_string());
    }
    let object = serde_json::to_value(service).unwrap_or(Json::Null);
    match field_value(&object, field) {
        Some(Json::Number(number)) if number.is_i64() => FieldError::invalid_number(
            field,
            number.as_i64().unwrap_or_default(),
            reason.to_string(),
        ),
        Some(Json::String(value)) => FieldError::invalid(field, value, reason.to_string()),
        Some(other) => FieldError::invalid(field, other, reason.to_string()),
        None => FieldError::forbidden(field, reason.to_string()),
    }
}

/// The Service's name; for a create with `generateName`, the prefix kube-apiserver will
/// complete after admission.
fn service_name(request: &Request, service: &Service) -> ServiceName {
    match service.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => ServiceName::Named(name.to_string()),
        None if !request.name.is_empty() => ServiceName::Named(request.name.clone()),
        None => ServiceName::Generated(service.metadata.generate_name.clone().unwrap_or_default()),
    }
}

/// HTTP 429: the request may succeed later, when the namespace's earlier requests are done.
fn too_many_requests(allowed: AdmissionResponse, error: &StoreError) -> AdmissionResponse {
    let mut response = allowed.deny(error.to_string());
    response.result.code = 429;
    response.result.reason = "TooManyRequests".to_string();
    response.result.status = Some(StatusSummary::Failure);
    response
}

/// Refuses externalIPs outside the allowed CIDRs (the CVE-2020-8554 mitigation). `None`
/// means no allow-list is configured.
pub fn validate_service(
    request: &Request,
    allowed_external_ips: Option<&[IpNet]>,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let Some(cidrs) = allowed_external_ips else {
        return allowed;
    };
    let service: Service = match typed_object(request) {
        Ok(Some(service)) => service,
        Ok(None) => return allowed,
        Err(reason) => return allowed.deny(reason),
    };
    let old_ips: Vec<String> = typed_old_object::<Service>(request)
        .ok()
        .flatten()
        .and_then(|old| old.spec)
        .and_then(|spec| spec.external_ips)
        .unwrap_or_default();
    let errors: Vec<FieldError> = service
        .spec
        .iter()
        .flat_map(|spec| spec.external_ips.iter().flatten())
        .enumerate()
        // An address the Service already had stays: tightening the list must not make
        // every later update of an existing Service fail.
        .filter(|(_, ip)| !old_ips.contains(ip))
        .filter_map(|(i, ip)| {
            let field = format!("spec.externalIPs[{i}]");
            match ip.parse::<IpAddr>() {
                Err(_) => Some(FieldError::invalid(field, ip, "must be a valid IP address")),
                Ok(addr) if cidrs.iter().any(|cidr| cidr.contains(&addr)) => None,
                Ok(_) => Some(FieldError::invalid(
                    field,
                    ip,
                    format!(
                        "externalIPs must be inside the allowed CIDRs ({})",
                        join(cidrs)
                    ),
                )),
            }
        })
        .collect();
    if errors.is_empty() {
        allowed
    } else {
        deny_invalid(request, &errors)
    }
}

fn join(cidrs: &[IpNet]) -> String {
    if cidrs.is_empty() {
        return "none: externalIPs are not allowed".to_string();
    }
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value at a kubectl-style field path (`spec.ports[1].nodePort`) of `object`.
fn field_value(object: &Json, path: &str) -> Option<Json> {
    let mut current = object;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        current = current.get(name)?;
        if let Some(index) = index {
            current = current.get(index)?;
        }
    }
    (!current.is_null()).then(|| current.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(object: Json, old: Option<Json>) -> Request {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": if old.is_some() { "b5f8e3a1-0000-4000-8000-000000000002" } else { "b5f8e3a1-0000-4000-8000-000000000001" },
                "kind": { "group": "", "version": "v1", "kind": "Service" },
                "resource": { "group": "", "version": "v1", "resource": "services" },
                "name": "web",
                "namespace": "default",
                "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                "userInfo": { "username": "alice" },
                "object": object,
                "oldObject": old,
            }
        });
        crate::review::decode(&serde_json::to_vec(&review).unwrap()).unwrap()
    }

    fn with_external_ips(ips: &[&str]) -> Json {
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
                "spec": { "ports": [{ "port": 80 }], "externalIPs": ips } })
    }

    fn allocation() -> crate::state::InMemoryAllocation {
        let allocators = allocator::Allocators::new(
            vec![allocator::ClusterIpAllocator::new(
                "10.96.0.0/24".parse().unwrap(),
            )],
            allocator::NodePortAllocator::new(allocator::PortRange::default()),
        )
        .unwrap();
        crate::state::InMemoryAllocation::new(allocators, Default::default())
    }

    fn with_cluster_ips(ip: &str, ips: &[&str]) -> Json {
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
                "spec": { "ports": [{ "port": 80 }], "clusterIP": ip, "clusterIPs": ips } })
    }

    #[tokio::test]
    async fn cluster_ip_fields_that_disagree_are_refused_not_rewritten() {
        let response = mutate_service(
            &request(with_cluster_ips("10.96.0.11", &["10.96.0.12"]), None),
            &allocation(),
        )
        .await;
        assert!(!response.allowed);
        assert_eq!(
            response.result.message,
            "Service \"web\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.12\"]: first value must match `clusterIP`"
        );
    }

    /// A merge patch or an apply of `clusterIP` alone reaches the webhook with the new
    /// `clusterIP` and the old `clusterIPs`: refused as kube-apiserver refuses it, never
    /// answered with the old address put back.
    #[tokio::test]
    async fn an_update_of_clusterip_alone_is_refused_as_immutable() {
        let allocation = allocation();
        let created = mutate_service(
            &request(with_cluster_ips("10.96.0.11", &["10.96.0.11"]), None),
            &allocation,
        )
        .await;
        assert!(created.allowed);
        let response = mutate_service(
            &request(
                with_cluster_ips("10.96.0.99", &["10.96.0.11"]),
                Some(with_cluster_ips("10.96.0.11", &["10.96.0.11"])),
            ),
            &allocation,
        )
        .await;
        assert!(!response.allowed);
        assert_eq!(
            response.result.message,
            "Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: [\"10.96.0.99\"]: may not change once set"
        );
    }

    /// `pkg/registry/core/service/storage/alloc.go` `allocIPs` and `initNodePorts`.
    #[tokio::test]
    async fn allocation_refusals_read_like_kube_apiservers_allocator() {
        let allocation = allocation();
        // A request of its own for each name: an admission of the same uid is answered again.
        let create = |name: &str, spec: Json| {
            let mut request = request(
                json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name }, "spec": spec }),
                None,
            );
            request.uid = format!("uid-{name}");
            request.name = name.to_string();
            request
        };
        let taken = json!({ "type": "NodePort", "clusterIP": "10.96.0.11", "ports": [{ "port": 80, "nodePort": 30080 }] });
        assert!(
            mutate_service(&create("a", taken.clone()), &allocation)
                .await
                .allowed
        );
        let message = |response: AdmissionResponse| response.result.message;
        assert_eq!(
            message(mutate_service(&create("b", taken), &allocation).await),
            "Service \"b\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.11\"]: failed to allocate IP 10.96.0.11: provided IP is already allocated"
        );
        assert_eq!(
            message(
                mutate_service(
                    &create("c", json!({ "clusterIP": "10.97.0.1" })),
                    &allocation
                )
                .await
            ),
            "Service \"c\" is invalid: spec.clusterIPs: Invalid value: [\"10.97.0.1\"]: failed to allocate IP 10.97.0.1: the provided network does not match the current range"
        );
        assert_eq!(
            message(
                mutate_service(
                    &create(
                        "d",
                        json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30080 }] })
                    ),
                    &allocation
                )
                .await
            ),
            "Service \"d\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        // Outside every node-port range: left to kube-apiserver, nothing reserved.
        let beyond = create(
            "e",
            json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 70000 }] }),
        );
        let response = mutate_service(&beyond, &allocation).await;
        assert!(response.allowed && response.patch.is_none());
    }

    #[test]
    fn field_paths_resolve_to_values() {
        let object = json!({ "spec": { "clusterIPs": ["10.96.0.1"], "ports": [{ "port": 80 }, { "nodePort": 30080 }] } });
        assert_eq!(
            field_value(&object, "spec.clusterIPs[0]"),
            Some(json!("10.96.0.1"))
        );
        assert_eq!(
            field_value(&object, "spec.ports[1].nodePort"),
            Some(json!(30080))
        );
        assert_eq!(field_value(&object, "spec.ports[0].nodePort"), None);
        assert_eq!(field_value(&object, "spec.healthCheckNodePort"), None);
    }

    #[test]
    fn external_ips_outside_the_allow_list_are_refused() {
        let cidrs: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
        let response = validate_service(
            &request(with_external_ips(&["203.0.113.7", "198.51.100.1"]), None),
            Some(&cidrs),
        );
        assert!(!response.allowed);
        assert_eq!(
            response.result.message,
            "Service \"web\" is invalid: spec.externalIPs[1]: Invalid value: \"198.51.100.1\": externalIPs must be inside the allowed CIDRs (203.0.113.0/24)"
        );
        assert!(
            validate_service(
                &request(with_external_ips(&["203.0.113.7"]), None),
                Some(&cidrs)
            )
            .allowed
        );
    }

    #[test]
    fn without_an_allow_list_external_ips_pass_and_an_empty_one_forbids_them() {
        assert!(
            validate_service(&request(with_external_ips(&["198.51.100.1"]), None), None).allowed
        );
        let response = validate_service(
            &request(with_external_ips(&["198.51.100.1"]), None),
            Some(&[]),
        );
        assert!(
            response
                .result
                .message
                .contains("none: externalIPs are not allowed"),
            "{}",
            response.result.message
        );
    }

    #[test]
    fn addresses_a_service_already_had_stay_allowed() {
        let cidrs: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
        let old = with_external_ips(&["198.51.100.1"]);
        let response = validate_service(
            &request(with_external_ips(&["198.51.100.1"]), Some(old)),
            Some(&cidrs),
        );
        assert!(response.allowed);
    }
}
