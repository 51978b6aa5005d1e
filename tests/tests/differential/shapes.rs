//! Service shapes: headless with hostnames, named ports resolving per pod, dual-stack,
//! publishNotReadyAddresses, pods whose IP families change.

use std::sync::Arc;

use anyhow::Result;
use e2e::kubelet::{self, PodState, PodTemplate};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::expect::*;
use crate::harness::{Planes, Scenario};

const READY: (bool, bool, bool) = (true, true, false);

/// A headless Service with a port and pods whose subdomain names it (they get hostnames) or
/// not; and a headless Service without ports over the same pods.
pub async fn headless_with_hostnames(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "headless-node";
    let s = Scenario::start(&planes, "headless").await?;
    s.each(|side| async move { side.node(NODE, Some("zone-h")).await })
        .await?;
    let pods = [
        ("db-0", "10.10.0.10", Some("db")),
        ("db-1", "10.10.0.11", Some("elsewhere")),
        ("db-2", "10.10.0.12", None),
    ];
    s.each(|side| async move {
        let templates: Vec<_> = pods
            .iter()
            .map(|(name, ip, subdomain)| {
                let mut template = pod(name, "db", NODE, ("pg", 5432));
                if let Some(subdomain) = subdomain {
                    template = template.hostname(name, subdomain);
                }
                (template, running(ip, true))
            })
            .collect();
        side.start_pods(&templates).await?;
        let mut with_port = service("db", &[("app", "db")], &[("pg", 5432, "TCP", "pg")]);
        with_port["spec"]["clusterIP"] = json!("None");
        side.create_service(with_port).await?;
        let mut without_ports = service("db-noports", &[("app", "db")], &[]);
        without_ports["spec"]["clusterIP"] = json!("None");
        side.create_service(without_ports).await?;
        Ok(())
    })
    .await?;

    let address_of = |(name, ip, subdomain): &(&str, &str, Option<&str>), service: &str| {
        let plain = address(ip, NODE, name);
        if *subdomain == Some(service) {
            with_hostname(plain, name)
        } else {
            plain
        }
    };
    let endpoint_of = |(name, ip, subdomain): &(&str, &str, Option<&str>), service: &str| {
        let mut e = endpoint(ip, NODE, Some("zone-h"), name, READY);
        if *subdomain == Some(service) {
            e.hostname = Some(name.to_string());
        }
        e
    };
    for (service, ports) in [("db", vec![("pg", 5432, "TCP")]), ("db-noports", vec![])] {
        let subset = pods
            .iter()
            .fold(subset(&ports), |s, p| s.ready(address_of(p, service)));
        let expected = published(
            Some(endpoints([subset], &[(HEADLESS_LABEL, "")])),
            None,
            slices(service, true).group(
                "IPv4",
                &ports,
                pods.iter().map(|p| endpoint_of(p, service)),
            ),
        );
        s.converge(service, Some(&expected)).await?;
    }
    s.finish(&["db", "db-noports"]).await
}

