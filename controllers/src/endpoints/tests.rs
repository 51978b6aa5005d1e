use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::fixtures::{NS, labels, pod, service, service_port, time};
use crate::pods::PodInfo;

fn address(ip: &str, pod: &str, node: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        hostname: None,
        node_name: Some(node.into()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(NS.into()),
            name: Some(pod.into()),
            uid: Some(format!("uid-{pod}")),
            ..Default::default()
        }),
    }
}

fn port(name: &str, number: i32) -> EndpointPort {
    EndpointPort {
        name: (!name.is_empty()).then(|| name.into()),
        port: number,
        protocol: Some("TCP".into()),
        app_protocol: None,
    }
}

fn subset(
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
    ports: Vec<EndpointPort>,
) -> EndpointSubset {
    EndpointSubset {
        addresses: (!ready.is_empty()).then_some(ready),
        not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
        ports: (!ports.is_empty()).then_some(ports),
    }
}

fn no_params() -> EndpointsParams<'static> {
    EndpointsParams::default()
}

fn subsets(endpoints: &Endpoints) -> Vec<EndpointSubset> {
    endpoints.subsets.clone().unwrap_or_default()
}

/// The seed walkthrough's `nginx-basic`: ClusterIP, port 80 named `http`, selector `app=nginx`.
fn nginx_basic() -> crate::fixtures::ServiceBuilder {
    service("nginx-basic")
        .selector(&[("app", "nginx")])
        .cluster_ip("10.100.49.21")
        .ports(vec![service_port("http", 80, IntOrString::Int(80))])
}

fn nginx_pod(name: &str, ip: &str, ready: bool) -> PodInfo {
    pod(name, ip)
        .label("app", "nginx")
        .node("mac-k8s")
        .ready(ready)
        .build()
}

#[test]
fn walkthrough_one_unready_pod_is_a_not_ready_address() {
    let svc = nginx_basic().build();
    let trigger = time(1_700_000_100);
    let pods = [nginx_pod("nginx-a", "192.168.185.14", false)];
    let params = EndpointsParams {
        trigger_time: Some(&trigger),
        managed_by: None,
    };

    let got = desired_endpoints(&svc, &pods, &params).unwrap();

    let want = Endpoints {
        metadata: ObjectMeta {
            name: Some("nginx-basic".into()),
            namespace: Some(NS.into()),
            annotations: Some(labels(&[(
                "endpoints.kubernetes.io/last-change-trigger-time",
                "2023-11-14T22:15:00Z",
            )])),
            ..Default::default()
        },
        subsets: Some(vec![subset(
            vec![],
            vec![address("192.168.185.14", "nginx-a", "mac-k8s")],
            vec![port("http", 80)],
        )]),
    };
    assert_eq!(got, want);
}

#[test]
fn walkthrough_scale_ready_and_publish_not_ready() {
    let svc = nginx_basic().build();
    let a = address("192.168.185.14", "nginx-a", "mac-k8s");
    let b = address("192.168.185.15", "nginx-b", "mac-k8s");

    // Step 3: scaled to two, neither ready.
    let pods = [
        nginx_pod("nginx-a", "192.168.185.14", false),
        nginx_pod("nginx-b", "192.168.185.15", false),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![],
            vec![a.clone(), b.clone()],
            vec![port("http", 80)]
        )]
    );

    // Step 4: .14 becomes ready.
    let pods = [
        nginx_pod("nginx-a", "192.168.185.14", true),
        nginx_pod("nginx-b", "192.168.185.15", false),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![a.clone()],
            vec![b.clone()],
            vec![port("http", 80)]
        )]
    );

    // Step 5: publishNotReadyAddresses puts both in addresses.
    let publishing = nginx_basic().publish_not_ready().build();
    let got = desired_endpoints(&publishing, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(vec![a, b], vec![], vec![port("http", 80)])]
    );
}

