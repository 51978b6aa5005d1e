//! The fields of a Service that allocation reads and fills in, as plain Rust types.
//!
//! The crate stays free of Kubernetes API types: the webhook converts a `core/v1` Service into
//! a [`ServiceSpec`] and writes the filled-in values back.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::Error;
use crate::family::{IpFamily, IpFamilyPolicy};

/// The value of `clusterIP` / `clusterIPs[0]` that makes a Service headless.
pub const CLUSTER_IP_NONE: &str = "None";

/// `spec.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    #[default]
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
    /// `ExternalName`: no cluster IP, no node port.
    ExternalName,
}

impl ServiceType {
    /// The names the API accepts, sorted as kube-apiserver lists them.
    pub const NAMES: &'static [&'static str] =
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

    /// The name used in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "" | "ClusterIP" => Ok(ServiceType::ClusterIp),
            "NodePort" => Ok(ServiceType::NodePort),
            "LoadBalancer" => Ok(ServiceType::LoadBalancer),
            "ExternalName" => Ok(ServiceType::ExternalName),
            other => Err(Error::UnsupportedServiceType(other.to_string())),
        }
    }
}

/// `spec.ports[].protocol`, kept as given (`TCP`, `UDP`, `SCTP`): only compared for equality.
pub type Protocol = String;

/// `spec.externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExternalTrafficPolicy {
    /// `Cluster` (the default).
    #[default]
    Cluster,
    /// `Local`: a LoadBalancer Service then needs a `healthCheckNodePort`.
    Local,
}

/// One entry of `spec.ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`; node ports of an update are matched to the old ones by name.
    pub name: String,
    /// `protocol`.
    pub protocol: Protocol,
    /// `port`; entries with the same port number share one node port.
    pub port: i32,
    /// `nodePort`; `None` stands for 0 (allocate one when the type needs it).
    pub node_port: Option<u16>,
}

/// The allocation-related fields of a Service spec.
///
/// `cluster_ips` holds `spec.clusterIPs`, or `[spec.clusterIP]` when only the singular field
/// is set; `["None"]` makes the Service headless.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs`, as given (validated during allocation).
    pub cluster_ips: Vec<String>,
    /// `spec.ipFamilies`.
    pub ip_families: Vec<IpFamily>,
    /// `spec.ipFamilyPolicy`.
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.allocateLoadBalancerNodePorts`; `None` means true.
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: ExternalTrafficPolicy,
    /// `spec.healthCheckNodePort`; `None` stands for 0.
    pub health_check_node_port: Option<u16>,
    /// Whether `spec.selector` is non-empty.
    pub has_selector: bool,
}

impl ServiceSpec {
    /// Whether `clusterIPs[0]` is `None`.
    pub fn is_headless(&self) -> bool {
        self.cluster_ips.first().map(String::as_str) == Some(CLUSTER_IP_NONE)
    }

    /// Whether the type has a `clusterIP` field at all (every type but ExternalName).
    pub fn needs_cluster_ip(&self) -> bool {
        self.service_type != ServiceType::ExternalName
    }

    /// Whether the type has node ports (NodePort and LoadBalancer).
    pub fn has_node_ports(&self) -> bool {
        matches!(
            self.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        )
    }

    /// Whether ports without a node port get one allocated: NodePort always, LoadBalancer
    /// unless `allocateLoadBalancerNodePorts` is false.
    pub fn allocates_node_ports(&self) -> bool {
        match self.service_type {
            ServiceType::NodePort => true,
            ServiceType::LoadBalancer => self.allocate_load_balancer_node_ports != Some(false),
            ServiceType::ClusterIp | ServiceType::ExternalName => false,
        }
    }

    /// Whether the Service needs a `healthCheckNodePort`: LoadBalancer with
    /// `externalTrafficPolicy: Local`.
    pub fn needs_health_check_node_port(&self) -> bool {
        self.service_type == ServiceType::LoadBalancer
            && self.external_traffic_policy == ExternalTrafficPolicy::Local
    }

    /// The cluster IPs the Service holds: none for ExternalName and headless Services.
    pub fn held_cluster_ips(&self) -> Vec<IpAddr> {
        if !self.needs_cluster_ip() || self.is_headless() {
            return Vec::new();
        }
        self.cluster_ips
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect()
    }

    /// The node ports the Service holds, `healthCheckNodePort` included, without duplicates.
    pub fn held_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::new();
        if self.has_node_ports() {
            ports.extend(self.ports.iter().filter_map(|p| p.node_port));
        }
        if self.needs_health_check_node_port() {
            ports.extend(self.health_check_node_port);
        }
        let mut seen = std::collections::HashSet::new();
        ports.retain(|port| seen.insert(*port));
        ports
    }
}