/// A named targetPort that pods resolve to different numbers (or not at all), and a UDP port
/// resolved by name and protocol.
pub async fn named_ports_per_pod(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "ports-node";
    let s = Scenario::start(&planes, "named-ports").await?;
    s.each(|side| async move { side.node(NODE, None).await })
        .await?;
    s.each(|side| async move {
        let web_a = PodTemplate::new("web-a", NODE)
            .label("app", "web")
            .port("web", 8080, "TCP")
            .port("dns", 5353, "UDP");
        let web_b = PodTemplate::new("web-b", NODE)
            .label("app", "web")
            .port("web", 9090, "TCP")
            .port("dns", 5353, "TCP");
        let web_c = PodTemplate::new("web-c", NODE)
            .label("app", "web")
            .port("other", 7070, "TCP");
        side.start_pods(&[
            (web_a, running("10.11.0.1", true)),
            (web_b, running("10.11.0.2", true)),
            (web_c, running("10.11.0.3", false)),
        ])
        .await?;
        side.create_service(service(
            "web",
            &[("app", "web")],
            &[("http", 80, "TCP", "web"), ("dns", 53, "UDP", "dns")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    let expected = published(
        Some(endpoints(
            [
                subset(&[("http", 8080, "TCP"), ("dns", 5353, "UDP")]).ready(address(
                    "10.11.0.1",
                    NODE,
                    "web-a",
                )),
                subset(&[("http", 9090, "TCP")]).ready(address("10.11.0.2", NODE, "web-b")),
            ],
            &[],
        )),
        None,
        slices("web", false)
            .group(
                "IPv4",
                &[("http", 8080, "TCP"), ("dns", 5353, "UDP")],
                [endpoint("10.11.0.1", NODE, None, "web-a", READY)],
            )
            .group(
                "IPv4",
                &[("http", 9090, "TCP")],
                [endpoint("10.11.0.2", NODE, None, "web-b", READY)],
            )
            .group(
                "IPv4",
                &[],
                [endpoint(
                    "10.11.0.3",
                    NODE,
                    None,
                    "web-c",
                    (false, false, false),
                )],
            ),
    );
    s.converge("web", Some(&expected)).await?;

    // web-c becomes ready: it still serves no port of the Service.
    s.each(|side| async move { side.set_pod("web-c", &running("10.11.0.3", true)).await })
        .await?;
    s.converge("web", None).await?;
    s.finish(&["web"]).await
}

/// RequireDualStack Services (IPv4 and IPv6 primary) over dual-stack and IPv4-only pods.
pub async fn dual_stack(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "dual-node";
    let s = Scenario::start(&planes, "dual-stack").await?;
    s.each(|side| async move { side.node(NODE, Some("zone-d")).await })
        .await?;
    s.each(|side| async move {
        side.start_pods(&[
            (
                pod("both", "dual", NODE, ("http", 8080)),
                with_ips(&["10.12.0.1", "fd00:12::1"], true),
            ),
            (
                pod("v4only", "dual", NODE, ("http", 8080)),
                with_ips(&["10.12.0.2"], true),
            ),
        ])
        .await?;
        for (name, families) in [("v4first", ["IPv4", "IPv6"]), ("v6first", ["IPv6", "IPv4"])] {
            let mut manifest = service(name, &[("app", "dual")], &[("http", 80, "TCP", "http")]);
            manifest["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
            manifest["spec"]["ipFamilies"] = json!(families);
            side.create_service(manifest).await?;
        }
        Ok(())
    })
    .await?;
    let ports = [("http", 8080, "TCP")];
    let v4 = [
        endpoint("10.12.0.1", NODE, Some("zone-d"), "both", READY),
        endpoint("10.12.0.2", NODE, Some("zone-d"), "v4only", READY),
    ];
    let v6 = [endpoint("fd00:12::1", NODE, Some("zone-d"), "both", READY)];
    let v4first = published(
        Some(endpoints(
            [subset(&ports)
                .ready(address("10.12.0.1", NODE, "both"))
                .ready(address("10.12.0.2", NODE, "v4only"))],
            &[],
        )),
        None,
        slices("v4first", false)
            .group("IPv4", &ports, v4.clone())
            .group("IPv6", &ports, v6.clone()),
    );
    s.converge("v4first", Some(&v4first)).await?;
    let v6first = published(
        Some(endpoints(
            [subset(&ports).ready(address("fd00:12::1", NODE, "both"))],
            &[],
        )),
        None,
        slices("v6first", false)
            .group("IPv4", &ports, v4)
            .group("IPv6", &ports, v6),
    );
    s.converge("v6first", Some(&v6first)).await?;

    // The IPv4-only pod goes: the IPv4 slices shrink, the IPv6 ones stay.
    s.each(|side| async move { kubelet::force_delete_pod(&side.api::<Pod>(), "v4only").await })
        .await?;
    s.converge("v4first", None).await?;
    s.converge("v6first", None).await?;
    s.finish(&["v4first", "v6first"]).await
}

/// publishNotReadyAddresses: ready, not-ready and terminating pods are all published ready.
pub async fn publish_not_ready_addresses(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "pnr-node";
    let s = Scenario::start(&planes, "publish-not-ready").await?;
    s.each(|side| async move { side.node(NODE, None).await })
        .await?;
    s.each(|side| async move {
        side.start_pods(&[
            (
                pod("ready", "pnr", NODE, ("http", 80)),
                running("10.13.0.1", true),
            ),
            (
                pod("unready", "pnr", NODE, ("http", 80)),
                running("10.13.0.2", false),
            ),
            (
                pod("leaving", "pnr", NODE, ("http", 80)),
                running("10.13.0.3", true),
            ),
        ])
        .await?;
        kubelet::terminate_pod(&side.api::<Pod>(), "leaving").await?;
        let mut manifest = service("pnr", &[("app", "pnr")], &[("http", 80, "TCP", "http")]);
        manifest["spec"]["publishNotReadyAddresses"] = json!(true);
        side.create_service(manifest).await?;
        Ok(())
    })
    .await?;
    let ports = [("http", 80, "TCP")];
    let expected = published(
        Some(endpoints(
            [subset(&ports)
                .ready(address("10.13.0.1", NODE, "ready"))
                .ready(address("10.13.0.2", NODE, "unready"))
                .ready(address("10.13.0.3", NODE, "leaving"))],
            &[],
        )),
        None,
        slices("pnr", false).group(
            "IPv4",
            &ports,
            [
                endpoint("10.13.0.1", NODE, None, "ready", READY),
                endpoint("10.13.0.2", NODE, None, "unready", (true, false, false)),
                endpoint("10.13.0.3", NODE, None, "leaving", (true, true, true)),
            ],
        ),
    );
    s.converge("pnr", Some(&expected)).await?;

    // Turning it off: the not-ready pod moves to notReadyAddresses, the terminating one goes.
    s.each(|side| async move {
        side.merge_patch::<k8s_openapi::api::core::v1::Service>(
            "pnr",
            json!({ "spec": { "publishNotReadyAddresses": false } }),
        )
        .await
    })
    .await?;
    let expected = published(
        Some(endpoints(
            [subset(&ports)
                .ready(address("10.13.0.1", NODE, "ready"))
                .not_ready(address("10.13.0.2", NODE, "unready"))],
            &[],
        )),
        None,
        slices("pnr", false).group(
            "IPv4",
            &ports,
            [
                endpoint("10.13.0.1", NODE, None, "ready", READY),
                endpoint("10.13.0.2", NODE, None, "unready", (false, false, false)),
                endpoint("10.13.0.3", NODE, None, "leaving", (false, true, true)),
            ],
        ),
    );
    s.converge("pnr", Some(&expected)).await?;
    s.finish(&["pnr"]).await
}

/// A Service created with an empty selector (`{}`), and an ExternalName Service with a
/// selector.
pub async fn empty_selector_and_external_name(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "empty-selector-node";
    let s = Scenario::start(&planes, "empty-selector").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("x", "x", NODE, ("http", 8080)),
                running("10.14.0.1", true),
            ),
            (
                PodTemplate::new("unlabelled", NODE).port("http", 8080, "TCP"),
                running("10.14.0.2", true),
            ),
        ])
        .await?;
        side.create_service(service("everything", &[], &[("http", 80, "TCP", "http")]))
            .await?;
        let mut external = service("outside", &[("app", "x")], &[("http", 80, "TCP", "80")]);
        external["spec"]["type"] = json!("ExternalName");
        external["spec"]["externalName"] = json!("example.com");
        side.create_service(external).await?;
        Ok(())
    })
    .await?;
    // The apiserver does not keep an empty selector (it is omitted like an absent one), so
    // the Service is selectorless and gets nothing, from either controller.
    let nothing = published(None, None, Default::default());
    s.converge("everything", Some(&nothing)).await?;
    s.converge("outside", Some(&nothing)).await?;
    s.finish(&["everything", "outside"]).await
}

/// A named targetPort found on a sidecar (an init container with `restartPolicy: Always`) and
/// not on a plain init container.
pub async fn sidecar_named_port(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "sidecar-node";
    let s = Scenario::start(&planes, "sidecar-port").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        for (name, ip, restart_policy) in [
            ("with-sidecar", "10.15.0.1", Some("Always")),
            ("with-init", "10.15.0.2", None),
        ] {
            let mut init = json!({
                "name": "proxy",
                "image": "registry.invalid/proxy:1",
                "ports": [{ "name": "proxy", "containerPort": 15001, "protocol": "TCP" }],
            });
            if let Some(policy) = restart_policy {
                init["restartPolicy"] = json!(policy);
            }
            let manifest = json!({
                "metadata": { "name": name, "labels": { "app": "mesh" } },
                "spec": {
                    "nodeName": NODE,
                    "initContainers": [init],
                    "containers": [{
                        "name": "app",
                        "image": "registry.invalid/app:1",
                        "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                    }],
                },
            });
            side.start_pod_manifest(manifest, &running(ip, true))
                .await?;
        }
        side.create_service(service(
            "mesh",
            &[("app", "mesh")],
            &[
                ("http", 80, "TCP", "http"),
                ("proxy", 15001, "TCP", "proxy"),
            ],
        ))
        .await?;
        Ok(())
    })
    .await?;
    let both = [("http", 8080, "TCP"), ("proxy", 15001, "TCP")];
    let http = [("http", 8080, "TCP")];
    // Endpoints group ports by the addresses behind them: http has both pods, proxy one.
    let expected = published(
        Some(endpoints(
            [
                subset(&http)
                    .ready(address("10.15.0.1", NODE, "with-sidecar"))
                    .ready(address("10.15.0.2", NODE, "with-init")),
                subset(&[("proxy", 15001, "TCP")]).ready(address(
                    "10.15.0.1",
                    NODE,
                    "with-sidecar",
                )),
            ],
            &[],
        )),
        None,
        slices("mesh", false)
            .group(
                "IPv4",
                &both,
                [endpoint("10.15.0.1", NODE, None, "with-sidecar", READY)],
            )
            .group(
                "IPv4",
                &http,
                [endpoint("10.15.0.2", NODE, None, "with-init", READY)],
            ),
    );
    s.converge("mesh", Some(&expected)).await?;
    s.finish(&["mesh"]).await
}

/// Two pods reporting the same IP (host networking): both are listed, told apart by UID.
pub async fn pods_sharing_an_ip(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "shared-ip-node";
    let s = Scenario::start(&planes, "shared-ip").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("h1", "h", NODE, ("http", 8080)),
                running("192.168.50.1", true),
            ),
            (
                pod("h2", "h", NODE, ("http", 8080)),
                running("192.168.50.1", false),
            ),
        ])
        .await?;
        side.create_service(service(
            "h",
            &[("app", "h")],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    let http = [("http", 8080, "TCP")];
    let expected = published(
        Some(endpoints(
            [subset(&http)
                .ready(address("192.168.50.1", NODE, "h1"))
                .not_ready(address("192.168.50.1", NODE, "h2"))],
            &[],
        )),
        None,
        slices("h", false).group(
            "IPv4",
            &http,
            [
                endpoint("192.168.50.1", NODE, None, "h1", READY),
                endpoint("192.168.50.1", NODE, None, "h2", (false, false, false)),
            ],
        ),
    );
    s.converge("h", Some(&expected)).await?;
    s.finish(&["h"]).await
}

/// Pod phases: a pending pod without IP is left out until it has one; pods that succeeded or
/// failed are removed.
pub async fn pod_phases(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "phases-node";
    let s = Scenario::start(&planes, "pod-phases").await?;
    let pending = || PodState {
        ips: Vec::new(),
        ready: false,
        phase: "Pending",
    };
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (pod("pending", "ph", NODE, ("http", 8080)), pending()),
            (
                pod("done", "ph", NODE, ("http", 8080)),
                running("10.16.0.2", true),
            ),
            (
                pod("broken", "ph", NODE, ("http", 8080)),
                running("10.16.0.3", true),
            ),
        ])
        .await?;
        side.create_service(service(
            "ph",
            &[("app", "ph")],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    s.converge("ph", None).await?;

    s.each(|side| async move {
        side.set_pod("pending", &running("10.16.0.1", true)).await?;
        let finished = |ip: &str, phase| PodState {
            ips: vec![ip.to_string()],
            ready: false,
            phase,
        };
        side.set_pod("done", &finished("10.16.0.2", "Succeeded"))
            .await?;
        side.set_pod("broken", &finished("10.16.0.3", "Failed"))
            .await?;
        Ok(())
    })
    .await?;
    let http = [("http", 8080, "TCP")];
    let expected = published(
        Some(endpoints(
            [subset(&http).ready(address("10.16.0.1", NODE, "pending"))],
            &[],
        )),
        None,
        slices("ph", false).group(
            "IPv4",
            &http,
            [endpoint("10.16.0.1", NODE, None, "pending", READY)],
        ),
    );
    s.converge("ph", Some(&expected)).await?;
    s.finish(&["ph"]).await
}

/// An IPv4 Service over a pod that has only an IPv6 address: it has nothing to offer.
pub async fn address_family_mismatch(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "family-node";
    let s = Scenario::start(&planes, "family-mismatch").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("v4", "fam", NODE, ("http", 8080)),
                running("10.17.0.1", true),
            ),
            (
                pod("v6", "fam", NODE, ("http", 8080)),
                running("fd00:17::1", true),
            ),
        ])
        .await?;
        let mut manifest = service("fam", &[("app", "fam")], &[("http", 80, "TCP", "http")]);
        manifest["spec"]["ipFamilies"] = json!(["IPv4"]);
        side.create_service(manifest).await?;
        Ok(())
    })
    .await?;
    let http = [("http", 8080, "TCP")];
    let expected = published(
        Some(endpoints(
            [subset(&http).ready(address("10.17.0.1", NODE, "v4"))],
            &[],
        )),
        None,
        slices("fam", false).group(
            "IPv4",
            &http,
            [endpoint("10.17.0.1", NODE, None, "v4", READY)],
        ),
    );
    s.converge("fam", Some(&expected)).await?;
    s.finish(&["fam"]).await
}