#[test]
fn walkthrough_headless_lists_ready_pods_and_is_labelled() {
    let svc = service("nginx-headless")
        .selector(&[("app", "nginx")])
        .headless()
        .ports(vec![service_port("http", 80, IntOrString::Int(80))])
        .build();
    let pods = [
        nginx_pod("nginx-a", "192.168.185.14", true),
        nginx_pod("nginx-b", "192.168.185.15", true),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        got.metadata.labels,
        Some(labels(&[("service.kubernetes.io/headless", "")]))
    );
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![
                address("192.168.185.14", "nginx-a", "mac-k8s"),
                address("192.168.185.15", "nginx-b", "mac-k8s")
            ],
            vec![],
            vec![port("http", 80)],
        )]
    );
}

#[test]
fn walkthrough_external_name_and_selectorless_get_nothing() {
    let pods = [nginx_pod("nginx-a", "192.168.185.14", true)];
    let external = service("external-service")
        .external_name("tencent.com")
        .build();
    assert_eq!(desired_endpoints(&external, &pods, &no_params()), None);
    let selectorless = service("service-without-selector").no_selector().build();
    assert_eq!(desired_endpoints(&selectorless, &pods, &no_params()), None);
}

#[test]
fn no_pods_gives_an_object_without_subsets() {
    let svc = service("web").label("tier", "front").build();
    let got = desired_endpoints::<PodInfo>(&svc, &[], &no_params()).unwrap();
    assert_eq!(got.subsets, None);
    assert_eq!(got.metadata.labels, Some(labels(&[("tier", "front")])));
    assert_eq!(got.metadata.annotations, None);
}

#[test]
fn labels_are_the_service_labels_plus_headless_and_manager() {
    let svc = service("web")
        .label("tier", "front")
        .label("service.kubernetes.io/headless", "")
        .build();
    let params = EndpointsParams {
        trigger_time: None,
        managed_by: Some("endpoints.svcplane.io"),
    };
    let got = desired_endpoints::<PodInfo>(&svc, &[], &params).unwrap();
    assert_eq!(
        got.metadata.labels,
        Some(labels(&[
            ("tier", "front"),
            (
                "endpoints.kubernetes.io/managed-by",
                "endpoints.svcplane.io"
            )
        ]))
    );
    let unset_cluster_ip = service("web").cluster_ip("").build();
    let got = desired_endpoints::<PodInfo>(&unset_cluster_ip, &[], &no_params()).unwrap();
    assert_eq!(
        got.metadata.labels,
        Some(labels(&[("service.kubernetes.io/headless", "")]))
    );
}

#[test]
fn only_selected_pods_with_ips_that_have_not_finished_count() {
    let svc = service("web").build();
    let pods = [
        pod("in", "10.0.0.1").label("app", "web").build(),
        pod("other-app", "10.0.0.2").label("app", "db").build(),
        pod("other-ns", "10.0.0.3")
            .label("app", "web")
            .namespace("x")
            .build(),
        pod("no-ip", "10.0.0.4").label("app", "web").no_ip().build(),
        pod("done", "10.0.0.5")
            .label("app", "web")
            .phase("Succeeded")
            .build(),
        pod("failed", "10.0.0.6")
            .label("app", "web")
            .phase("Failed")
            .build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![address("10.0.0.1", "in", "node-1")],
            vec![],
            vec![port("http", 8080)]
        )]
    );
}

#[test]
fn terminating_pods_are_left_out_unless_not_ready_addresses_are_published() {
    let pods = [
        pod("live", "10.0.0.1").label("app", "web").build(),
        pod("going", "10.0.0.2")
            .label("app", "web")
            .terminating()
            .build(),
    ];
    let got = desired_endpoints(&service("web").build(), &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![address("10.0.0.1", "live", "node-1")],
            vec![],
            vec![port("http", 8080)]
        )]
    );

    let got = desired_endpoints(
        &service("web").publish_not_ready().build(),
        &pods,
        &no_params(),
    )
    .unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![
                address("10.0.0.1", "live", "node-1"),
                address("10.0.0.2", "going", "node-1")
            ],
            vec![],
            vec![port("http", 8080)],
        )]
    );
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
            .hostname("db-1", "elsewhere")
            .build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    let mut named = address("10.0.0.1", "db-0", "node-1");
    named.hostname = Some("db-0".into());
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![named, address("10.0.0.2", "db-1", "node-1")],
            vec![],
            vec![port("pg", 5432)]
        )]
    );
}

