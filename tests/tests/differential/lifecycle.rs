//! Changes over time: terminating pods, a pod IP change, labels moving a pod between
//! Services, a selector change, a deleted Service, pods on a Node that does not exist yet.

use std::sync::Arc;

use anyhow::Result;
use e2e::kubelet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::expect::*;
use crate::harness::{Planes, Scenario};

const READY: (bool, bool, bool) = (true, true, false);
const HTTP: [(&str, i32, &str); 1] = [("http", 8080, "TCP")];

fn web_service(name: &str, app: &str) -> serde_json::Value {
    service(name, &[("app", app)], &[("http", 80, "TCP", "http")])
}

/// A ready pod is deleted gracefully (it stays terminating, there is no kubelet), then turns
/// not ready, then is removed.
pub async fn terminating_pods(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "terminating-node";
    let s = Scenario::start(&planes, "terminating").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("stays", "t", NODE, ("http", 8080)),
                running("10.20.0.1", true),
            ),
            (
                pod("goes", "t", NODE, ("http", 8080)),
                running("10.20.0.2", true),
            ),
        ])
        .await?;
        side.create_service(web_service("t", "t")).await?;
        Ok(())
    })
    .await?;
    let stays = address("10.20.0.1", NODE, "stays");
    s.converge("t", None).await?;

    s.each(|side| async move { kubelet::terminate_pod(&side.api::<Pod>(), "goes").await })
        .await?;
    let expected = |goes: Option<(bool, bool, bool)>| {
        let mut group = vec![endpoint("10.20.0.1", NODE, None, "stays", READY)];
        group.extend(goes.map(|c| endpoint("10.20.0.2", NODE, None, "goes", c)));
        published(
            Some(endpoints([subset(&HTTP).ready(stays.clone())], &[])),
            None,
            slices("t", false).group("IPv4", &HTTP, group),
        )
    };
    s.converge("t", Some(&expected(Some((false, true, true)))))
        .await?;

    s.each(|side| async move { side.set_pod("goes", &running("10.20.0.2", false)).await })
        .await?;
    s.converge("t", Some(&expected(Some((false, false, true)))))
        .await?;

    s.each(|side| async move { kubelet::force_delete_pod(&side.api::<Pod>(), "goes").await })
        .await?;
    s.converge("t", Some(&expected(None))).await?;
    s.finish(&["t"]).await
}

/// The kubelet reports a different IP for a pod.
pub async fn pod_ip_change(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "ip-node";
    let s = Scenario::start(&planes, "pod-ip-change").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("a", "ip", NODE, ("http", 8080)),
                running("10.21.0.1", true),
            ),
            (
                pod("b", "ip", NODE, ("http", 8080)),
                running("10.21.0.2", true),
            ),
        ])
        .await?;
        side.create_service(web_service("ip", "ip")).await?;
        Ok(())
    })
    .await?;
    s.converge("ip", None).await?;
    s.each(|side| async move { side.set_pod("b", &running("10.21.0.99", true)).await })
        .await?;
    let expected = published(
        Some(endpoints(
            [subset(&HTTP)
                .ready(address("10.21.0.1", NODE, "a"))
                .ready(address("10.21.0.99", NODE, "b"))],
            &[],
        )),
        None,
        slices("ip", false).group(
            "IPv4",
            &HTTP,
            [
                endpoint("10.21.0.1", NODE, None, "a", READY),
                endpoint("10.21.0.99", NODE, None, "b", READY),
            ],
        ),
    );
    s.converge("ip", Some(&expected)).await?;
    s.finish(&["ip"]).await
}

