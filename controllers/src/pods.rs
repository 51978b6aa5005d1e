//! What a pod contributes to a Service's endpoints: whether it counts at all, whether it is
//! ready, which addresses it has and which port a Service port resolves to on it.

use k8s_openapi::api::core::v1::{Container, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::service::{IpFamily, parse_ip};

/// Whether the pod has finished for good (phase `Succeeded` or `Failed`).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the pod is being deleted (`metadata.deletionTimestamp` set).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The pod's IPs as reported (`status.podIPs`, falling back to `status.podIP`), parsed and
/// normalised; unparsable entries are dropped.
pub fn ips(pod: &Pod) -> Vec<std::net::IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    match status.pod_ips.as_deref() {
        Some(list) if !list.is_empty() => list.iter().filter_map(|p| parse_ip(&p.ip)).collect(),
        _ => status
            .pod_ip
            .as_deref()
            .and_then(parse_ip)
            .into_iter()
            .collect(),
    }
}

/// The pod's addresses of one family, normalised (`1234::5678:0000:0000:9abc:def0` becomes
/// `1234::5678:0:0:9abc:def0`).
pub fn addresses_of_family(pod: &Pod, family: IpFamily) -> Vec<String> {
    ips(pod)
        .into_iter()
        .filter(|ip| IpFamily::of(ip) == family)
        .map(|ip| ip.to_string())
        .collect()
}

fn has_ip(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    })
}

/// Whether the pod belongs in a core/v1 Endpoints object: it has an IP, has not finished, and
/// is not being deleted unless the Service publishes not-ready addresses.
pub fn counts_for_endpoints(pod: &Pod, publish_not_ready: bool) -> bool {
    has_ip(pod) && !is_terminal(pod) && (publish_not_ready || !is_terminating(pod))
}

/// Whether the pod belongs in EndpointSlices: it has an IP and has not finished. Pods being
/// deleted stay, marked terminating.
pub fn counts_for_slices(pod: &Pod) -> bool {
    has_ip(pod) && !is_terminal(pod)
}

fn protocol_or_tcp(protocol: Option<&str>) -> &str {
    protocol.unwrap_or("TCP")
}

fn named_port_in<'a>(
    containers: impl IntoIterator<Item = &'a Container>,
    name: &str,
    protocol: &str,
) -> Option<i32> {
    containers
        .into_iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && protocol_or_tcp(p.protocol.as_deref()) == protocol
        })
        .map(|p| p.container_port)
}

/// The port a Service port reaches on this pod. A numeric `targetPort` is used as is (unset or 0
/// means the Service port, as the apiserver defaults it); a named one is looked up by name and
/// protocol in the app containers, then in sidecars (init containers with
/// `restartPolicy: Always`). `None` when the name is not found: the pod then does not serve
/// that Service port.
pub fn resolve_target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None | Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let protocol = protocol_or_tcp(port.protocol.as_deref());
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            named_port_in(&spec.containers, name, protocol)
                .or_else(|| named_port_in(sidecars, name, protocol))
        }
    }
}

/// The pod's hostname as published for this Service: only when `spec.hostname` is set and
/// `spec.subdomain` names the Service in the same namespace (how StatefulSets get per-pod DNS).
pub fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    let subdomain_is_service =
        spec.subdomain.is_some() && spec.subdomain.as_deref() == service.metadata.name.as_deref();
    (same_namespace && subdomain_is_service).then(|| hostname.to_string())
}

