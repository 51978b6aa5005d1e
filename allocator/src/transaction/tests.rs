use super::*;
use crate::family::IpFamily::{V4, V6};
use crate::family::IpFamilyPolicy::{RequireDualStack, SingleStack};
use crate::ip::IpRange;
use crate::port::PortRange;
use crate::service::{ExternalTrafficPolicy, ServicePort};

fn allocators(cidrs: &[&str]) -> Allocators {
    let ips = cidrs
        .iter()
        .enumerate()
        .map(|(seed, cidr)| {
            ClusterIpAllocator::new(cidr.parse::<IpRange>().unwrap()).with_seed(seed as u64)
        })
        .collect();
    Allocators::new(
        ips,
        NodePortAllocator::new(PortRange::default()).with_seed(9),
    )
    .unwrap()
}

fn port(name: &str, protocol: &str, number: i32, node_port: Option<u16>) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol: protocol.into(),
        port: number,
        node_port,
    }
}

fn service(service_type: ServiceType) -> ServiceSpec {
    ServiceSpec {
        service_type,
        ports: vec![port("http", "TCP", 80, None)],
        has_selector: true,
        ..ServiceSpec::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Everything allocated, to compare states.
fn state(allocators: &Allocators) -> (Vec<Vec<IpAddr>>, Vec<u16>) {
    (
        allocators
            .cluster_ips()
            .iter()
            .map(|a| a.iter().collect())
            .collect(),
        allocators.node_ports().iter().collect(),
    )
}

fn created(allocators: &mut Allocators, spec: &ServiceSpec) -> ServiceSpec {
    let txn = allocators.create(spec, false).unwrap();
    let service = txn.service().clone();
    txn.commit(allocators);
    service
}

fn error(result: Result<Transaction>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn create_cluster_ip_service() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let txn = allocs
        .create(&service(ServiceType::ClusterIp), false)
        .unwrap();
    let svc = txn.service();
    assert_eq!(svc.ip_families, vec![V4]);
    assert_eq!(svc.ip_family_policy, Some(SingleStack));
    let assigned = ip(&svc.cluster_ips[0]);
    assert!(allocs.cluster_ips()[0].range().contains(assigned));
    assert_eq!(svc.ports[0].node_port, None);
    assert_eq!(txn.reserved(), &[Value::ClusterIp(assigned)]);
    assert!(txn.released().is_empty());
    txn.commit(&mut allocs);
    assert!(allocs.has(Value::ClusterIp(assigned)));
}

#[test]
fn tcp_and_udp_with_the_same_port_share_one_node_port() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        ports: vec![
            port("dns", "UDP", 53, None),
            port("dns-tcp", "TCP", 53, None),
            port("metrics", "TCP", 9153, None),
        ],
        ..service(ServiceType::NodePort)
    };
    let txn = allocs.create(&spec, false).unwrap();
    let ports = &txn.service().ports;
    assert_eq!(ports[0].node_port, ports[1].node_port);
    assert_ne!(ports[0].node_port, ports[2].node_port);
    assert_eq!(txn.reserved().len(), 3, "{:?}", txn.reserved());
    txn.commit(&mut allocs);
    assert_eq!(allocs.node_ports().used(), 2);
}

#[test]
fn requested_node_port_is_shared_with_the_other_protocol() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        ports: vec![
            port("dns", "UDP", 53, None),
            port("dns-tcp", "TCP", 53, Some(30053)),
        ],
        ..service(ServiceType::NodePort)
    };
    let svc = created(&mut allocs, &spec);
    assert_eq!(svc.ports[0].node_port, Some(30053));
    assert_eq!(svc.ports[1].node_port, Some(30053));
    assert_eq!(allocs.node_ports().used(), 1);
}

#[test]
fn two_services_never_share_a_node_port_whatever_the_protocol() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let tcp = ServiceSpec {
        ports: vec![port("a", "TCP", 80, Some(30080))],
        ..service(ServiceType::NodePort)
    };
    created(&mut allocs, &tcp);
    let udp = ServiceSpec {
        ports: vec![port("a", "UDP", 80, Some(30080))],
        ..service(ServiceType::NodePort)
    };
    assert_eq!(
        error(allocs.create(&udp, false)),
        "spec.ports[0].nodePort: provided port is already allocated"
    );
}

