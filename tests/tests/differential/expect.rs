//! Shorthands for the pods scenarios create and the views they expect.

use std::collections::BTreeMap;

use e2e::kubelet::{PodState, PodTemplate};
use e2e::view::{
    AddressView, EndpointsView, PublishedView, ServiceSlicesView, SliceEndpointView, SubsetView,
};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// A pod labelled `app=<app>` on `node` with one named TCP port.
pub fn pod(name: &str, app: &str, node: &str, port: (&str, i32)) -> PodTemplate {
    PodTemplate::new(name, node)
        .label("app", app)
        .port(port.0, port.1, "TCP")
}

pub fn running(ip: &str, ready: bool) -> PodState {
    PodState::running(ip, ready)
}

pub fn with_ips(ips: &[&str], ready: bool) -> PodState {
    PodState {
        ips: ips.iter().map(|ip| ip.to_string()).collect(),
        ready,
        phase: "Running",
    }
}

pub fn address(ip: &str, node: &str, pod: &str) -> AddressView {
    AddressView::pod(ip, node, pod)
}

pub fn with_hostname(mut address: AddressView, hostname: &str) -> AddressView {
    address.hostname = Some(hostname.to_string());
    address
}

/// A slice endpoint; `conditions` is (ready, serving, terminating).
pub fn endpoint(
    ip: &str,
    node: &str,
    zone: Option<&str>,
    pod: &str,
    conditions: (bool, bool, bool),
) -> SliceEndpointView {
    SliceEndpointView::pod(ip, node, zone, pod, conditions)
}

pub fn subset(ports: &[(&str, i32, &str)]) -> SubsetView {
    ports
        .iter()
        .fold(SubsetView::default(), |s, (name, port, protocol)| {
            s.port(name, *port, protocol)
        })
}

/// Endpoints with these subsets and labels.
pub fn endpoints(
    subsets: impl IntoIterator<Item = SubsetView>,
    labels: &[(&str, &str)],
) -> EndpointsView {
    let mut view = subsets
        .into_iter()
        .fold(EndpointsView::default(), EndpointsView::subset);
    for (key, value) in labels {
        view = view.label(key, value);
    }
    view
}

/// Slices of `service`, labelled with its name (and headless when `headless`).
pub fn slices(service: &str, headless: bool) -> ServiceSlicesView {
    let mut labels = vec![(SERVICE_NAME_LABEL, service)];
    if headless {
        labels.push((HEADLESS_LABEL, ""));
    }
    ServiceSlicesView::default().labels(&labels)
}

/// The whole expected view.
pub fn published(
    endpoints: Option<EndpointsView>,
    over_capacity: Option<&str>,
    slices: ServiceSlicesView,
) -> PublishedView {
    let slice_endpoints = slices.groups.values().map(|g| g.len()).sum();
    PublishedView {
        endpoints,
        over_capacity: over_capacity.map(str::to_string),
        slices,
        slice_endpoints,
    }
}

/// Service manifests.
pub fn service(
    name: &str,
    selector: &[(&str, &str)],
    ports: &[(&str, i32, &str, &str)],
) -> serde_json::Value {
    let selector: BTreeMap<_, _> = selector.iter().copied().collect();
    let ports: Vec<_> = ports
        .iter()
        .map(|(port_name, port, protocol, target)| {
            let target = target
                .parse::<i32>()
                .map_or_else(|_| serde_json::json!(target), |n| serde_json::json!(n));
            serde_json::json!({ "name": port_name, "port": port, "protocol": protocol, "targetPort": target })
        })
        .collect();
    serde_json::json!({
        "metadata": { "name": name },
        "spec": { "selector": selector, "ports": ports },
    })
}
