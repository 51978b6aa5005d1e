//! What kube-apiserver's own validation will certainly refuse among the fields that drive
//! allocation, refused before anything is reserved.
//!
//! The mutating webhook runs before kube-apiserver validates the object, so every value it
//! reserves for a Service that validation then refuses is held by nothing: one NodePort
//! Service with thousands of unnamed ports would hold a whole node-port range. The rules
//! and their wording are kube-apiserver v1.37.2's (`pkg/apis/core/validation/validation.go`:
//! `validateServicePort` and the duplicate checks of `validateService`;
//! `apimachinery/pkg/util/validation`: `IsDNS1123Label`, `IsValidPortNum`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Service, ServicePort};

use crate::review::FieldError;

/// kube-apiserver's longest DNS-1123 label.
const DNS1123_LABEL_MAX_LENGTH: usize = 63;
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// The refusals kube-apiserver would give `service`'s ports (`created`, or updated), in its
/// order: its allocator's refusal of one node port asked for by two port numbers, which
/// comes first and alone, or else its validation's.
pub fn port_refusals(service: &Service, created: bool) -> Vec<FieldError> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default();
    let service_type = service
        .spec
        .as_ref()
        .and_then(|spec| spec.type_.as_deref())
        .unwrap_or("ClusterIP");
    if matches!(service_type, "NodePort" | "LoadBalancer")
        && let Some(refusal) = node_port_taken_by_another_port(ports)
    {
        return vec![refusal];
    }
    let require_name = ports.len() > 1;
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let name = port.name.as_deref().unwrap_or_default();
        let field = format!("spec.ports[{i}].name");
        if name.is_empty() {
            if require_name {
                errors.push(FieldError::required(field));
            }
        } else {
            errors.extend(
                dns1123_label_problems(name)
                    .into_iter()
                    .map(|problem| FieldError::invalid(&field, name, problem)),
            );
            if !names.insert(name) {
                errors.push(FieldError::duplicate(field, format!("{name:?}")));
            }
        }
        if !(1..=65535).contains(&port.port) {
            errors.push(FieldError::invalid_number(
                format!("spec.ports[{i}].port"),
                i64::from(port.port),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
    // On update, kube-apiserver first drops the node ports a ClusterIP Service kept from its
    // old type (`dropTypeDependentFields` in `pkg/registry/core/service/strategy.go`).
    if created && service_type == "ClusterIP" {
        errors.extend(
            ports
                .iter()
                .enumerate()
                .filter(|(_, port)| port.node_port.is_some_and(|p| p != 0))
                .map(|(i, _)| {
                    FieldError::forbidden(
                        format!("spec.ports[{i}].nodePort"),
                        "may not be used when `type` is 'ClusterIP'",
                    )
                }),
        );
    }
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let Some(node_port) = port.node_port.filter(|&p| p != 0) else {
            continue;
        };
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !node_ports.insert((protocol, node_port)) {
            errors.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                node_port.to_string(),
            ));
        }
    }
    errors
}

/// kube-apiserver v1.37.2 allocates before it validates (`store.go` calls `BeginCreate`
/// before `BeforeCreate`), one node port per port number whatever the protocol
/// (`storage/alloc.go` `initNodePorts`, for the types that have node ports): a node port
/// asked for again by a port with another number is refused as taken, naming the later port.
fn node_port_taken_by_another_port(ports: &[ServicePort]) -> Option<FieldError> {
    let mut claimed: HashMap<i32, i32> = HashMap::new();
    ports.iter().enumerate().find_map(|(i, port)| {
        let node_port = port.node_port.filter(|&p| p != 0)?;
        match claimed.entry(node_port) {
            Entry::Occupied(by) if *by.get() != port.port => Some(FieldError::invalid_number(
                format!("spec.ports[{i}].nodePort"),
                i64::from(node_port),
                "provided port is already allocated",
            )),
            Entry::Occupied(_) => None,
            Entry::Vacant(entry) => {
                entry.insert(port.port);
                None
            }
        }
    })
}

/// Why `value` is not a DNS-1123 label, as `IsDNS1123Label` says it.
fn dns1123_label_problems(value: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        problems.push("must be no more than 63 characters");
    }
    let label = |s: &str| {
        let bytes = s.as_bytes();
        let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        bytes.first().is_some_and(edge) && bytes.last().is_some_and(edge) && bytes.iter().all(inner)
    };
    if !label(value) {
        if value.split('.').all(label) {
            problems.push("must not contain dots");
        } else {
            problems.push(DNS1123_LABEL_MESSAGE);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": { "name": "web" },
            "spec": { "type": "NodePort", "ports": ports },
        }))
        .unwrap()
    }

    fn messages(service: &Service) -> Vec<String> {
        port_refusals(service, true)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn several_ports_need_names_as_kube_apiserver_requires() {
        assert_eq!(
            messages(&service(
                json!([{ "port": 80 }, { "port": 81, "name": "b" }])
            )),
            ["spec.ports[0].name: Required value"]
        );
        assert_eq!(
            messages(&service(json!([{ "port": 80 }]))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn thousands_of_unnamed_ports_are_refused_one_error_each() {
        let ports: Vec<_> = (1..=2768).map(|port| json!({ "port": port })).collect();
        let errors = port_refusals(&service(json!(ports)), true);
        assert_eq!(errors.len(), 2768);
        assert_eq!(
            errors[2767].to_string(),
            "spec.ports[2767].name: Required value"
        );
    }

    #[test]
    fn names_are_unique_dns_labels() {
        assert_eq!(
            messages(&service(json!([
                { "port": 80, "name": "http" },
                { "port": 81, "name": "http" },
                { "port": 82, "name": "Web" },
                { "port": 83, "name": "a.b" },
            ]))),
            [
                "spec.ports[1].name: Duplicate value: \"http\"".to_string(),
                format!("spec.ports[2].name: Invalid value: \"Web\": {DNS1123_LABEL_MESSAGE}"),
                "spec.ports[3].name: Invalid value: \"a.b\": must not contain dots".to_string(),
            ]
        );
        let long = "a".repeat(64);
        assert_eq!(
            dns1123_label_problems(&long),
            ["must be no more than 63 characters"]
        );
        assert_eq!(dns1123_label_problems("-a"), [DNS1123_LABEL_MESSAGE]);
        assert!(dns1123_label_problems("a-0").is_empty());
    }

    #[test]
    fn node_ports_of_a_cluster_ip_service_are_forbidden_then_duplicates_named() {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": "web" },
            "spec": { "ports": [
                { "name": "a", "port": 80, "nodePort": 30013 },
                { "name": "b", "port": 81, "nodePort": 30013 },
            ] },
        }))
        .unwrap();
        assert_eq!(
            messages(&service),
            [
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.ports[1].nodePort: Duplicate value: 30013",
            ]
        );
    }

    #[test]
    fn port_numbers_and_duplicate_node_ports_per_protocol() {
        // The last port asks for the first one's node port, with its port number or another.
        let ports = |last_port: i32| {
            service(json!([
                { "port": 0, "name": "a" },
                { "port": 80, "name": "b", "nodePort": 30080 },
                { "port": 80, "name": "c", "protocol": "UDP", "nodePort": 30080 },
                { "port": last_port, "name": "d", "nodePort": 30080 },
            ]))
        };
        assert_eq!(
            messages(&ports(81)),
            ["spec.ports[3].nodePort: Invalid value: 30080: provided port is already allocated"]
        );
        assert_eq!(
            messages(&ports(80)),
            [
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[3].nodePort: Duplicate value: 30080",
            ]
        );
    }
}