/// Relabelling a pod moves it from one Service to another.
pub async fn label_change_moves_pod(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "label-node";
    let s = Scenario::start(&planes, "label-move").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("p1", "left", NODE, ("http", 8080)),
                running("10.22.0.1", true),
            ),
            (
                pod("p2", "right", NODE, ("http", 8080)),
                running("10.22.0.2", true),
            ),
        ])
        .await?;
        side.create_service(web_service("left", "left")).await?;
        side.create_service(web_service("right", "right")).await?;
        Ok(())
    })
    .await?;
    s.converge("left", None).await?;
    s.converge("right", None).await?;

    s.each(|side| async move {
        side.merge_patch::<Pod>(
            "p1",
            json!({ "metadata": { "labels": { "app": "right" } } }),
        )
        .await
    })
    .await?;
    let left = published(
        Some(endpoints([], &[])),
        None,
        slices("left", false).group("IPv4", &[], []),
    );
    s.converge("left", Some(&left)).await?;
    let right = published(
        Some(endpoints(
            [subset(&HTTP)
                .ready(address("10.22.0.1", NODE, "p1"))
                .ready(address("10.22.0.2", NODE, "p2"))],
            &[],
        )),
        None,
        slices("right", false).group(
            "IPv4",
            &HTTP,
            [
                endpoint("10.22.0.1", NODE, None, "p1", READY),
                endpoint("10.22.0.2", NODE, None, "p2", READY),
            ],
        ),
    );
    s.converge("right", Some(&right)).await?;
    s.finish(&["left", "right"]).await
}

/// The Service's selector changes to other pods, then is removed (the Service becomes
/// selectorless: what was published stays, for users and the mirroring controller).
pub async fn selector_change(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "selector-node";
    let s = Scenario::start(&planes, "selector-change").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[
            (
                pod("a1", "a", NODE, ("http", 8080)),
                running("10.23.0.1", true),
            ),
            (
                pod("a2", "a", NODE, ("http", 8080)),
                running("10.23.0.2", true),
            ),
            (
                pod("b1", "b", NODE, ("http", 8080)),
                running("10.23.0.3", true),
            ),
        ])
        .await?;
        side.create_service(web_service("sel", "a")).await?;
        Ok(())
    })
    .await?;
    s.converge("sel", None).await?;

    s.each(|side| async move {
        side.merge_patch::<Service>("sel", json!({ "spec": { "selector": { "app": "b" } } }))
            .await
    })
    .await?;
    let only_b = published(
        Some(endpoints(
            [subset(&HTTP).ready(address("10.23.0.3", NODE, "b1"))],
            &[],
        )),
        None,
        slices("sel", false).group(
            "IPv4",
            &HTTP,
            [endpoint("10.23.0.3", NODE, None, "b1", READY)],
        ),
    );
    s.converge("sel", Some(&only_b)).await?;

    s.each(|side| async move {
        side.merge_patch::<Service>("sel", json!({ "spec": { "selector": null } }))
            .await
    })
    .await?;
    // A pod change that would have mattered before must not change anything now.
    s.each(|side| async move { side.set_pod("b1", &running("10.23.0.3", false)).await })
        .await?;
    s.converge("sel", Some(&only_b)).await?;
    let (reference, ours) = s
        .each(|side| async move { Ok(side.slices("sel").await?.1) })
        .await?;
    println!(
        "  selector-change: mirrored slices of the now selectorless Service: in-tree {reference}, svcplane {ours} (svcplane does not mirror)"
    );
    s.finish(&["sel"]).await
}

