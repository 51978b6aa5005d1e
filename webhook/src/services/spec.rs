//! A core/v1 Service to and from the allocator's [`ServiceSpec`], and the JSON patch that
//! writes the allocated values into the object under admission.

use allocator::{ExternalTrafficPolicy, ServicePort, ServiceSpec};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use crate::review::FieldError;

/// The allocation-related fields of `service`.
pub fn to_spec(service: &Service) -> Result<ServiceSpec, FieldError> {
    let spec = service.spec.clone().unwrap_or_default();
    let service_type = spec
        .type_
        .as_deref()
        .unwrap_or("ClusterIP")
        .parse()
        .map_err(|e: allocator::Error| {
            FieldError::invalid(
                "spec.type",
                spec.type_.as_deref().unwrap_or(""),
                e.to_string(),
            )
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
            family.parse().map_err(|e: allocator::Error| {
                FieldError::invalid(format!("spec.ipFamilies[{i}]"), family, e.to_string())
            })
        })
        .collect::<Result<_, _>>()?;
    let ip_family_policy = spec
        .ip_family_policy
        .as_deref()
        .map(|policy| {
            policy.parse().map_err(|e: allocator::Error| {
                FieldError::invalid("spec.ipFamilyPolicy", policy, e.to_string())
            })
        })
        .transpose()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, port)| {
            Ok(ServicePort {
                name: port.name.clone().unwrap_or_default(),
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                port: port.port,
                node_port: node_port(port.node_port, &format!("spec.ports[{i}].nodePort"))?,
            })
        })
        .collect::<Result<_, FieldError>>()?;
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
        health_check_node_port: node_port(spec.health_check_node_port, "spec.healthCheckNodePort")?,
        has_selector: spec.selector.as_ref().is_some_and(|s| !s.is_empty()),
    })
}

fn node_port(value: Option<i32>, field: &str) -> Result<Option<u16>, FieldError> {
    match value {
        None | Some(0) => Ok(None),
        Some(port) => u16::try_from(port).map(Some).map_err(|_| {
            FieldError::invalid(field, port, "must be between 1 and 65535, inclusive")
        }),
    }
}

/// The JSON patch that turns `service` into one holding `filled`'s values. Empty when the
/// object already holds them (a reinvocation, or nothing to allocate).
pub fn patch(service: &Service, filled: &ServiceSpec) -> Patch {
    let object = serde_json::to_value(service).unwrap_or(Value::Null);
    let spec = &object["spec"];
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
        let error = to_spec(&service(json!({ "type": "Nodeport" }))).unwrap_err();
        assert_eq!(error.field, "spec.type");
        let error = to_spec(&service(
            json!({ "ports": [{ "port": 80 }, { "port": 81, "nodePort": 70000 }] }),
        ))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.ports[1].nodePort: Invalid value: \"70000\": must be between 1 and 65535, inclusive"
        );
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