#[test]
fn failed_create_gives_back_what_it_reserved() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let before = state(&allocs);
    let spec = ServiceSpec {
        ports: vec![port("a", "TCP", 80, None), port("b", "TCP", 81, Some(80))],
        ..service(ServiceType::NodePort)
    };
    assert_eq!(
        error(allocs.create(&spec, false)),
        "spec.ports[1].nodePort: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    assert_eq!(state(&allocs), before);
}

#[test]
fn duplicate_node_port_for_one_protocol_is_refused() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        ports: vec![
            port("a", "TCP", 80, Some(30080)),
            port("b", "TCP", 81, Some(30080)),
        ],
        ..service(ServiceType::NodePort)
    };
    assert_eq!(
        error(allocs.create(&spec, false)),
        "spec.ports[1].nodePort: duplicate value: 30080"
    );
}

#[test]
fn load_balancer_without_node_port_allocation_honours_explicit_ones() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        allocate_load_balancer_node_ports: Some(false),
        ports: vec![
            port("a", "TCP", 80, None),
            port("b", "TCP", 81, Some(31000)),
        ],
        ..service(ServiceType::LoadBalancer)
    };
    let svc = created(&mut allocs, &spec);
    assert_eq!(svc.ports[0].node_port, None);
    assert_eq!(svc.ports[1].node_port, Some(31000));
    assert_eq!(allocs.node_ports().iter().collect::<Vec<_>>(), vec![31000]);
}

#[test]
fn health_check_node_port_for_load_balancer_with_local_policy() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let cluster = created(&mut allocs, &service(ServiceType::LoadBalancer));
    assert_eq!(cluster.health_check_node_port, None);

    let local = ServiceSpec {
        external_traffic_policy: ExternalTrafficPolicy::Local,
        ..service(ServiceType::LoadBalancer)
    };
    let svc = created(&mut allocs, &local);
    let hc = svc.health_check_node_port.unwrap();
    assert_ne!(Some(hc), svc.ports[0].node_port);
    assert!(allocs.node_ports().has(hc));

    let clash = ServiceSpec {
        health_check_node_port: Some(30100),
        ports: vec![port("a", "TCP", 80, Some(30100))],
        ..local
    };
    assert_eq!(
        error(allocs.create(&clash, false)),
        "spec.healthCheckNodePort: provided port is already allocated"
    );
}

#[test]
fn headless_and_external_name_allocate_nothing() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let headless = ServiceSpec {
        cluster_ips: vec!["None".into()],
        ..service(ServiceType::ClusterIp)
    };
    let txn = allocs.create(&headless, false).unwrap();
    assert!(txn.reserved().is_empty());
    assert_eq!(txn.service().cluster_ips, vec!["None"]);
    txn.commit(&mut allocs);

    let external = service(ServiceType::ExternalName);
    let txn = allocs.create(&external, false).unwrap();
    assert!(txn.reserved().is_empty());
    assert!(txn.service().cluster_ips.is_empty());
    txn.commit(&mut allocs);
    assert_eq!(state(&allocs), (vec![vec![]], vec![]));
}

#[test]
fn headless_node_port_is_refused() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        cluster_ips: vec!["None".into()],
        ..service(ServiceType::NodePort)
    };
    assert_eq!(
        error(allocs.create(&spec, false)),
        "spec.clusterIPs[0]: may not be set to 'None' for NodePort services"
    );
}

#[test]
fn requested_cluster_ips() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        cluster_ips: vec!["10.96.0.10".into()],
        ..service(ServiceType::ClusterIp)
    };
    let svc = created(&mut allocs, &spec);
    assert_eq!(svc.cluster_ips, vec!["10.96.0.10"]);
    assert_eq!(
        error(allocs.create(&spec, false)),
        "spec.clusterIPs[0]: provided IP is already allocated"
    );
    let outside = ServiceSpec {
        cluster_ips: vec!["10.112.0.1".into()],
        ..spec
    };
    assert_eq!(
        error(allocs.create(&outside, false)),
        "spec.clusterIPs[0]: the provided network does not match the current range"
    );
}

