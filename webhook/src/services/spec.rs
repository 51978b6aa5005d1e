//! A core/v1 Service to and from the allocator's [`ServiceSpec`], and the JSON patch that
//! writes the allocated values into the object under admission.

use allocator::{
    ExternalTrafficPolicy, IpFamily, IpFamilyPolicy, ServicePort, ServiceSpec, ServiceType,
};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use crate::review::FieldError;

/// Why a Service cannot be turned into the allocator's [`ServiceSpec`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unconvertible {
    /// A field kube-apiserver's validation refuses, in its words.
    #[error("{0}")]
    Refused(FieldError),
    /// A node port outside 1..=65535, so outside every node-port range: kube-apiserver's
    /// own allocator refuses it (`initNodePorts`, "provided port is not in the valid
    /// range", with the range the webhook is not told here).
    #[error("a node port outside 1-65535")]
    PortOutOfRange,
}

impl From<FieldError> for Unconvertible {
    fn from(error: FieldError) -> Self {
        Self::Refused(error)
    }
}

/// The allocation-related fields of `service`.
pub fn to_spec(service: &Service) -> Result<ServiceSpec, Unconvertible> {
    let spec = service.spec.clone().unwrap_or_default();
    let type_name = spec.type_.as_deref().unwrap_or("ClusterIP");
    let service_type = type_name.parse().map_err(|_: allocator::Error| {
        FieldError::not_supported("spec.type", type_name, ServiceType::NAMES)
    })?;
    let cluster_ips = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.clone()],
        _ => Vec::new(),
    };
    let ip_families = spec
        .ip_families
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, family)| {
            family.parse().map_err(|_: allocator::Error| {
                FieldError::not_supported(format!("spec.ipFamilies[{i}]"), family, IpFamily::NAMES)
            })
        })
        .collect::<Result<_, _>>()?;
    let ip_family_policy = spec
        .ip_family_policy
        .as_deref()
        .map(|policy| {
            policy.parse().map_err(|_: allocator::Error| {
                FieldError::not_supported("spec.ipFamilyPolicy", policy, IpFamilyPolicy::NAMES)
            })
        })
        .transpose()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|port| {
            Ok(ServicePort {
                name: port.name.clone().unwrap_or_default(),
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                port: port.port,
                node_port: node_port(port.node_port)?,
            })
        })
        .collect::<Result<_, Unconvertible>>()?;
    let external_traffic_policy = match spec.external_traffic_policy.as_deref() {
        Some("Local") => ExternalTrafficPolicy::Local,
        _ => ExternalTrafficPolicy::Cluster,
    };
    Ok(ServiceSpec {
        service_type,
        cluster_ips,
        ip_families,
        ip_family_policy,
        ports,
        allocate_load_balancer_node_ports: spec.allocate_load_balancer_node_ports,
        external_traffic_policy,
        health_check_node_port: node_port(spec.health_check_node_port)?,
        has_selector: spec.selector.as_ref().is_some_and(|s| !s.is_empty()),
    })
}

fn node_port(value: Option<i32>) -> Result<Option<u16>, Unconvertible> {
    match value {
        None | Some(0) => Ok(None),
        Some(port) => u16::try_from(port)
            .map(Some)
            .map_err(|_| Unconvertible::PortOutOfRange),
    }
}