/// Deleting the Service deletes its Endpoints; its slices are left to the garbage collector
/// (which these planes do not run, so they stay on both).
pub async fn service_deleted(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "deleted-node";
    let s = Scenario::start(&planes, "service-deleted").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[(
            pod("a", "gone", NODE, ("http", 8080)),
            running("10.24.0.1", true),
        )])
        .await?;
        side.create_service(web_service("gone", "gone")).await?;
        Ok(())
    })
    .await?;
    s.converge("gone", None).await?;
    s.each(|side| async move {
        side.api::<Service>()
            .delete("gone", &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await?;
    let expected = published(
        None,
        None,
        slices("gone", false).group(
            "IPv4",
            &HTTP,
            [endpoint("10.24.0.1", NODE, None, "a", READY)],
        ),
    );
    s.converge("gone", Some(&expected)).await?;
    s.finish(&["gone"]).await
}

/// Pods on a Node that does not exist: left out of the slices (kept in Endpoints) until the
/// Node appears.
pub async fn node_missing(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "present-node";
    const MISSING: &str = "missing-node";
    let s = Scenario::start(&planes, "node-missing").await?;
    s.each(|side| async move {
        let nodes: Api<Node> = Api::all(side.client.clone());
        if nodes.get_opt(MISSING).await?.is_some() {
            nodes.delete(MISSING, &DeleteParams::default()).await?;
        }
        side.node(NODE, Some("zone-p")).await?;
        side.start_pods(&[
            (
                pod("here", "nm", NODE, ("http", 8080)),
                running("10.25.0.1", true),
            ),
            (
                pod("nowhere", "nm", MISSING, ("http", 8080)),
                running("10.25.0.2", true),
            ),
        ])
        .await?;
        side.create_service(web_service("nm", "nm")).await?;
        Ok(())
    })
    .await?;
    let both = subset(&HTTP)
        .ready(address("10.25.0.1", NODE, "here"))
        .ready(address("10.25.0.2", MISSING, "nowhere"));
    let here = endpoint("10.25.0.1", NODE, Some("zone-p"), "here", READY);
    let without = published(
        Some(endpoints([both.clone()], &[])),
        None,
        slices("nm", false).group("IPv4", &HTTP, [here.clone()]),
    );
    s.converge("nm", Some(&without)).await?;

    s.each(|side| async move { side.node(MISSING, Some("zone-m")).await })
        .await?;
    let with = published(
        Some(endpoints([both], &[])),
        None,
        slices("nm", false).group(
            "IPv4",
            &HTTP,
            [
                here,
                endpoint("10.25.0.2", MISSING, Some("zone-m"), "nowhere", READY),
            ],
        ),
    );
    s.converge("nm", Some(&with)).await?;
    s.finish(&["nm"]).await
}

/// The Service's ports change: the target moves to a named port, then a port is added.
pub async fn service_ports_change(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "ports-change-node";
    let s = Scenario::start(&planes, "ports-change").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        let pods: Vec<_> = (1..=3)
            .map(|i| {
                let template =
                    pod(&format!("p{i}"), "pc", NODE, ("http", 8080)).port("metrics", 9090, "TCP");
                (template, running(&format!("10.26.0.{i}"), true))
            })
            .collect();
        side.start_pods(&pods).await?;
        side.create_service(service(
            "pc",
            &[("app", "pc")],
            &[("http", 80, "TCP", "8080")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    s.converge("pc", None).await?;

    s.each(|side| async move {
        side.merge_patch::<Service>(
            "pc",
            json!({ "spec": { "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": "metrics" }] } }),
        )
        .await
    })
    .await?;
    let group = |ports: &[(&str, i32, &str)]| {
        let subset = (1..=3).fold(subset(ports), |s, i| {
            s.ready(address(&format!("10.26.0.{i}"), NODE, &format!("p{i}")))
        });
        published(
            Some(endpoints([subset], &[])),
            None,
            slices("pc", false).group(
                "IPv4",
                ports,
                (1..=3).map(|i| {
                    endpoint(&format!("10.26.0.{i}"), NODE, None, &format!("p{i}"), READY)
                }),
            ),
        )
    };
    s.converge("pc", Some(&group(&[("http", 9090, "TCP")])))
        .await?;

    s.each(|side| async move {
        side.merge_patch::<Service>(
            "pc",
            json!({ "spec": { "ports": [
                { "name": "http", "port": 80, "protocol": "TCP", "targetPort": "metrics" },
                { "name": "web", "port": 8080, "protocol": "TCP", "targetPort": "http" },
            ] } }),
        )
        .await
    })
    .await?;
    s.converge(
        "pc",
        Some(&group(&[("http", 9090, "TCP"), ("web", 8080, "TCP")])),
    )
    .await?;
    s.finish(&["pc"]).await
}

/// The Service's labels change: Endpoints and slices follow.
pub async fn service_labels_change(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "labels-node";
    let s = Scenario::start(&planes, "service-labels").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[(
            pod("a", "sl", NODE, ("http", 8080)),
            running("10.27.0.1", true),
        )])
        .await?;
        let mut manifest = web_service("sl", "sl");
        manifest["metadata"]["labels"] = json!({ "team": "blue" });
        side.create_service(manifest).await?;
        Ok(())
    })
    .await?;
    s.converge("sl", None).await?;
    s.each(|side| async move {
        side.merge_patch::<Service>(
            "sl",
            json!({ "metadata": { "labels": { "team": "green", "tier": "web" } } }),
        )
        .await
    })
    .await?;
    let expected = published(
        Some(endpoints(
            [subset(&HTTP).ready(address("10.27.0.1", NODE, "a"))],
            &[("team", "green"), ("tier", "web")],
        )),
        None,
        slices("sl", false)
            .labels(&[
                (SERVICE_NAME_LABEL, "sl"),
                ("team", "green"),
                ("tier", "web"),
            ])
            .group(
                "IPv4",
                &HTTP,
                [endpoint("10.27.0.1", NODE, None, "a", READY)],
            ),
    );
    s.converge("sl", Some(&expected)).await?;
    s.finish(&["sl"]).await
}

