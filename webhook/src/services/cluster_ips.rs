//! `spec.clusterIP` and `spec.clusterIPs`, reconciled as kube-apiserver v1.37.2 reconciles
//! them before it allocates (`pkg/registry/core/service/storage/storage.go`:
//! `patchAllocatedValues`, `normalizeClusterIPs`, and `defaultOnReadService` for the old
//! object), then required to agree as its validation requires
//! (`pkg/apis/core/validation/validation.go`: `ValidateServiceClusterIPsRelatedFields`).
//!
//! The webhook allocates before kube-apiserver does any of this. Working on the raw fields,
//! it would fill in a `clusterIP` kube-apiserver refuses as inconsistent, and keep the old
//! address of an update that changed only `clusterIP` (a merge patch or an apply), so that
//! the user's change was dropped without an error instead of refused as immutable.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use crate::review::FieldError;

/// Reconciles the two fields of `service` (being created, or updated from `old`) as
/// kube-apiserver does before allocating.
pub fn reconcile(service: &mut Service, old: Option<&Service>) {
    let Some(spec) = service.spec.as_mut() else {
        return;
    };
    let Some(old) = old.and_then(|old| old.spec.as_ref()) else {
        // A create: a client that sets only the singular field gets the plural.
        if !ip(spec).is_empty() && ips(spec).is_empty() {
            spec.cluster_ips = Some(vec![ip(spec).to_string()]);
        }
        return;
    };
    // The stored object as kube-apiserver reads it: an old one may lack the plural.
    let old_ips: Vec<String> = if ips(old).is_empty() && !ip(old).is_empty() {
        vec![ip(old).to_string()]
    } else {
        ips(old).to_vec()
    };
    // patchAllocatedValues: what the client left out, it keeps.
    if needs_cluster_ip(old) && needs_cluster_ip(spec) {
        if ip(spec).is_empty() {
            spec.cluster_ip = old.cluster_ip.clone();
        }
        if ips(spec).is_empty() && !old_ips.is_empty() {
            spec.cluster_ips = Some(old_ips.clone());
        }
    }
    // normalizeClusterIPs for an update.
    if !old_ips.is_empty() && ips(spec).is_empty() && ip(old) == ip(spec) {
        spec.cluster_ips = Some(old_ips.clone());
    }
    if ip(old) != ip(spec) && ips(spec) == old_ips.as_slice() {
        spec.cluster_ips = if ip(spec).is_empty() {
            None
        } else {
            Some(vec![ip(spec).to_string()])
        };
    }
}

/// kube-apiserver's refusal of a reconciled `service` whose `clusterIP` and `clusterIPs`
/// disagree.
pub fn refusals(service: &Service) -> Vec<FieldError> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    if !needs_cluster_ip(spec) {
        return Vec::new();
    }
    const FIELD: &str = "spec.clusterIPs";
    let (ip, ips) = (ip(spec), ips(spec));
    let refusal = if !ip.is_empty() {
        match ips.first() {
            None => Some(FieldError::required(FIELD)),
            Some(first) if first != ip => Some(FieldError::invalid_list(
                FIELD,
                ips,
                "first value must match `clusterIP`",
            )),
            Some(_) => None,
        }
    } else if !ips.is_empty() {
        Some(FieldError::invalid_list(
            FIELD,
            ips,
            "must be empty when `clusterIP` is not specified",
        ))
    } else {
        None
    };
    refusal.into_iter().collect()
}

fn ip(spec: &ServiceSpec) -> &str {
    spec.cluster_ip.as_deref().unwrap_or_default()
}

fn ips(spec: &ServiceSpec) -> &[String] {
    spec.cluster_ips.as_deref().unwrap_or_default()
}

/// Every type but ExternalName has cluster IPs.
fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    spec.type_.as_deref() != Some("ExternalName")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({ "metadata": { "name": "web" }, "spec": spec })).unwrap()
    }

    fn fields(service: &Service) -> (String, Vec<String>) {
        let spec = service.spec.as_ref().unwrap();
        (ip(spec).to_string(), ips(spec).to_vec())
    }

    fn reconciled(new: serde_json::Value, old: Option<serde_json::Value>) -> Service {
        let mut new = service(new);
        let old = old.map(service);
        reconcile(&mut new, old.as_ref());
        new
    }

    #[test]
    fn a_create_with_the_singular_field_only_gets_the_plural() {
        let created = reconciled(json!({ "clusterIP": "10.96.0.11" }), None);
        assert_eq!(
            fields(&created),
            ("10.96.0.11".into(), vec!["10.96.0.11".into()])
        );
        assert!(refusals(&created).is_empty());
    }

    #[test]
    fn fields_that_disagree_are_refused_in_kube_apiservers_words() {
        let both = reconciled(
            json!({ "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.12"] }),
            None,
        );
        assert_eq!(
            refusals(&both)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "spec.clusterIPs: Invalid value: [\"10.96.0.12\"]: first value must match `clusterIP`"
            ]
        );
        let plural_only = reconciled(json!({ "clusterIPs": ["10.96.0.12"] }), None);
        assert_eq!(
            refusals(&plural_only)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "spec.clusterIPs: Invalid value: [\"10.96.0.12\"]: must be empty when `clusterIP` is not specified"
            ]
        );
        let external = reconciled(
            json!({ "type": "ExternalName", "clusterIPs": ["10.96.0.12"] }),
            None,
        );
        assert!(refusals(&external).is_empty(), "validated elsewhere");
    }

    #[test]
    fn an_update_that_changes_only_the_singular_field_changes_the_plural() {
        // What a merge patch or an apply of `clusterIP` alone sends: the allocator then
        // sees the change, and refuses it as immutable, as kube-apiserver does.
        let old = json!({ "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"] });
        let patched = reconciled(
            json!({ "clusterIP": "10.96.0.99", "clusterIPs": ["10.96.0.11"] }),
            Some(old.clone()),
        );
        assert_eq!(
            fields(&patched),
            ("10.96.0.99".into(), vec!["10.96.0.99".into()])
        );

        // A client that leaves both out keeps them.
        let resent = reconciled(json!({ "ports": [{ "port": 80 }] }), Some(old.clone()));
        assert_eq!(
            fields(&resent),
            ("10.96.0.11".into(), vec!["10.96.0.11".into()])
        );

        // An old stored object without the plural is read with it.
        let legacy = reconciled(
            json!({ "clusterIP": "10.96.0.11" }),
            Some(json!({ "clusterIP": "10.96.0.11" })),
        );
        assert_eq!(
            fields(&legacy),
            ("10.96.0.11".into(), vec!["10.96.0.11".into()])
        );
    }

    #[test]
    fn a_type_change_to_external_name_keeps_no_cluster_ip_from_the_old_object() {
        let external = reconciled(
            json!({ "type": "ExternalName", "externalName": "example.com" }),
            Some(json!({ "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"] })),
        );
        assert_eq!(fields(&external), (String::new(), Vec::new()));
    }
}
