//! What a pod contributes to a Service's endpoints: whether it counts at all, whether it is
//! ready, which addresses it has and which port a Service port resolves to on it.
//!
//! The controllers keep a [`PodInfo`] per pod rather than the Pod itself: only the fields that
//! decide endpoints, with IPs already parsed. A cached Pod costs kilobytes even when trimmed
//! (its spec and status structs are large), which adds up to most of the controllers' memory
//! in a cluster of thousands of pods.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::service::{IpFamily, parse_ip};

mod labels;
mod wire;
pub use labels::Labels;
pub use wire::WatchedPod;

/// A named container port, as a named `targetPort` looks it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name.
    pub name: String,
    /// Its protocol, `TCP` when unset.
    pub protocol: String,
    /// The container port number.
    pub port: i32,
}

/// The part of a Pod that decides its endpoints. Its lists are boxed slices, so that a cached
/// pod holds no spare capacity (a list collected from a filter starts with room for four).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.labels`.
    pub labels: Labels,
    /// Whether `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Whether the phase is `Succeeded` or `Failed`.
    pub terminal: bool,
    /// `spec.nodeName`, when not empty.
    pub node_name: Option<String>,
    /// `spec.hostname`, when not empty.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// The named ports of the app containers, in order, then those of the sidecars (init
    /// containers with `restartPolicy: Always`).
    pub named_ports: Box<[NamedPort]>,
    /// Whether `status.podIP` or `status.podIPs` holds anything.
    pub has_ip: bool,
    /// `status.podIPs` (else `status.podIP`), parsed and normalised; unparsable entries
    /// dropped.
    pub ips: Box<[PodIp]>,
    /// `status.podIP`, parsed.
    pub primary_ip: Option<IpAddr>,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// The last transition time of the `Ready` condition.
    pub ready_since: Option<Timestamp>,
}

/// A pod IP, parsed, with its normalised text (`1234::5678:0000:0000:9abc:def0` becomes
/// `1234::5678:0:0:9abc:def0`), written out once per pod change rather than on every sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIp {
    /// The address.
    pub addr: IpAddr,
    /// Its text as endpoints carry it.
    pub text: String,
}

impl PodIp {
    fn parse(ip: &str) -> Option<Self> {
        let addr = parse_ip(ip)?;
        Some(PodIp {
            addr,
            text: addr.to_string(),
        })
    }

    /// The address family.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.addr)
    }
}

impl From<Pod> for PodInfo {
    fn from(pod: Pod) -> Self {
        PodInfo::from(WatchedPod::from(pod))
    }
}

/// The pod's addresses of one family, normalised (see [`PodIp`]).
pub fn addresses_of_family(pod: &PodInfo, family: IpFamily) -> impl Iterator<Item = &str> {
    let ips = pod.ips.iter().filter(move |ip| ip.family() == family);
    ips.map(|ip| ip.text.as_str())
}

/// Whether the pod belongs in a core/v1 Endpoints object: it has an IP, has not finished, and
/// is not being deleted unless the Service publishes not-ready addresses.
pub fn counts_for_endpoints(pod: &PodInfo, publish_not_ready: bool) -> bool {
    pod.has_ip && !pod.terminal && (publish_not_ready || !pod.terminating)
}

/// Whether the pod belongs in EndpointSlices: it has an IP and has not finished. Pods being
/// deleted stay, marked terminating.
pub fn counts_for_slices(pod: &PodInfo) -> bool {
    pod.has_ip && !pod.terminal
}

/// The port a Service port reaches on this pod. A numeric `targetPort` is used as is (unset or 0
/// means the Service port, as the apiserver defaults it); a named one is looked up by name and
/// protocol in the app containers, then in sidecars (init containers with
/// `restartPolicy: Always`). `None` when the name is not found: the pod then does not serve
/// that Service port.
pub fn resolve_target_port(pod: &PodInfo, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None | Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.named_ports
                .iter()
                .find(|p| p.name == *name && p.protocol == protocol)
                .map(|p| p.port)
        }
    }
}

/// The Service ports a pod serves, each as (index among the Service's ports, target port on
/// this pod, from [`resolve_target_port`]): cheap to compute and compare for every pod, and
/// held in place for the usual one or two ports (no allocation per pod when an index is built).
pub type ResolvedPorts = smallvec::SmallVec<[(usize, i32); 2]>;

/// The [`ResolvedPorts`] of `pod` for the Service ports `service_ports`.
pub fn resolved_ports(service_ports: &[ServicePort], pod: &PodInfo) -> ResolvedPorts {
    service_ports
        .iter()
        .enumerate()
        .filter_map(|(i, port)| Some((i, resolve_target_port(pod, port)?)))
        .collect()
}

/// The pod's hostname as published for this Service: only when `spec.hostname` is set and
/// `spec.subdomain` names the Service in the same namespace (how StatefulSets get per-pod DNS).
pub fn hostname_for(pod: &PodInfo, service: &Service) -> Option<String> {
    published_hostname(pod, service).map(str::to_string)
}

/// [`hostname_for`], borrowed from the pod.
pub fn published_hostname<'p>(pod: &'p PodInfo, service: &Service) -> Option<&'p str> {
    let hostname = pod.hostname.as_deref()?;
    let same_namespace = service.metadata.namespace.as_deref().unwrap_or_default() == pod.namespace;
    let subdomain_is_service =
        pod.subdomain.is_some() && pod.subdomain.as_deref() == service.metadata.name.as_deref();
    (same_namespace && subdomain_is_service).then_some(hostname)
}

/// The `targetRef` of the pod's endpoints and addresses.
pub fn pod_reference(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: pod.uid.clone(),
        ..Default::default()
    }
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
        assert!(pod("a", "10.0.0.1").build().ready);
        assert!(!pod("a", "10.0.0.1").not_ready().build().ready);
        let mut no_conditions = pod("a", "10.0.0.1").build_pod();
        no_conditions.status.as_mut().unwrap().conditions = None;
        assert!(!PodInfo::from(no_conditions).ready);
    }

    #[test]
    fn addresses_by_family_are_normalised() {
        let dual = pod("a", "010.0.0.1")
            .ip("1234::5678:0000:0000:9abc:def0")
            .build();
        let of = |family| addresses_of_family(&dual, family).collect::<Vec<_>>();
        assert_eq!(of(IpFamily::V4), vec!["10.0.0.1"]);
        assert_eq!(of(IpFamily::V6), vec!["1234::5678:0:0:9abc:def0"]);
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