/// Ten Services over the same twenty pods, five of which turn not ready.
pub async fn many_services_same_pods(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "many-services-node";
    const SERVICES: [&str; 10] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    let s = Scenario::start(&planes, "many-services").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        let pods: Vec<_> = (0..20)
            .map(|i| {
                (
                    pod(&format!("m{i}"), "shared", NODE, ("http", 8080)),
                    running(&format!("10.28.0.{}", i + 1), true),
                )
            })
            .collect();
        side.start_pods(&pods).await?;
        for name in SERVICES {
            side.create_service(web_service(name, "shared")).await?;
        }
        Ok(())
    })
    .await?;
    for name in SERVICES {
        s.converge(name, None).await?;
    }
    s.each(|side| async move {
        for i in 0..5 {
            side.set_pod(
                &format!("m{i}"),
                &running(&format!("10.28.0.{}", i + 1), false),
            )
            .await?;
        }
        Ok(())
    })
    .await?;
    for name in SERVICES {
        let ready = (5..20).fold(subset(&HTTP), |s, i| {
            s.ready(address(
                &format!("10.28.0.{}", i + 1),
                NODE,
                &format!("m{i}"),
            ))
        });
        let both = (0..5).fold(ready, |s, i| {
            s.not_ready(address(
                &format!("10.28.0.{}", i + 1),
                NODE,
                &format!("m{i}"),
            ))
        });
        let group = (0..20).map(|i| {
            let conditions = if i < 5 { (false, false, false) } else { READY };
            endpoint(
                &format!("10.28.0.{}", i + 1),
                NODE,
                None,
                &format!("m{i}"),
                conditions,
            )
        });
        let expected = published(
            Some(endpoints([both], &[])),
            None,
            slices(name, false).group("IPv4", &HTTP, group),
        );
        s.converge(name, Some(&expected)).await?;
    }
    s.finish(&SERVICES).await
}

