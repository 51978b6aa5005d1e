use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::fixtures::{NS, labels, node, pod, service, service_port};
use crate::pods::PodInfo;

fn lookup<'n>(nodes: &'n [Node]) -> impl Fn(&str) -> Option<&'n Node> + 'n {
    move |name| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

fn desired(service: &Service, pods: &[PodInfo], nodes: &[Node]) -> DesiredEndpointSlices {
    desired_endpoint_slices(service, pods, lookup(nodes)).unwrap()
}

fn conditions(ready: bool, serving: bool, terminating: bool) -> Option<EndpointConditions> {
    Some(EndpointConditions {
        ready: Some(ready),
        serving: Some(serving),
        terminating: Some(terminating),
    })
}

fn endpoint(ip: &str, pod: &str, node: &str, zone: Option<&str>, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        conditions: conditions(ready, ready, false),
        node_name: Some(node.into()),
        zone: zone.map(str::to_string),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(NS.into()),
            name: Some(pod.into()),
            uid: Some(format!("uid-{pod}")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn port(name: &str, number: i32) -> EndpointPort {
    EndpointPort {
        name: Some(name.into()),
        port: Some(number),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }
}

fn only_group(desired: &DesiredEndpointSlices) -> &EndpointGroup {
    assert_eq!(desired.groups.len(), 1, "{desired:#?}");
    &desired.groups[0]
}

#[test]
fn walkthrough_slice_shape() {
    let svc = service("nginx-basic")
        .selector(&[("app", "nginx")])
        .cluster_ip("10.100.49.21")
        .ports(vec![service_port("http", 80, IntOrString::Int(80))])
        .build();
    let pods = [
        pod("nginx-a", "192.168.185.14")
            .label("app", "nginx")
            .node("mac-k8s")
            .build(),
        pod("nginx-b", "192.168.185.15")
            .label("app", "nginx")
            .node("mac-k8s")
            .not_ready()
            .build(),
    ];
    let nodes = [node("mac-k8s", Some("zone-a"))];

    let got = desired(&svc, &pods, &nodes);

    let want = DesiredEndpointSlices {
        address_types: vec![IpFamily::V4],
        groups: vec![EndpointGroup {
            address_type: IpFamily::V4,
            ports: vec![port("http", 80)],
            endpoints: vec![
                endpoint("192.168.185.14", "nginx-a", "mac-k8s", Some("zone-a"), true),
                endpoint(
                    "192.168.185.15",
                    "nginx-b",
                    "mac-k8s",
                    Some("zone-a"),
                    false,
                ),
            ],
        }],
        pods_on_missing_nodes: vec![],
    };
    assert_eq!(got, want);
    assert!(!got.needs_retry());
}

#[test]
fn conditions_follow_readiness_termination_and_publish_not_ready() {
    let pods = [
        pod("ready", "10.0.0.1").label("app", "web").build(),
        pod("unready", "10.0.0.2")
            .label("app", "web")
            .not_ready()
            .build(),
        pod("draining", "10.0.0.3")
            .label("app", "web")
            .terminating()
            .build(),
        pod("gone", "10.0.0.4")
            .label("app", "web")
            .not_ready()
            .terminating()
            .build(),
    ];
    let nodes = [node("node-1", None)];
    let of = |d: &DesiredEndpointSlices| -> Vec<Option<EndpointConditions>> {
        only_group(d)
            .endpoints
            .iter()
            .map(|e| e.conditions.clone())
            .collect()
    };

    let got = desired(&service("web").build(), &pods, &nodes);
    assert_eq!(
        of(&got),
        vec![
            conditions(true, true, false),
            conditions(false, false, false),
            conditions(false, true, true),
            conditions(false, false, true),
        ]
    );

    let got = desired(&service("web").publish_not_ready().build(), &pods, &nodes);
    assert_eq!(
        of(&got),
        vec![
            conditions(true, true, false),
            conditions(true, false, false),
            conditions(true, true, true),
            conditions(true, false, true),
        ]
    );
}

#[test]
fn only_selected_pods_with_ips_that_have_not_finished_count() {
    let pods = [
        pod("in", "10.0.0.1").label("app", "web").build(),
        pod("other-app", "10.0.0.2").label("app", "db").build(),
        pod("no-ip", "10.0.0.3").label("app", "web").no_ip().build(),
        pod("done", "10.0.0.4")
            .label("app", "web")
            .phase("Succeeded")
            .build(),
        pod("failed", "10.0.0.5")
            .label("app", "web")
            .phase("Failed")
            .build(),
    ];
    let got = desired(&service("web").build(), &pods, &[node("node-1", None)]);
    assert_eq!(
        only_group(&got).endpoints,
        vec![endpoint("10.0.0.1", "in", "node-1", None, true)]
    );
}

#[test]
fn no_pods_means_no_groups_but_the_address_types_remain() {
    let got = desired(
        &service("web").families(&["IPv4", "IPv6"]).build(),
        &[],
        &[],
    );
    assert_eq!(
        got,
        DesiredEndpointSlices {
            address_types: vec![IpFamily::V4, IpFamily::V6],
            groups: vec![],
            pods_on_missing_nodes: vec![],
        }
    );
}

#[test]
fn selectorless_and_external_name_services_get_nothing() {
    let pods = [pod("a", "10.0.0.1").label("app", "web").build()];
    let nodes = [node("node-1", None)];
    assert_eq!(
        desired_endpoint_slices(&service("web").no_selector().build(), &pods, lookup(&nodes)),
        None
    );
    assert_eq!(
        desired_endpoint_slices(
            &service("web").external_name("tencent.com").build(),
            &pods,
            lookup(&nodes)
        ),
        None
    );
}

#[test]
fn pod_on_missing_node_is_skipped_and_reported() {
    let pods = [
        pod("here", "10.0.0.1")
            .label("app", "web")
            .node("node-1")
            .build(),
        pod("lost", "10.0.0.2")
            .label("app", "web")
            .node("node-9")
            .build(),
    ];
    let nodes = [node("node-1", Some("zone-a"))];
    let got = desired(&service("web").build(), &pods, &nodes);
    assert_eq!(
        only_group(&got).endpoints,
        vec![endpoint("10.0.0.1", "here", "node-1", Some("zone-a"), true)]
    );
    assert_eq!(
        got.pods_on_missing_nodes,
        vec![PodOnMissingNode {
            pod: "lost".into(),
            node: "node-9".into()
        }]
    );
    assert!(got.needs_retry());
}

#[test]
fn pod_on_missing_node_is_published_anyway_with_publish_not_ready() {
    let pods = [pod("lost", "10.0.0.2")
        .label("app", "web")
        .node("node-9")
        .build()];
    let got = desired(&service("web").publish_not_ready().build(), &pods, &[]);
    assert_eq!(
        only_group(&got).endpoints,
        vec![endpoint("10.0.0.2", "lost", "node-9", None, true)]
    );
    assert!(!got.needs_retry());
}

#[test]
fn zone_comes_from_the_node_label_when_present() {
    let pods = [
        pod("a", "10.0.0.1")
            .label("app", "web")
            .node("zoned")
            .build(),
        pod("b", "10.0.0.2")
            .label("app", "web")
            .node("unzoned")
            .build(),
        pod("c", "10.0.0.3")
            .label("app", "web")
            .node("blank")
            .build(),
    ];
    let nodes = [
        node("zoned", Some("zone-a")),
        node("unzoned", None),
        node("blank", Some("")),
    ];
    let got = desired(&service("web").build(), &pods, &nodes);
    let zones: Vec<Option<String>> = only_group(&got)
        .endpoints
        .iter()
        .map(|e| e.zone.clone())
        .collect();
    assert_eq!(zones, vec![Some("zone-a".into()), None, None]);
}

#[test]
fn headless_with_hostnames() {
    let svc = service("db")
        .headless()
        .ports(vec![service_port("pg", 5432, IntOrString::Int(5432))])
        .build();
    let pods = [
        pod("db-0", "10.0.0.1")
            .label("app", "db")
            .hostname("db-0", "db")
            .build(),
        pod("db-1", "10.0.0.2")
            .label("app", "db")
            .hostname("db-1", "other")
            .build(),
    ];
    let got = desired(&svc, &pods, &[node("node-1", None)]);
    let hostnames: Vec<Option<String>> = only_group(&got)
        .endpoints
        .iter()
        .map(|e| e.hostname.clone())
        .collect();
    assert_eq!(hostnames, vec![Some("db-0".into()), None]);
}

#[test]
fn headless_without_ports_or_families_gets_both_types_and_no_ports() {
    let svc = service("db").headless().families(&[]).no_ports().build();
    let pods = [pod("dual", "10.0.0.1")
        .ip("fd00::1")
        .label("app", "db")
        .build()];
    let got = desired(&svc, &pods, &[node("node-1", None)]);
    assert_eq!(got.address_types, vec![IpFamily::V4, IpFamily::V6]);
    let summary: Vec<(IpFamily, usize, Vec<String>)> = got
        .groups
        .iter()
        .map(|g| {
            (
                g.address_type,
                g.ports.len(),
                g.endpoints[0].addresses.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (IpFamily::V4, 0, vec!["10.0.0.1".into()]),
            (IpFamily::V6, 0, vec!["fd00::1".into()])
        ]
    );
}

#[test]
fn dual_stack_gets_a_group_per_family() {
    let svc = service("web").families(&["IPv4", "IPv6"]).build();
    let pods = [
        pod("dual", "10.0.0.1")
            .ip("fd00::1")
            .label("app", "web")
            .build(),
        pod("v4-only", "10.0.0.2").label("app", "web").build(),
    ];
    let got = desired(&svc, &pods, &[node("node-1", None)]);
    let summary: Vec<(IpFamily, Vec<Vec<String>>)> = got
        .groups
        .iter()
        .map(|g| {
            (
                g.address_type,
                g.endpoints.iter().map(|e| e.addresses.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                IpFamily::V4,
                vec![vec!["10.0.0.1".to_string()], vec!["10.0.0.2".to_string()]]
            ),
            (IpFamily::V6, vec![vec!["fd00::1".to_string()]]),
        ]
    );
}

#[test]
fn named_ports_resolving_differently_per_pod_make_separate_groups() {
    let svc = service("named")
        .ports(vec![service_port(
            "",
            80,
            IntOrString::String("http".into()),
        )])
        .build();
    let pods: Vec<PodInfo> = (0..300)
        .map(|i| {
            pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 256, i % 256))
                .label("app", "named")
                .container_port("http", 8080 + i % 5, "TCP")
                .build()
        })
        .collect();
    let got = desired(&svc, &pods, &[node("node-1", None)]);
    let summary: Vec<(Vec<EndpointPort>, usize)> = got
        .groups
        .iter()
        .map(|g| (g.ports.clone(), g.endpoints.len()))
        .collect();
    assert_eq!(
        summary,
        (0..5)
            .map(|i| (vec![port("", 8080 + i)], 60))
            .collect::<Vec<_>>()
    );
}

#[test]
fn pods_resolving_no_port_get_a_port_less_group() {
    let svc = service("web")
        .ports(vec![service_port(
            "web",
            80,
            IntOrString::String("http".into()),
        )])
        .build();
    let pods = [
        pod("has", "10.0.0.1")
            .label("app", "web")
            .container_port("http", 8080, "TCP")
            .build(),
        pod("lacks", "10.0.0.2").label("app", "web").build(),
    ];
    let got = desired(&svc, &pods, &[node("node-1", None)]);
    let summary: Vec<(Vec<EndpointPort>, usize)> = got
        .groups
        .iter()
        .map(|g| (g.ports.clone(), g.endpoints.len()))
        .collect();
    assert_eq!(summary, vec![(vec![], 1), (vec![port("web", 8080)], 1)]);
}

#[test]
fn new_slices_carry_the_service_metadata() {
    let svc = service("web")
        .label("tier", "front")
        .label("kubernetes.io/service-name", "spoofed")
        .label("endpointslice.kubernetes.io/managed-by", "someone")
        .label("service.kubernetes.io/headless", "wrong")
        .build();
    let slice = new_slice(&svc, IpFamily::V4, vec![port("http", 8080)], "svcplane");
    let want = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some("web-".into()),
            namespace: Some(NS.into()),
            labels: Some(labels(&[
                ("tier", "front"),
                ("kubernetes.io/service-name", "web"),
                ("endpointslice.kubernetes.io/managed-by", "svcplane"),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: "web".into(),
                uid: "uid-web".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(vec![]),
        ports: Some(vec![port("http", 8080)]),
    };
    assert_eq!(slice, want);

    let headless = new_slice(
        &service("db").headless().build(),
        IpFamily::V6,
        vec![],
        "svcplane",
    );
    assert_eq!(
        headless
            .metadata
            .labels
            .unwrap()
            .get("service.kubernetes.io/headless"),
        Some(&String::new())
    );
    assert_eq!(headless.address_type, "IPv6");
}

#[test]
fn ownership_is_by_service_uid() {
    let svc = service("web").build();
    let slice = new_slice(&svc, IpFamily::V4, vec![], "svcplane");
    assert!(owned_by(&slice, &svc));
    assert!(!owned_by(&slice, &service("web").uid("recreated").build()));
}
