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

use std::net::IpAddr;

use allocator::{IpFamily, IpFamilyPolicy};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use crate::review::FieldError;
use crate::validate::addresses::parse_ip;

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
    // initIPFamilyFields (storage/alloc.go): a Service set to SingleStack that kept both
    // addresses or both families is downgraded, its secondary dropped.
    if spec.ip_family_policy.as_deref() == Some("SingleStack") {
        if ips(spec) == old_ips.as_slice()
            && let Some(ips) = spec.cluster_ips.as_mut()
        {
            ips.truncate(1);
        }
        if spec.ip_families == old.ip_families
            && let Some(families) = spec.ip_families.as_mut()
        {
            families.truncate(1);
        }
    }
}

/// What kube-apiserver refuses in a reconciled `service` (updated from `old`, if any) before
/// it allocates anything: `ValidateServiceClusterIPsRelatedFields` (validation.go), which
/// `initIPFamilyFields` (storage/alloc.go) calls first, every error in its order, then the
/// `SingleStack` checks of `initIPFamilyFields` itself.
pub fn refusals(service: &Service, old: Option<&Service>) -> Vec<FieldError> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    if !needs_cluster_ip(spec) {
        return Vec::new();
    }
    let errors = related_fields_refusals(spec, old.and_then(|old| old.spec.as_ref()));
    if !errors.is_empty() {
        return errors;
    }
    let policy = "spec.ipFamilyPolicy";
    let mut errors = Vec::new();
    if let Some(single @ "SingleStack") = spec.ip_family_policy.as_deref() {
        if ips(spec).len() == 2 {
            errors.push(FieldError::invalid(
                policy,
                single,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if spec.ip_families.as_ref().is_some_and(|f| f.len() == 2) {
            errors.push(FieldError::invalid(
                policy,
                single,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    errors
}

/// validation.go `ValidateServiceClusterIPsRelatedFields`, for a type that has cluster IPs.
fn related_fields_refusals(spec: &ServiceSpec, old: Option<&ServiceSpec>) -> Vec<FieldError> {
    const FIELD: &str = "spec.clusterIPs";
    let (ip, ips) = (ip(spec), ips(spec));
    let mut errors = Vec::new();
    if !ip.is_empty() {
        match ips.first() {
            None => errors.push(FieldError::required(FIELD)),
            Some(first) if first != ip => errors.push(FieldError::invalid_list(
                FIELD,
                ips,
                "first value must match `clusterIP`",
            )),
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errors.push(FieldError::invalid_list(
            FIELD,
            ips,
            "must be empty when `clusterIP` is not specified",
        ));
    }

    let families = spec.ip_families.as_deref().unwrap_or_default();
    for (i, family) in families.iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        if family.parse::<IpFamily>().is_err() {
            errors.push(FieldError::not_supported(&field, family, IpFamily::NAMES));
        }
        if families[..i].contains(family) {
            errors.push(FieldError::duplicate(field, format!("{family:?}")));
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref()
        && policy.parse::<IpFamilyPolicy>().is_err()
    {
        errors.push(FieldError::not_supported(
            "spec.ipFamilyPolicy",
            policy,
            IpFamilyPolicy::NAMES,
        ));
    }

    // An address the Service already had stays valid (`IsValidIPForLegacyField`).
    let old_ips = old.map(ips_of).unwrap_or_default();
    let mut invalid_ips = false;
    for (i, address) in ips.iter().enumerate() {
        if i == 0 && address == NONE {
            if ips.len() > 1 {
                invalid_ips = true;
                errors.push(FieldError::invalid_list(
                    FIELD,
                    ips,
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if old_ips.contains(address) {
            continue;
        }
        let problems = ip_problems(address);
        invalid_ips |= !problems.is_empty();
        errors.extend(
            problems
                .into_iter()
                .map(|problem| FieldError::invalid(format!("{FIELD}[{i}]"), address, problem)),
        );
    }
    if ips.len() > 2 {
        errors.push(FieldError::invalid_list(
            FIELD,
            ips,
            "may only hold up to 2 values",
        ));
    }
    if invalid_ips {
        return errors;
    }
    if let [first, second] = ips
        && is_ipv6(first) == is_ipv6(second)
    {
        errors.push(FieldError::invalid_list(
            FIELD,
            ips,
            "may specify no more than one IP for each IP family",
        ));
    }
    if ip != NONE {
        for (i, (address, family)) in ips.iter().zip(families).enumerate() {
            let expected = match family.as_str() {
                "IPv4" if is_ipv6(address) => "IPv4",
                "IPv6" if !is_ipv6(address) => "IPv6",
                _ => continue,
            };
            errors.push(FieldError::invalid(
                format!("{FIELD}[{i}]"),
                address,
                format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    errors
}

/// Why `address` is not an IP address as kube-apiserver 1.37 reads one with its default
/// `StrictIPCIDRValidation` (apimachinery `validation/ip.go` `parseIP`).
fn ip_problems(address: &str) -> Vec<&'static str> {
    if parse_ip(address).is_none() {
        return vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"];
    }
    match address.parse::<IpAddr>() {
        Err(_) => vec!["must not have leading 0s"],
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
            vec!["must not be an IPv4-mapped IPv6 address"]
        }
        Ok(_) => Vec::new(),
    }
}

/// netutils `IsIPv6String`.
fn is_ipv6(address: &str) -> bool {
    matches!(parse_ip(address), Some(IpAddr::V6(_)))
}

/// The headless Service's `clusterIP`.
const NONE: &str = "None";

fn ips_of(spec: &ServiceSpec) -> Vec<String> {
    ips(spec).to_vec()
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
        assert!(refusals(&created, None).is_empty());
    }

    #[test]
    fn fields_that_disagree_are_refused_in_kube_apiservers_words() {
        let both = reconciled(
            json!({ "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.12"] }),
            None,
        );
        assert_eq!(
            refusals(&both, None)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "spec.clusterIPs: Invalid value: [\"10.96.0.12\"]: first value must match `clusterIP`"
            ]
        );
        let plural_only = reconciled(json!({ "clusterIPs": ["10.96.0.12"] }), None);
        assert_eq!(
            refusals(&plural_only, None)
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
        assert!(refusals(&external, None).is_empty(), "validated elsewhere");
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

    fn refused(spec: serde_json::Value) -> Vec<String> {
        refusals(&reconciled(spec, None), None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn addresses_are_read_as_kube_apiserver_reads_them() {
        const NOT_AN_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
        assert_eq!(
            refused(json!({ "clusterIP": "10.96.2.300" })),
            [format!(
                "spec.clusterIPs[0]: Invalid value: \"10.96.2.300\": {NOT_AN_IP}"
            )]
        );
        assert_eq!(
            refused(json!({ "clusterIP": "010.096.002.001" })),
            ["spec.clusterIPs[0]: Invalid value: \"010.096.002.001\": must not have leading 0s"]
        );
        assert_eq!(
            refused(json!({ "clusterIP": "::ffff:10.96.0.1" })),
            [
                "spec.clusterIPs[0]: Invalid value: \"::ffff:10.96.0.1\": must not be an IPv4-mapped IPv6 address"
            ]
        );
        assert_eq!(
            refused(json!({ "clusterIP": "10.96.2.3", "clusterIPs": ["10.96.2.3", "None"] })),
            [format!(
                "spec.clusterIPs[1]: Invalid value: \"None\": {NOT_AN_IP}"
            )]
        );
        // An address the Service already had stays valid.
        let old =
            service(json!({ "clusterIP": "010.096.002.001", "clusterIPs": ["010.096.002.001"] }));
        let mut kept = old.clone();
        reconcile(&mut kept, Some(&old));
        assert!(refusals(&kept, Some(&old)).is_empty());
    }

    #[test]
    fn every_error_is_given_in_kube_apiservers_order() {
        assert_eq!(
            refused(json!({ "ipFamilies": ["IPv4", "IPv4", "IPv5"], "ipFamilyPolicy": "Bogus" })),
            [
                "spec.ipFamilies[1]: Duplicate value: \"IPv4\"",
                "spec.ipFamilies[2]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
                "spec.ipFamilyPolicy: Unsupported value: \"Bogus\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"",
            ]
        );
        assert_eq!(
            refused(json!({
                "clusterIP": "10.96.9.17", "clusterIPs": ["10.96.9.17", "fd00::44"],
                "ipFamilies": ["IPv6", "IPv4"],
            })),
            [
                "spec.clusterIPs[0]: Invalid value: \"10.96.9.17\": expected an IPv6 value as indicated by `ipFamilies[0]`",
                "spec.clusterIPs[1]: Invalid value: \"fd00::44\": expected an IPv4 value as indicated by `ipFamilies[1]`",
            ]
        );
        assert_eq!(
            refused(json!({
                "clusterIP": "10.96.9.16", "clusterIPs": ["10.96.9.16", "fd00::43"],
                "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "SingleStack",
            })),
            [
                "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
                "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ]
        );
        assert_eq!(
            refused(json!({ "clusterIP": "10.96.2.1", "clusterIPs": ["10.96.2.1", "10.96.2.2"] })),
            [
                "spec.clusterIPs: Invalid value: [\"10.96.2.1\",\"10.96.2.2\"]: may specify no more than one IP for each IP family"
            ]
        );
    }

    #[test]
    fn single_stack_on_a_dual_stack_service_drops_the_secondary() {
        let old = json!({
            "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11", "fd00::11"],
            "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
        });
        let mut patched = old.clone();
        patched["ipFamilyPolicy"] = json!("SingleStack");
        let downgraded = reconciled(patched, Some(old));
        assert_eq!(
            fields(&downgraded),
            ("10.96.0.11".into(), vec!["10.96.0.11".into()])
        );
        assert_eq!(
            downgraded.spec.unwrap().ip_families,
            Some(vec!["IPv4".to_string()])
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