#[test]
fn headless_without_ports_gets_port_less_subsets() {
    let svc = service("db").headless().no_ports().build();
    let pods = [
        pod("db-0", "10.0.0.1").label("app", "db").build(),
        pod("db-1", "10.0.0.2")
            .label("app", "db")
            .not_ready()
            .build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![address("10.0.0.1", "db-0", "node-1")],
            vec![address("10.0.0.2", "db-1", "node-1")],
            vec![]
        )]
    );
}

#[test]
fn service_with_cluster_ip_and_no_ports_gets_no_subsets() {
    let svc = service("web").no_ports().build();
    let pods = [pod("a", "10.0.0.1").label("app", "web").build()];
    assert_eq!(
        desired_endpoints(&svc, &pods, &no_params())
            .unwrap()
            .subsets,
        None
    );
}

#[test]
fn named_ports_resolving_differently_per_pod_make_separate_subsets() {
    let svc = service("web")
        .ports(vec![service_port(
            "web",
            80,
            IntOrString::String("http".into()),
        )])
        .build();
    let pods = [
        pod("a", "10.0.0.1")
            .label("app", "web")
            .container_port("http", 8080, "TCP")
            .build(),
        pod("b", "10.0.0.2")
            .label("app", "web")
            .container_port("http", 9090, "TCP")
            .build(),
        pod("c", "10.0.0.3")
            .label("app", "web")
            .container_port("http", 8080, "TCP")
            .not_ready()
            .build(),
        pod("none", "10.0.0.4")
            .label("app", "web")
            .container_port("metrics", 8080, "TCP")
            .build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    let mut want = vec![
        subset(
            vec![address("10.0.0.1", "a", "node-1")],
            vec![address("10.0.0.3", "c", "node-1")],
            vec![port("web", 8080)],
        ),
        subset(
            vec![address("10.0.0.2", "b", "node-1")],
            vec![],
            vec![port("web", 9090)],
        ),
    ];
    let mut got = subsets(&got);
    got.sort_by_key(|s| s.ports.as_ref().unwrap()[0].port);
    want.sort_by_key(|s| s.ports.as_ref().unwrap()[0].port);
    assert_eq!(got, want);
}

#[test]
fn subsets_group_addresses_by_identical_port_sets() {
    let svc = service("web")
        .ports(vec![
            service_port("http", 80, IntOrString::Int(8080)),
            service_port("admin", 81, IntOrString::String("admin".into())),
        ])
        .build();
    let pods = [
        pod("both", "10.0.0.1")
            .label("app", "web")
            .container_port("admin", 9000, "TCP")
            .build(),
        pod("http-only", "10.0.0.2").label("app", "web").build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    let want = Endpoints {
        subsets: Some(vec![
            subset(
                vec![
                    address("10.0.0.1", "both", "node-1"),
                    address("10.0.0.2", "http-only", "node-1"),
                ],
                vec![],
                vec![port("http", 8080)],
            ),
            subset(
                vec![address("10.0.0.1", "both", "node-1")],
                vec![],
                vec![port("admin", 9000)],
            ),
        ]),
        ..Default::default()
    };
    assert!(endpoints_equivalent(&got, &want), "{got:#?}");
    assert_eq!(got.subsets.as_ref().unwrap().len(), 2);
}

#[test]
fn ports_shared_by_the_same_addresses_share_a_subset() {
    let svc = service("web")
        .ports(vec![
            service_port("http", 80, IntOrString::Int(8080)),
            service_port("https", 443, IntOrString::Int(8443)),
        ])
        .build();
    let pods = [
        pod("a", "10.0.0.1").label("app", "web").build(),
        pod("b", "10.0.0.2").label("app", "web").build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![
                address("10.0.0.1", "a", "node-1"),
                address("10.0.0.2", "b", "node-1")
            ],
            vec![],
            vec![port("http", 8080), port("https", 8443)],
        )]
    );
}