/// publishNotReadyAddresses publishes a pod whose Node is missing anyway (without a zone).
pub async fn publish_not_ready_on_missing_node(planes: Arc<Planes>) -> Result<()> {
    const MISSING: &str = "pnr-missing-node";
    let s = Scenario::start(&planes, "pnr-missing-node").await?;
    s.each(|side| async move {
        side.start_pods(&[(
            pod("lost", "lost", MISSING, ("http", 8080)),
            running("10.18.0.1", false),
        )])
        .await?;
        let mut manifest = service("lost", &[("app", "lost")], &[("http", 80, "TCP", "http")]);
        manifest["spec"]["publishNotReadyAddresses"] = json!(true);
        side.create_service(manifest).await?;
        Ok(())
    })
    .await?;
    let http = [("http", 8080, "TCP")];
    let expected = published(
        Some(endpoints(
            [subset(&http).ready(address("10.18.0.1", MISSING, "lost"))],
            &[],
        )),
        None,
        slices("lost", false).group(
            "IPv4",
            &http,
            [endpoint(
                "10.18.0.1",
                MISSING,
                None,
                "lost",
                (true, false, false),
            )],
        ),
    );
    s.converge("lost", Some(&expected)).await?;
    s.finish(&["lost"]).await
}

/// Pods' IPs change family sets under single-stack IPv4, single-stack IPv6, PreferDualStack
/// and headless Services: one pod gains an IPv6 address, one reports its two addresses in
/// the other order (IPv6 primary), one loses its IPv6 address.
pub async fn pod_ip_families_change(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "families-node";
    const ZONE: Option<&str> = Some("zone-f");
    let s = Scenario::start(&planes, "pod-ip-families").await?;
    s.each(|side| async move {
        side.node(NODE, ZONE).await?;
        side.start_pods(&[
            (
                pod("grows", "fam", NODE, ("http", 8080)),
                with_ips(&["10.33.0.1"], true),
            ),
            (
                pod("swaps", "fam", NODE, ("http", 8080)),
                with_ips(&["10.33.0.2", "fd00:33::2"], true),
            ),
            (
                pod("shrinks", "fam", NODE, ("http", 8080)),
                with_ips(&["10.33.0.3", "fd00:33::3"], true),
            ),
        ])
        .await?;
        let ports = [("http", 80, "TCP", "http")];
        let mut v6 = service("v6", &[("app", "fam")], &ports);
        v6["spec"]["ipFamilies"] = json!(["IPv6"]);
        let mut both = service("both", &[("app", "fam")], &ports);
        both["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
        let mut headless = service("hl", &[("app", "fam")], &ports);
        headless["spec"]["clusterIP"] = json!("None");
        for manifest in [service("v4", &[("app", "fam")], &ports), v6, both, headless] {
            side.create_service(manifest).await?;
        }
        Ok(())
    })
    .await?;
    const SERVICES: [&str; 4] = ["v4", "v6", "both", "hl"];
    for name in SERVICES {
        s.converge(name, None).await?;
    }

    s.each(|side| async move {
        side.set_pod("grows", &with_ips(&["10.33.0.1", "fd00:33::1"], true))
            .await?;
        side.set_pod("swaps", &with_ips(&["fd00:33::2", "10.33.0.2"], true))
            .await?;
        side.set_pod("shrinks", &with_ips(&["10.33.0.3"], true))
            .await
    })
    .await?;
    let http = [("http", 8080, "TCP")];
    let v4 = || {
        ["grows", "swaps", "shrinks"]
            .iter()
            .enumerate()
            .map(|(i, name)| endpoint(&format!("10.33.0.{}", i + 1), NODE, ZONE, name, READY))
    };
    let v6 = || {
        [("fd00:33::1", "grows"), ("fd00:33::2", "swaps")]
            .map(|(ip, name)| endpoint(ip, NODE, ZONE, name, READY))
    };
    let v4_addresses = (1..=3)
        .zip(["grows", "swaps", "shrinks"])
        .fold(subset(&http), |s, (i, name)| {
            s.ready(address(&format!("10.33.0.{i}"), NODE, name))
        });
    let both = published(
        Some(endpoints([v4_addresses], &[])),
        None,
        slices("both", false)
            .group("IPv4", &http, v4())
            .group("IPv6", &http, v6()),
    );
    s.converge("both", Some(&both)).await?;
    let v6_only = published(
        Some(endpoints(
            [subset(&http)
                .ready(address("fd00:33::1", NODE, "grows"))
                .ready(address("fd00:33::2", NODE, "swaps"))],
            &[],
        )),
        None,
        slices("v6", false).group("IPv6", &http, v6()),
    );
    s.converge("v6", Some(&v6_only)).await?;
    for name in ["v4", "hl"] {
        s.converge(name, None).await?;
    }
    s.finish(&SERVICES).await
}
