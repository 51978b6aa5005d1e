//! Service shapes: headless with hostnames, named ports resolving per pod, dual-stack,
//! publishNotReadyAddresses.

use std::sync::Arc;

use anyhow::Result;
use e2e::kubelet::{self, PodTemplate};
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