/// A Node is deleted under its pods: nothing changes until their Service syncs for another
/// reason (as in-tree); then their slice endpoints go, and come back with the Node.
pub async fn node_deleted(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "doomed-node";
    let s = Scenario::start(&planes, "node-deleted").await?;
    s.each(|side| async move {
        side.node(NODE, Some("zone-x")).await?;
        side.start_pods(&[
            (
                pod("d1", "nd", NODE, ("http", 8080)),
                running("10.30.0.1", true),
            ),
            (
                pod("d2", "nd", NODE, ("http", 8080)),
                running("10.30.0.2", true),
            ),
        ])
        .await?;
        side.create_service(web_service("nd", "nd")).await?;
        Ok(())
    })
    .await?;
    let d1 = endpoint("10.30.0.1", NODE, Some("zone-x"), "d1", READY);
    let d2 = endpoint("10.30.0.2", NODE, Some("zone-x"), "d2", READY);
    let all_ready = published(
        Some(endpoints(
            [subset(&HTTP)
                .ready(address("10.30.0.1", NODE, "d1"))
                .ready(address("10.30.0.2", NODE, "d2"))],
            &[],
        )),
        None,
        slices("nd", false).group("IPv4", &HTTP, [d1.clone(), d2.clone()]),
    );
    s.converge("nd", Some(&all_ready)).await?;

    s.each(|side| async move {
        Api::<Node>::all(side.client.clone())
            .delete(NODE, &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await?;
    s.converge("nd", Some(&all_ready)).await?;

    s.each(|side| async move { side.set_pod("d1", &running("10.30.0.1", false)).await })
        .await?;
    let endpoints_now = endpoints(
        [subset(&HTTP)
            .not_ready(address("10.30.0.1", NODE, "d1"))
            .ready(address("10.30.0.2", NODE, "d2"))],
        &[],
    );
    let without_node = published(
        Some(endpoints_now.clone()),
        None,
        slices("nd", false).group("IPv4", &[], []),
    );
    s.converge("nd", Some(&without_node)).await?;

    s.each(|side| async move { side.node(NODE, Some("zone-x")).await })
        .await?;
    let mut d1_not_ready = d1;
    (d1_not_ready.ready, d1_not_ready.serving) = (Some(false), Some(false));
    let back = published(
        Some(endpoints_now),
        None,
        slices("nd", false).group("IPv4", &HTTP, [d1_not_ready, d2]),
    );
    s.converge("nd", Some(&back)).await?;
    s.finish(&["nd"]).await
}

/// A Service deleted and created again under the same name (a new UID): the old incarnation's
/// slices, left behind without a garbage collector, are replaced.
pub async fn service_recreated(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "recreated-node";
    let s = Scenario::start(&planes, "service-recreated").await?;
    s.each(|side| async move {
        side.node(NODE, None).await?;
        side.start_pods(&[(
            pod("r1", "re", NODE, ("http", 8080)),
            running("10.31.0.1", true),
        )])
        .await?;
        side.create_service(web_service("re", "re")).await?;
        Ok(())
    })
    .await?;
    s.converge("re", None).await?;
    s.each(|side| async move {
        side.api::<Service>()
            .delete("re", &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await?;
    let orphaned = published(
        None,
        None,
        slices("re", false).group(
            "IPv4",
            &HTTP,
            [endpoint("10.31.0.1", NODE, None, "r1", READY)],
        ),
    );
    s.converge("re", Some(&orphaned)).await?;

    s.each(|side| async move {
        side.create_service(service(
            "re",
            &[("app", "re")],
            &[("http", 80, "TCP", "9090")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    let renewed = published(
        Some(endpoints(
            [subset(&[("http", 9090, "TCP")]).ready(address("10.31.0.1", NODE, "r1"))],
            &[],
        )),
        None,
        slices("re", false).group(
            "IPv4",
            &[("http", 9090, "TCP")],
            [endpoint("10.31.0.1", NODE, None, "r1", READY)],
        ),
    );
    // The convergence check also requires every slice to belong to the new Service.
    s.converge("re", Some(&renewed)).await?;
    s.finish(&["re"]).await
}

/// Ten pods flap readiness three times in quick succession and end ready.
pub async fn readiness_flapping(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "flapping-node";
    let s = Scenario::start(&planes, "readiness-flapping").await?;
    let ip = |i: usize| format!("10.32.0.{}", i + 1);
    s.each(|side| async move {
        side.node(NODE, None).await?;
        let pods: Vec<_> = (0..10)
            .map(|i| {
                (
                    pod(&format!("f{i}"), "flap", NODE, ("http", 8080)),
                    running(&ip(i), true),
                )
            })
            .collect();
        side.start_pods(&pods).await?;
        side.create_service(web_service("flap", "flap")).await?;
        Ok(())
    })
    .await?;
    s.converge("flap", None).await?;
    s.each(|side| async move {
        for ready in [false, true, false, true] {
            for i in 0..10 {
                side.set_pod(&format!("f{i}"), &running(&ip(i), ready))
                    .await?;
            }
        }
        Ok(())
    })
    .await?;
    let expected = published(
        Some(endpoints(
            [(0..10).fold(subset(&HTTP), |s, i| {
                s.ready(address(&ip(i), NODE, &format!("f{i}")))
            })],
            &[],
        )),
        None,
        slices("flap", false).group(
            "IPv4",
            &HTTP,
            (0..10).map(|i| endpoint(&ip(i), NODE, None, &format!("f{i}"), READY)),
        ),
    );
    s.converge("flap", Some(&expected)).await?;
    s.finish(&["flap"]).await
}