/// The node the pod runs on, if scheduled.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod, service, service_port};

    #[test]
    fn pods_without_ip_or_finished_never_count() {
        let no_ip = pod("a", "10.0.0.1").no_ip().build();
        assert!(!counts_for_endpoints(&no_ip, true));
        assert!(!counts_for_slices(&no_ip));
        for phase in ["Succeeded", "Failed"] {
            let done = pod("b", "10.0.0.2").phase(phase).build();
            assert!(!counts_for_endpoints(&done, true), "{phase}");
            assert!(!counts_for_slices(&done), "{phase}");
        }
        let pending = pod("c", "10.0.0.3").phase("Pending").not_ready().build();
        assert!(counts_for_endpoints(&pending, false));
        assert!(counts_for_slices(&pending));
    }

    #[test]
    fn terminating_pods_differ_between_endpoints_and_slices() {
        let terminating = pod("a", "10.0.0.1").terminating().build();
        assert!(!counts_for_endpoints(&terminating, false));
        assert!(counts_for_endpoints(&terminating, true));
        assert!(counts_for_slices(&terminating));
    }

    #[test]
    fn readiness_is_the_ready_condition() {
        assert!(is_ready(&pod("a", "10.0.0.1").build()));
        assert!(!is_ready(&pod("a", "10.0.0.1").not_ready().build()));
        let mut no_conditions = pod("a", "10.0.0.1").build();
        no_conditions.status.as_mut().unwrap().conditions = None;
        assert!(!is_ready(&no_conditions));
    }

    #[test]
    fn addresses_by_family_are_normalised() {
        let dual = pod("a", "010.0.0.1")
            .ip("1234::5678:0000:0000:9abc:def0")
            .build();
        assert_eq!(addresses_of_family(&dual, IpFamily::V4), vec!["10.0.0.1"]);
        assert_eq!(
            addresses_of_family(&dual, IpFamily::V6),
            vec!["1234::5678:0:0:9abc:def0"]
        );
    }

    #[test]
    fn numeric_and_defaulted_target_ports() {
        let p = pod("a", "10.0.0.1").build();
        assert_eq!(
            resolve_target_port(&p, &service_port("http", 80, IntOrString::Int(8080))),
            Some(8080)
        );
        let mut defaulted = service_port("http", 80, IntOrString::Int(0));
        assert_eq!(resolve_target_port(&p, &defaulted), Some(80));
        defaulted.target_port = None;
        assert_eq!(resolve_target_port(&p, &defaulted), Some(80));
    }

    #[test]
    fn named_target_port_matches_name_and_protocol() {
        let named = service_port("web", 80, IntOrString::String("http".into()));
        let p = pod("a", "10.0.0.1")
            .container_port("http", 9000, "UDP")
            .container_port("http", 8080, "TCP")
            .build();
        assert_eq!(resolve_target_port(&p, &named), Some(8080));
        let missing = pod("b", "10.0.0.2")
            .container_port("metrics", 9090, "TCP")
            .build();
        assert_eq!(resolve_target_port(&missing, &named), None);
    }

    #[test]
    fn named_target_port_falls_back_to_sidecars_only() {
        let named = service_port("web", 80, IntOrString::String("proxy".into()));
        let sidecar = pod("a", "10.0.0.1")
            .init_container_port("proxy", 15001, true)
            .build();
        assert_eq!(resolve_target_port(&sidecar, &named), Some(15001));
        let plain_init = pod("b", "10.0.0.2")
            .init_container_port("proxy", 15001, false)
            .build();
        assert_eq!(resolve_target_port(&plain_init, &named), None);
        let both = pod("c", "10.0.0.3")
            .container_port("proxy", 8000, "TCP")
            .init_container_port("proxy", 15001, true)
            .build();
        assert_eq!(resolve_target_port(&both, &named), Some(8000));
    }

    #[test]
    fn hostname_needs_subdomain_equal_to_service_name() {
        let svc = service("db").build();
        let member = pod("db-0", "10.0.0.1").hostname("db-0", "db").build();
        assert_eq!(hostname_for(&member, &svc), Some("db-0".into()));
        let other_subdomain = pod("db-1", "10.0.0.2").hostname("db-1", "cache").build();
        assert_eq!(hostname_for(&other_subdomain, &svc), None);
        let other_namespace = pod("db-2", "10.0.0.3")
            .hostname("db-2", "db")
            .namespace("x")
            .build();
        assert_eq!(hostname_for(&other_namespace, &svc), None);
        let no_hostname = pod("db-3", "10.0.0.4").build();
        assert_eq!(hostname_for(&no_hostname, &svc), None);
    }
}