#[test]
fn full_range_names_the_field() {
    let mut allocs = allocators(&["10.0.0.0/29"]);
    for _ in 0..6 {
        created(&mut allocs, &service(ServiceType::ClusterIp));
    }
    let err = allocs
        .create(&service(ServiceType::ClusterIp), false)
        .unwrap_err();
    assert_eq!(err.to_string(), "spec.clusterIPs[0]: range is full");
    assert_eq!(err.field(), Some("spec.clusterIPs[0]"));
    assert!(err.is_transient());
    assert_eq!(err.metric_label(), "full");
}

#[test]
fn dual_stack_create() {
    let mut allocs = allocators(&["fd00:10:96::/108", "10.96.0.0/12"]);
    let spec = ServiceSpec {
        ip_family_policy: Some(RequireDualStack),
        ..service(ServiceType::ClusterIp)
    };
    let svc = created(&mut allocs, &spec);
    assert_eq!(svc.ip_families, vec![V6, V4]);
    assert_eq!(IpFamily::of(&ip(&svc.cluster_ips[0])), V6);
    assert_eq!(IpFamily::of(&ip(&svc.cluster_ips[1])), V4);

    let mut single = allocators(&["10.96.0.0/12"]);
    assert_eq!(
        error(single.create(&spec, false)),
        "spec.ipFamilyPolicy: this cluster is not configured for dual-stack services"
    );
    let v6 = ServiceSpec {
        cluster_ips: vec!["fd00::1".into()],
        ..service(ServiceType::ClusterIp)
    };
    assert_eq!(
        error(single.create(&v6, false)),
        "spec.clusterIPs[0]: IPv6 is not configured on this cluster"
    );
}

#[test]
fn dry_run_reports_and_persists_nothing() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let before = state(&allocs);
    let spec = ServiceSpec {
        external_traffic_policy: ExternalTrafficPolicy::Local,
        ..service(ServiceType::LoadBalancer)
    };
    let txn = allocs.create(&spec, true).unwrap();
    assert!(txn.is_dry_run());
    assert_eq!(txn.reserved().len(), 3);
    assert!(txn.service().health_check_node_port.is_some());
    assert_eq!(state(&allocs), before);
    txn.commit(&mut allocs);
    assert_eq!(state(&allocs), before);

    // A dry run still refuses what a real request would.
    let taken = ServiceSpec {
        cluster_ips: vec!["10.96.0.10".into()],
        ..service(ServiceType::ClusterIp)
    };
    created(&mut allocs, &taken);
    assert_eq!(
        error(allocs.create(&taken, true)),
        "spec.clusterIPs[0]: provided IP is already allocated"
    );
}

#[test]
fn revert_gives_back_the_reservations() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    created(&mut allocs, &service(ServiceType::NodePort));
    let before = state(&allocs);
    let txn = allocs
        .create(&service(ServiceType::NodePort), false)
        .unwrap();
    assert_ne!(state(&allocs), before);
    txn.revert(&mut allocs);
    assert_eq!(state(&allocs), before);
}

#[test]
fn node_port_to_cluster_ip_releases_ports_on_commit_only() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let old = created(&mut allocs, &service(ServiceType::NodePort));
    let node_port = old.ports[0].node_port.unwrap();
    let new = ServiceSpec {
        service_type: ServiceType::ClusterIp,
        ..old.clone()
    };
    let txn = allocs.update(&old, &new, false).unwrap();
    assert_eq!(txn.service().ports[0].node_port, None);
    assert_eq!(txn.service().cluster_ips, old.cluster_ips);
    assert_eq!(txn.released(), &[Value::NodePort(node_port)]);
    assert!(allocs.node_ports().has(node_port), "released before commit");
    txn.commit(&mut allocs);
    assert!(!allocs.node_ports().has(node_port));
    assert!(allocs.has(Value::ClusterIp(ip(&old.cluster_ips[0]))));
}