#[test]
fn duplicate_address_and_uid_is_listed_once_with_not_ready_winning() {
    let svc = service("web").build();
    let ready = pod("a", "10.0.0.1").label("app", "web").build();
    let stale_copy = pod("a", "10.0.0.1").label("app", "web").not_ready().build();
    let got = desired_endpoints(&svc, &[ready, stale_copy], &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![],
            vec![address("10.0.0.1", "a", "node-1")],
            vec![port("http", 8080)]
        )]
    );
}

#[test]
fn same_ip_different_pods_are_both_listed() {
    let svc = service("web").build();
    let pods = [
        pod("a", "10.0.0.1").label("app", "web").build(),
        pod("b", "10.0.0.1").label("app", "web").build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![
                address("10.0.0.1", "a", "node-1"),
                address("10.0.0.1", "b", "node-1")
            ],
            vec![],
            vec![port("http", 8080)]
        )]
    );
}

#[test]
fn dual_stack_uses_the_primary_family_only() {
    let svc = service("web")
        .families(&["IPv6", "IPv4"])
        .cluster_ip("fd00::10")
        .build();
    let pods = [
        pod("dual", "10.0.0.1")
            .ip("fd00::1")
            .label("app", "web")
            .build(),
        pod("v4-only", "10.0.0.2").label("app", "web").build(),
    ];
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![address("fd00::1", "dual", "node-1")],
            vec![],
            vec![port("http", 8080)]
        )]
    );

    let v4 = service("web").families(&["IPv4", "IPv6"]).build();
    let got = desired_endpoints(&v4, &pods, &no_params()).unwrap();
    assert_eq!(
        subsets(&got),
        vec![subset(
            vec![
                address("10.0.0.1", "dual", "node-1"),
                address("10.0.0.2", "v4-only", "node-1")
            ],
            vec![],
            vec![port("http", 8080)],
        )]
    );
}

fn many_pods(prefix: &str, count: usize, ready: bool, port: Option<i32>) -> Vec<PodInfo> {
    (0..count)
        .map(|i| {
            let mut builder = pod(
                &format!("{prefix}-{i}"),
                &format!("10.{}.{}.{}", prefix.len(), i / 256, i % 256),
            )
            .label("app", "web")
            .ready(ready);
            if let Some(port) = port {
                builder = builder.container_port("http", port, "TCP");
            }
            builder.build()
        })
        .collect()
}

fn totals(endpoints: &Endpoints) -> (usize, usize) {
    let subsets = subsets(endpoints);
    (
        subsets
            .iter()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum(),
        subsets
            .iter()
            .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
            .sum(),
    )
}

fn over_capacity(endpoints: &Endpoints) -> Option<&str> {
    endpoints
        .metadata
        .annotations
        .as_ref()?
        .get("endpoints.kubernetes.io/over-capacity")
        .map(String::as_str)
}

#[test]
fn exactly_a_thousand_addresses_are_not_truncated() {
    let pods = many_pods("r", 1000, true, None);
    let got = desired_endpoints(&service("web").build(), &pods, &no_params()).unwrap();
    assert_eq!(totals(&got), (1000, 0));
    assert_eq!(over_capacity(&got), None);
}

