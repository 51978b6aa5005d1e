//! What a Service asks of the endpoint controllers: which pods it selects, which address
//! families it serves, whether it is headless.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Service;

use crate::pods::PodInfo;

/// An IP family: `spec.ipFamilies` and an EndpointSlice's `addressType` spell it `IPv4` or
/// `IPv6` ([`IpFamily::as_str`], and `parse` back).
pub use allocator::IpFamily;

/// Parses an IP the way the in-tree controllers do: IPv4 octets may carry leading zeros
/// (`010.0.0.1` is 10.0.0.1), as older clusters accepted them.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<u8> = text
        .split('.')
        .map(|octet| {
            if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                octet.parse::<u8>().ok()
            }
        })
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else {
        return None;
    };
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// Whether the pod controllers produce Endpoints and slices for this Service at all: it needs a
/// selector (selectorless Services get theirs from users and the mirroring controller) and must
/// not be `ExternalName`.
pub fn manages_endpoints(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.selector.is_some() && spec.type_.as_deref() != Some("ExternalName")
}

/// Whether the Service selects the pod: same namespace, and every selector label matches. An
/// empty selector selects every pod of the namespace; a missing one selects nothing.
pub fn selects(service: &Service, pod: &PodInfo) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if service.metadata.namespace.as_deref().unwrap_or_default() != pod.namespace {
        return false;
    }
    selector
        .iter()
        .all(|(key, value)| pod.labels.get(key) == Some(value.as_str()))
}

fn cluster_ip(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("")
}

/// Whether the Service has a ClusterIP (neither empty nor `None`). Without one it is labelled
/// headless.
pub fn has_cluster_ip(service: &Service) -> bool {
    !matches!(cluster_ip(service), "" | "None")
}

/// Whether the Service is explicitly headless (`clusterIP: None`), the only kind allowed to have
/// no ports.
pub fn is_headless(service: &Service) -> bool {
    cluster_ip(service) == "None"
}

/// Whether not-ready pods are published as ready (`spec.publishNotReadyAddresses`).
pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// Whether two versions of a Service ask the same of the endpoint controllers: the same
/// identity, labels, annotations and spec (its status and resourceVersion do not matter).
pub fn same_for_endpoints(a: &Service, b: &Service) -> bool {
    let (a_meta, b_meta) = (&a.metadata, &b.metadata);
    (
        &a_meta.namespace,
        &a_meta.name,
        &a_meta.uid,
        &a_meta.creation_timestamp,
        &a_meta.deletion_timestamp,
        &a_meta.labels,
        &a_meta.annotations,
    ) == (
        &b_meta.namespace,
        &b_meta.name,
        &b_meta.uid,
        &b_meta.creation_timestamp,
        &b_meta.deletion_timestamp,
        &b_meta.labels,
        &b_meta.annotations,
    ) && a.spec == b.spec
}

/// Whether the Service is being deleted; nothing new is created for it then.
pub fn is_being_deleted(service: &Service) -> bool {
    service.metadata.deletion_timestamp.is_some()
}