/// The JSON patch that turns `service` into one holding `filled`'s values. Empty when the
/// object already holds them (a reinvocation, or nothing to allocate).
pub fn patch(service: &Service, filled: &ServiceSpec) -> Patch {
    // Only the spec is compared: the metadata (managedFields and all) is left unserialized.
    let spec = service
        .spec
        .as_ref()
        .and_then(|spec| serde_json::to_value(spec).ok())
        .unwrap_or(Value::Null);
    let spec = &spec;
    let mut operations = Vec::new();
    let mut set = |path: &str, current: &Value, wanted: Value| {
        let pointer = PointerBuf::parse(path).expect("static JSON pointer");
        if wanted.is_null() {
            if !current.is_null() {
                operations.push(PatchOperation::Remove(RemoveOperation { path: pointer }));
            }
        } else if current != &wanted {
            operations.push(PatchOperation::Add(AddOperation {
                path: pointer,
                value: wanted,
            }));
        }
    };

    if spec.is_null() {
        set("/spec", spec, json!({}));
    }
    let cluster_ips = &filled.cluster_ips;
    set(
        "/spec/clusterIP",
        &spec["clusterIP"],
        cluster_ips.first().map_or(Value::Null, |ip| json!(ip)),
    );
    set(
        "/spec/clusterIPs",
        &spec["clusterIPs"],
        if cluster_ips.is_empty() {
            Value::Null
        } else {
            json!(cluster_ips)
        },
    );
    let families: Vec<&str> = filled.ip_families.iter().map(|f| f.as_str()).collect();
    set(
        "/spec/ipFamilies",
        &spec["ipFamilies"],
        if families.is_empty() {
            Value::Null
        } else {
            json!(families)
        },
    );
    set(
        "/spec/ipFamilyPolicy",
        &spec["ipFamilyPolicy"],
        filled
            .ip_family_policy
            .map_or(Value::Null, |p| json!(p.as_str())),
    );
    for (i, port) in filled.ports.iter().enumerate() {
        set(
            &format!("/spec/ports/{i}/nodePort"),
            &spec["ports"][i]["nodePort"],
            port.node_port.map_or(Value::Null, |p| json!(p)),
        );
    }
    set(
        "/spec/healthCheckNodePort",
        &spec["healthCheckNodePort"],
        filled
            .health_check_node_port
            .map_or(Value::Null, |p| json!(p)),
    );
    Patch(operations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator::{IpFamily, IpFamilyPolicy, ServiceType};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({ "metadata": { "name": "web" }, "spec": spec })).unwrap()
    }

    #[test]
    fn a_nodeport_service_converts() {
        let spec = to_spec(&service(json!({
            "type": "NodePort",
            "selector": { "app": "web" },
            "ports": [
                { "name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080 },
                { "name": "dns", "port": 53, "protocol": "UDP" },
            ],
            "ipFamilyPolicy": "PreferDualStack",
            "ipFamilies": ["IPv6"],
        })))
        .unwrap();
        assert_eq!(spec.service_type, ServiceType::NodePort);
        assert!(spec.has_selector);
        assert_eq!(spec.ip_families, vec![IpFamily::V6]);
        assert_eq!(spec.ip_family_policy, Some(IpFamilyPolicy::PreferDualStack));
        assert_eq!(spec.ports[0].node_port, Some(30080));
        assert_eq!(spec.ports[1].node_port, None);
        assert_eq!(spec.ports[1].protocol, "UDP");
    }

    #[test]
    fn bad_values_name_their_field() {
        let Unconvertible::Refused(error) =
            to_spec(&service(json!({ "type": "Nodeport" }))).unwrap_err()
        else {
            panic!("a type is refused with its field");
        };
        assert_eq!(
            error.to_string(),
            "spec.type: Unsupported value: \"Nodeport\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        );
        let error = to_spec(&service(
            json!({ "ports": [{ "port": 80 }, { "port": 81, "nodePort": 70000 }] }),
        ))
        .unwrap_err();
        assert_eq!(error, Unconvertible::PortOutOfRange);
    }

    #[test]
    fn the_patch_writes_only_what_changed() {
        let original = service(json!({
            "type": "NodePort",
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }],
        }));
        let mut filled = to_spec(&original).unwrap();
        filled.cluster_ips = vec!["10.100.49.21".to_string()];
        filled.ip_families = vec![IpFamily::V4];
        filled.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
        filled.ports[0].node_port = Some(31195);
        let patch = patch(&original, &filled);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                { "op": "add", "path": "/spec/clusterIP", "value": "10.100.49.21" },
                { "op": "add", "path": "/spec/clusterIPs", "value": ["10.100.49.21"] },
                { "op": "add", "path": "/spec/ipFamilies", "value": ["IPv4"] },
                { "op": "add", "path": "/spec/ipFamilyPolicy", "value": "SingleStack" },
                { "op": "add", "path": "/spec/ports/0/nodePort", "value": 31195 },
            ])
        );

        let mut applied = serde_json::to_value(&original).unwrap();
        json_patch::patch(&mut applied, &patch).unwrap();
        let applied: Service = serde_json::from_value(applied).unwrap();
        assert_eq!(
            super::patch(&applied, &filled).0,
            vec![],
            "reinvocation patches nothing"
        );
    }

    #[test]
    fn a_type_change_removes_released_node_ports() {
        let nodeport = service(json!({
            "type": "ClusterIP",
            "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080 }],
        }));
        let mut filled = to_spec(&nodeport).unwrap();
        filled.ports[0].node_port = None;
        assert_eq!(
            serde_json::to_value(patch(&nodeport, &filled)).unwrap(),
            json!([{ "op": "remove", "path": "/spec/ports/0/nodePort" }])
        );
    }
}