#[test]
fn over_a_thousand_keeps_ready_addresses_first() {
    let mut pods = many_pods("r", 900, true, None);
    pods.extend(many_pods("nr", 300, false, None));
    let got = desired_endpoints(&service("web").build(), &pods, &no_params()).unwrap();
    assert_eq!(totals(&got), (900, 100));
    assert_eq!(over_capacity(&got), Some("truncated"));

    let pods = [
        many_pods("r", 1200, true, None),
        many_pods("nr", 10, false, None),
    ]
    .concat();
    let got = desired_endpoints(&service("web").build(), &pods, &no_params()).unwrap();
    assert_eq!(totals(&got), (1000, 0));
}

#[test]
fn truncation_cuts_each_subset_in_proportion() {
    let svc = service("web")
        .ports(vec![service_port(
            "web",
            80,
            IntOrString::String("http".into()),
        )])
        .build();
    let pods = [
        many_pods("a", 900, true, Some(8080)),
        many_pods("bb", 300, true, Some(9090)),
    ]
    .concat();
    let got = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    let mut sizes: Vec<(i32, usize)> = subsets(&got)
        .iter()
        .map(|s| {
            (
                s.ports.as_ref().unwrap()[0].port,
                s.addresses.as_ref().unwrap().len(),
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![(8080, 750), (9090, 250)]);
    assert_eq!(over_capacity(&got), Some("truncated"));
}

#[test]
fn truncation_is_deterministic() {
    let mut pods = many_pods("r", 1100, true, None);
    let first = desired_endpoints(&service("web").build(), &pods, &no_params()).unwrap();
    pods.reverse();
    let second = desired_endpoints(&service("web").build(), &pods, &no_params()).unwrap();
    assert_eq!(first, second);
}

#[test]
fn equivalence_ignores_order_grouping_and_pod_resource_version() {
    let a = address("10.0.0.1", "a", "node-1");
    let b = address("10.0.0.2", "b", "node-1");
    let mut b_with_rv = b.clone();
    b_with_rv.target_ref.as_mut().unwrap().resource_version = Some("42".into());
    let one = Endpoints {
        subsets: Some(vec![subset(
            vec![a.clone(), b.clone()],
            vec![],
            vec![port("http", 80), port("https", 443)],
        )]),
        ..Default::default()
    };
    let other = Endpoints {
        subsets: Some(vec![
            subset(vec![b_with_rv, a.clone()], vec![], vec![port("https", 443)]),
            subset(vec![a.clone(), b.clone()], vec![], vec![port("http", 80)]),
        ]),
        ..Default::default()
    };
    assert!(endpoints_equivalent(&one, &other));

    let readiness_differs = Endpoints {
        subsets: Some(vec![subset(
            vec![a.clone()],
            vec![b.clone()],
            vec![port("http", 80), port("https", 443)],
        )]),
        ..Default::default()
    };
    assert!(!endpoints_equivalent(&one, &readiness_differs));
    let mut node_differs = one.clone();
    node_differs.subsets.as_mut().unwrap()[0]
        .addresses
        .as_mut()
        .unwrap()[0]
        .node_name = Some("node-2".into());
    assert!(!endpoints_equivalent(&one, &node_differs));
    assert!(endpoints_equivalent(
        &Endpoints::default(),
        &Endpoints {
            subsets: Some(vec![]),
            ..Default::default()
        }
    ));
}

fn stored(mut endpoints: Endpoints, resource_version: &str) -> Endpoints {
    endpoints.metadata.resource_version = Some(resource_version.into());
    endpoints.metadata.uid = Some("ep-uid".into());
    endpoints
}

#[test]
fn write_plan_creates_then_stays_quiet() {
    let svc = service("web").build();
    let pods = [pod("a", "10.0.0.1").label("app", "web").build()];
    let t1 = time(1_700_000_000);
    let desired = desired_endpoints(
        &svc,
        &pods,
        &EndpointsParams {
            trigger_time: Some(&t1),
            managed_by: None,
        },
    )
    .unwrap();
    assert_eq!(
        plan_endpoints_write(None, &desired),
        Some(EndpointsWrite::Create(desired.clone()))
    );

    let current = stored(desired, "7");
    let t2 = time(1_700_000_500);
    let again = desired_endpoints(
        &svc,
        &pods,
        &EndpointsParams {
            trigger_time: Some(&t2),
            managed_by: None,
        },
    )
    .unwrap();
    assert_eq!(
        plan_endpoints_write(Some(&current), &again),
        None,
        "a new trigger time alone is no reason to write"
    );

    let adopted = desired_endpoints(
        &svc,
        &pods,
        &EndpointsParams {
            trigger_time: None,
            managed_by: Some("svcplane"),
        },
    )
    .unwrap();
    assert_eq!(
        plan_endpoints_write(Some(&current), &adopted),
        None,
        "the manager label alone is no reason to write"
    );
}

#[test]
fn write_plan_updates_in_place_keeping_foreign_annotations() {
    let svc = service("web").build();
    let mut current = stored(
        desired_endpoints(
            &svc,
            &[pod("a", "10.0.0.1").label("app", "web").build()],
            &no_params(),
        )
        .unwrap(),
        "7",
    );
    current.metadata.annotations = Some(labels(&[
        ("note", "kept"),
        (
            "endpoints.kubernetes.io/last-change-trigger-time",
            "2000-01-01T00:00:00Z",
        ),
    ]));
    let t = time(1_700_000_000);
    let pods = [pod("a", "10.0.0.1").label("app", "web").not_ready().build()];
    let desired = desired_endpoints(
        &svc,
        &pods,
        &EndpointsParams {
            trigger_time: Some(&t),
            managed_by: None,
        },
    )
    .unwrap();

    let Some(EndpointsWrite::Update(updated)) = plan_endpoints_write(Some(&current), &desired)
    else {
        panic!("expected an update");
    };
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(updated.metadata.uid.as_deref(), Some("ep-uid"));
    assert_eq!(
        updated.metadata.annotations,
        Some(labels(&[
            ("note", "kept"),
            (
                "endpoints.kubernetes.io/last-change-trigger-time",
                "2023-11-14T22:13:20Z"
            )
        ]))
    );
    assert_eq!(updated.subsets, desired.subsets);
}

#[test]
fn write_plan_clears_a_trigger_time_it_does_not_have() {
    let svc = service("web").build();
    let mut current = stored(
        desired_endpoints::<PodInfo>(&svc, &[], &no_params()).unwrap(),
        "3",
    );
    current.metadata.annotations = Some(labels(&[(
        "endpoints.kubernetes.io/last-change-trigger-time",
        "2000-01-01T00:00:00Z",
    )]));
    let desired = desired_endpoints(
        &svc,
        &[pod("a", "10.0.0.1").label("app", "web").build()],
        &no_params(),
    )
    .unwrap();
    let Some(EndpointsWrite::Update(updated)) = plan_endpoints_write(Some(&current), &desired)
    else {
        panic!("expected an update");
    };
    assert_eq!(updated.metadata.annotations, None);
}

#[test]
fn write_plan_reacts_to_labels_and_capacity_annotation() {
    let svc = service("web").build();
    let current = stored(
        desired_endpoints::<PodInfo>(&svc, &[], &no_params()).unwrap(),
        "3",
    );

    let relabelled = service("web").label("tier", "front").build();
    let desired = desired_endpoints::<PodInfo>(&relabelled, &[], &no_params()).unwrap();
    assert!(matches!(
        plan_endpoints_write(Some(&current), &desired),
        Some(EndpointsWrite::Update(_))
    ));

    let mut wrongly_marked = current.clone();
    wrongly_marked.metadata.annotations = Some(labels(&[(
        "endpoints.kubernetes.io/over-capacity",
        "truncated",
    )]));
    let desired = desired_endpoints::<PodInfo>(&svc, &[], &no_params()).unwrap();
    let Some(EndpointsWrite::Update(updated)) =
        plan_endpoints_write(Some(&wrongly_marked), &desired)
    else {
        panic!("expected an update");
    };
    assert_eq!(updated.metadata.annotations, None);
}

#[test]
fn truncated_endpoints_are_not_rewritten_on_every_sync() {
    let pods = many_pods("r", 1100, true, None);
    let svc = service("web").build();
    let desired = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    let current = stored(desired.clone(), "9");
    assert_eq!(plan_endpoints_write(Some(&current), &desired), None);
}

#[test]
fn tracker_plans_from_what_was_written_until_the_cache_shows_it() {
    let svc = service("web").build();
    let desired = desired_endpoints::<PodInfo>(&svc, &[], &no_params()).unwrap();
    let version = |v: &str| stored(desired.clone(), v);
    // The version a sync plans from when the cache shows `cached` ("" for no object).
    let plans_from = |tracker: &mut EndpointsTracker, cached: Option<&str>| {
        tracker
            .current(NS, "web", cached.map(|v| Arc::new(version(v))))
            .and_then(|e| e.metadata.resource_version.clone())
            .unwrap_or_default()
    };
    let update = |tracker: &mut EndpointsTracker, from: &str, to: &str| {
        tracker.record_update(&version(from), desired.clone(), version(to).metadata);
    };
    let mut tracker = EndpointsTracker::default();
    assert_eq!(plans_from(&mut tracker, None), "");
    assert_eq!(plans_from(&mut tracker, Some("5")), "5");

    // Two updates before any echo: the cache may show either replaced version.
    update(&mut tracker, "5", "6");
    update(&mut tracker, "6", "7");
    for behind in ["5", "6"] {
        assert_eq!(plans_from(&mut tracker, Some(behind)), "7");
    }
    // The cache shows the last write: it is used, and the entry dropped.
    assert_eq!(plans_from(&mut tracker, Some("7")), "7");
    assert_eq!(plans_from(&mut tracker, Some("6")), "6");

    // Someone else's later version, or a deletion, is taken as it is.
    update(&mut tracker, "7", "8");
    assert_eq!(plans_from(&mut tracker, Some("9")), "9");
    assert_eq!(plans_from(&mut tracker, Some("7")), "7");
    update(&mut tracker, "7", "8");
    assert_eq!(plans_from(&mut tracker, None), "");
    assert_eq!(plans_from(&mut tracker, Some("7")), "7");

    // After a failed write, the cache.
    update(&mut tracker, "7", "8");
    tracker.forget(NS, "web");
    assert_eq!(plans_from(&mut tracker, Some("7")), "7");
    // An update the apiserver found changed nothing leaves the cache current.
    update(&mut tracker, "7", "7");
    assert_eq!(plans_from(&mut tracker, Some("7")), "7");
}

#[test]
fn tracker_keeps_what_was_sent_with_the_stored_metadata() {
    let svc = nginx_basic().build();
    let pods = [nginx_pod("nginx-a", "192.168.185.14", true)];
    let sent = desired_endpoints(&svc, &pods, &no_params()).unwrap();
    assert!(sent.subsets.is_some());
    let mut answer = stored(sent.clone(), "12").metadata;
    answer.managed_fields = Some(vec![Default::default()]);
    let mut tracker = EndpointsTracker::default();
    let previous = stored(sent.clone(), "11");
    tracker.record_update(&previous, sent.clone(), answer);
    let name = svc.metadata.name.as_deref().unwrap();
    let written = tracker.current(NS, name, Some(Arc::new(previous))).unwrap();
    assert_eq!(written.subsets, sent.subsets);
    assert_eq!(written.metadata.resource_version.as_deref(), Some("12"));
    assert_eq!(written.metadata.uid.as_deref(), Some("ep-uid"));
    assert_eq!(written.metadata.managed_fields, None);
    assert_eq!(plan_endpoints_write(Some(&written), &sent), None);
}