fn ip_families(service: &Service) -> Vec<IpFamily> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .map(|families| {
            families
                .iter()
                .filter_map(|f| f.parse::<IpFamily>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ip_family(service: &Service) -> Option<IpFamily> {
    if !has_cluster_ip(service) {
        return None;
    }
    parse_ip(cluster_ip(service)).map(|ip| IpFamily::of(&ip))
}

/// The one family a Service's Endpoints object uses, when the Service alone tells:
/// `spec.ipFamilies[0]`; without families (an old apiserver), the ClusterIP's family (IPv4 when
/// it does not parse). `None` for a headless Service without families: see [`endpoints_family`].
pub fn service_endpoints_family(service: &Service) -> Option<IpFamily> {
    if let Some(first) = ip_families(service).first() {
        return Some(*first);
    }
    has_cluster_ip(service).then(|| cluster_ip_family(service).unwrap_or(IpFamily::V4))
}

/// The one family an Endpoints object uses for this pod: the Service's
/// ([`service_endpoints_family`], passed in), or for a headless Service without families the
/// family of the pod's primary IP. IPv4 when nothing tells.
pub fn pod_endpoints_family(service_family: Option<IpFamily>, pod: &PodInfo) -> IpFamily {
    service_family.unwrap_or_else(|| pod.primary_ip.map_or(IpFamily::V4, |ip| IpFamily::of(&ip)))
}

/// [`pod_endpoints_family`] of the Service's family.
pub fn endpoints_family(service: &Service, pod: &PodInfo) -> IpFamily {
    pod_endpoints_family(service_endpoints_family(service), pod)
}

/// The address types that get EndpointSlices, in `spec.ipFamilies` order; without families,
/// the ClusterIP's family, or both for a Service without a ClusterIP.
pub fn slice_families(service: &Service) -> Vec<IpFamily> {
    let mut families = ip_families(service);
    families.dedup();
    if !families.is_empty() {
        return families;
    }
    if has_cluster_ip(service) {
        return vec![cluster_ip_family(service).unwrap_or(IpFamily::V4)];
    }
    vec![IpFamily::V4, IpFamily::V6]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod, service};

    #[test]
    fn sloppy_ipv4_is_normalised() {
        assert_eq!(parse_ip("010.001.2.3"), "10.1.2.3".parse().ok());
        assert_eq!(
            parse_ip("1234::5678:0000:0000:9abc:def0")
                .unwrap()
                .to_string(),
            "1234::5678:0:0:9abc:def0"
        );
        assert_eq!(parse_ip("1.2.3"), None);
        assert_eq!(parse_ip("1.2.3.256"), None);
        assert_eq!(parse_ip("not-an-ip"), None);
    }

    #[test]
    fn selection() {
        let svc = service("web").selector(&[("app", "web")]).build();
        assert!(selects(
            &svc,
            &pod("a", "10.0.0.1").label("app", "web").build()
        ));
        assert!(!selects(
            &svc,
            &pod("b", "10.0.0.2").label("app", "db").build()
        ));
        assert!(!selects(&svc, &pod("c", "10.0.0.3").build()));
        let elsewhere = pod("d", "10.0.0.4")
            .namespace("other")
            .label("app", "web")
            .build();
        assert!(!selects(&svc, &elsewhere));

        let everything = service("all").selector(&[]).build();
        assert!(selects(&everything, &pod("e", "10.0.0.5").build()));
        let selectorless = service("manual").no_selector().build();
        assert!(!selects(&selectorless, &pod("f", "10.0.0.6").build()));
    }

    #[test]
    fn which_services_are_managed() {
        assert!(manages_endpoints(&service("web").build()));
        assert!(manages_endpoints(&service("all").selector(&[]).build()));
        assert!(!manages_endpoints(&service("manual").no_selector().build()));
        assert!(!manages_endpoints(
            &service("ext").external_name("tencent.com").build()
        ));
    }

    #[test]
    fn families_for_slices() {
        let v4 = service("a").build();
        assert_eq!(slice_families(&v4), vec![IpFamily::V4]);
        let dual = service("b").families(&["IPv6", "IPv4"]).build();
        assert_eq!(slice_families(&dual), vec![IpFamily::V6, IpFamily::V4]);
        let old_v6 = service("c").families(&[]).cluster_ip("fd00::10").build();
        assert_eq!(slice_families(&old_v6), vec![IpFamily::V6]);
        let old_headless = service("d").families(&[]).cluster_ip("None").build();
        assert_eq!(
            slice_families(&old_headless),
            vec![IpFamily::V4, IpFamily::V6]
        );
    }

    #[test]
    fn family_for_endpoints() {
        let p6 = pod("p", "fd00::1").ip("10.0.0.1").build();
        assert_eq!(
            endpoints_family(&service("a").families(&["IPv6", "IPv4"]).build(), &p6),
            IpFamily::V6
        );
        let old = service("b").families(&[]).cluster_ip("10.96.0.5").build();
        assert_eq!(endpoints_family(&old, &p6), IpFamily::V4);
        let old_headless = service("c").families(&[]).cluster_ip("None").build();
        assert_eq!(endpoints_family(&old_headless, &p6), IpFamily::V6);
    }

    #[test]
    fn headless_and_cluster_ip() {
        assert!(has_cluster_ip(&service("a").build()));
        assert!(!is_headless(&service("a").build()));
        let headless = service("b").cluster_ip("None").build();
        assert!(is_headless(&headless) && !has_cluster_ip(&headless));
        let unset = service("c").cluster_ip("").build();
        assert!(!is_headless(&unset) && !has_cluster_ip(&unset));
    }
}