#[test]
fn update_that_omits_values_keeps_them() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let spec = ServiceSpec {
        external_traffic_policy: ExternalTrafficPolicy::Local,
        ports: vec![
            port("http", "TCP", 80, None),
            port("https", "TCP", 443, None),
        ],
        ..service(ServiceType::LoadBalancer)
    };
    let old = created(&mut allocs, &spec);
    let before = state(&allocs);
    // A PUT of the original manifest: no clusterIPs, no nodePorts, ports reordered.
    let new = ServiceSpec {
        ports: vec![spec.ports[1].clone(), spec.ports[0].clone()],
        ..spec.clone()
    };
    let txn = allocs.update(&old, &new, false).unwrap();
    let svc = txn.service().clone();
    assert!(txn.reserved().is_empty(), "{:?}", txn.reserved());
    assert!(txn.released().is_empty());
    txn.commit(&mut allocs);
    assert_eq!(svc.cluster_ips, old.cluster_ips);
    assert_eq!(svc.ports[0].node_port, old.ports[1].node_port);
    assert_eq!(svc.ports[1].node_port, old.ports[0].node_port);
    assert_eq!(svc.health_check_node_port, old.health_check_node_port);
    assert_eq!(state(&allocs), before);
}

#[test]
fn cluster_ip_to_node_port_and_back_through_external_name() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let old = created(&mut allocs, &service(ServiceType::ClusterIp));
    let ip0 = ip(&old.cluster_ips[0]);

    let node_port = ServiceSpec {
        service_type: ServiceType::NodePort,
        cluster_ips: Vec::new(),
        ..old.clone()
    };
    let txn = allocs.update(&old, &node_port, false).unwrap();
    let np_svc = txn.service().clone();
    assert_eq!(np_svc.cluster_ips, old.cluster_ips);
    let port0 = np_svc.ports[0].node_port.unwrap();
    assert_eq!(txn.reserved(), &[Value::NodePort(port0)]);
    txn.commit(&mut allocs);

    let external = ServiceSpec {
        service_type: ServiceType::ExternalName,
        ..np_svc.clone()
    };
    let txn = allocs.update(&np_svc, &external, false).unwrap();
    assert!(txn.service().cluster_ips.is_empty());
    assert!(txn.service().ip_families.is_empty());
    assert_eq!(
        txn.released(),
        &[Value::ClusterIp(ip0), Value::NodePort(port0)]
    );
    let ext_svc = txn.service().clone();
    txn.commit(&mut allocs);
    assert_eq!(state(&allocs), (vec![vec![]], vec![]));

    let back = ServiceSpec {
        service_type: ServiceType::ClusterIp,
        ..ext_svc.clone()
    };
    let txn = allocs.update(&ext_svc, &back, false).unwrap();
    assert_eq!(txn.service().cluster_ips.len(), 1);
    assert_eq!(txn.reserved().len(), 1);
    txn.commit(&mut allocs);
}

#[test]
fn assigned_cluster_ip_may_not_change() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let old = created(&mut allocs, &service(ServiceType::ClusterIp));
    let new = ServiceSpec {
        cluster_ips: vec!["10.96.0.99".into()],
        ..old.clone()
    };
    assert_eq!(
        error(allocs.update(&old, &new, false)),
        "spec.clusterIPs[0]: may not change once set"
    );
    let headless = ServiceSpec {
        cluster_ips: vec!["None".into()],
        ..old.clone()
    };
    assert_eq!(
        error(allocs.update(&old, &headless, false)),
        "spec.clusterIPs[0]: may not change once set"
    );
}

#[test]
fn headless_to_node_port_is_refused() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let old = created(
        &mut allocs,
        &ServiceSpec {
            cluster_ips: vec!["None".into()],
            ..service(ServiceType::ClusterIp)
        },
    );
    for service_type in [ServiceType::NodePort, ServiceType::LoadBalancer] {
        let new = ServiceSpec {
            service_type,
            cluster_ips: Vec::new(),
            ..old.clone()
        };
        assert_eq!(
            error(allocs.update(&old, &new, false)),
            format!("spec.clusterIPs[0]: may not be set to 'None' for {service_type} services")
        );
    }
}

#[test]
fn single_to_dual_stack_and_back() {
    let mut allocs = allocators(&["10.96.0.0/12", "fd00:10:96::/108"]);
    let old = created(&mut allocs, &service(ServiceType::ClusterIp));
    assert_eq!(old.ip_families, vec![V4]);

    let upgrade = ServiceSpec {
        ip_family_policy: Some(RequireDualStack),
        ..old.clone()
    };
    let txn = allocs.update(&old, &upgrade, false).unwrap();
    let dual = txn.service().clone();
    assert_eq!(dual.ip_families, vec![V4, V6]);
    assert_eq!(dual.cluster_ips[0], old.cluster_ips[0]);
    let secondary = ip(&dual.cluster_ips[1]);
    assert_eq!(txn.reserved(), &[Value::ClusterIp(secondary)]);
    txn.commit(&mut allocs);

    let downgrade = ServiceSpec {
        ip_family_policy: Some(SingleStack),
        ..dual.clone()
    };
    let txn = allocs.update(&dual, &downgrade, false).unwrap();
    assert_eq!(txn.service().cluster_ips, old.cluster_ips);
    assert_eq!(txn.service().ip_families, vec![V4]);
    assert_eq!(txn.released(), &[Value::ClusterIp(secondary)]);
    assert!(allocs.has(Value::ClusterIp(secondary)));
    txn.commit(&mut allocs);
    assert!(!allocs.has(Value::ClusterIp(secondary)));
}

#[test]
fn health_check_node_port_follows_the_traffic_policy() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let old = created(&mut allocs, &service(ServiceType::LoadBalancer));
    let local = ServiceSpec {
        external_traffic_policy: ExternalTrafficPolicy::Local,
        ..old.clone()
    };
    let txn = allocs.update(&old, &local, false).unwrap();
    let with_hc = txn.service().clone();
    let hc = with_hc.health_check_node_port.unwrap();
    assert_eq!(txn.reserved(), &[Value::NodePort(hc)]);
    txn.commit(&mut allocs);

    let changed = ServiceSpec {
        health_check_node_port: Some(31999),
        ..with_hc.clone()
    };
    assert_eq!(
        error(allocs.update(&with_hc, &changed, false)),
        "spec.healthCheckNodePort: field is immutable"
    );

    let cluster = ServiceSpec {
        external_traffic_policy: ExternalTrafficPolicy::Cluster,
        ..with_hc.clone()
    };
    let txn = allocs.update(&with_hc, &cluster, false).unwrap();
    assert_eq!(txn.service().health_check_node_port, None);
    assert_eq!(txn.released(), &[Value::NodePort(hc)]);
    txn.commit(&mut allocs);
    assert!(!allocs.node_ports().has(hc));
}

#[test]
fn changing_a_node_port_reserves_the_new_and_releases_the_old_on_commit() {
    let mut allocs = allocators(&["10.96.0.0/12"]);
    let old = created(&mut allocs, &service(ServiceType::NodePort));
    let before = old.ports[0].node_port.unwrap();
    let new = ServiceSpec {
        ports: vec![port("http", "TCP", 80, Some(31234))],
        ..old.clone()
    };
    let txn = allocs.update(&old, &new, false).unwrap();
    assert_eq!(txn.reserved(), &[Value::NodePort(31234)]);
    assert_eq!(txn.released(), &[Value::NodePort(before)]);
    txn.commit(&mut allocs);
    assert_eq!(allocs.node_ports().iter().collect::<Vec<_>>(), vec![31234]);
}

#[test]
fn delete_releases_everything_on_commit() {
    let mut allocs = allocators(&["10.96.0.0/12", "fd00:10:96::/108"]);
    let spec = ServiceSpec {
        ip_family_policy: Some(RequireDualStack),
        external_traffic_policy: ExternalTrafficPolicy::Local,
        ..service(ServiceType::LoadBalancer)
    };
    let svc = created(&mut allocs, &spec);
    let txn = allocs.delete(&svc);
    assert_eq!(txn.released().len(), 4);
    txn.commit(&mut allocs);
    assert_eq!(state(&allocs), (vec![vec![], vec![]], vec![]));
}

#[test]
fn allocators_need_one_range_or_two_families() {
    let ports = || NodePortAllocator::new(PortRange::default());
    let range = |s: &str| ClusterIpAllocator::new(s.parse().unwrap());
    assert_eq!(
        Allocators::new(vec![], ports()).unwrap_err(),
        Error::InvalidCidrSet
    );
    assert_eq!(
        Allocators::new(vec![range("10.0.0.0/24"), range("10.1.0.0/24")], ports()).unwrap_err(),
        Error::InvalidCidrSet
    );
    assert_eq!(
        Allocators::new(
            vec![
                range("10.0.0.0/24"),
                range("fd00::/120"),
                range("fd01::/120")
            ],
            ports()
        )
        .unwrap_err(),
        Error::InvalidCidrSet
    );
}
