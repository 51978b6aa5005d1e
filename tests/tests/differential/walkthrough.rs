//! The seed walkthrough: a Service selecting nginx pods as they appear and become ready, then
//! publishing not-ready addresses.

use std::sync::Arc;

use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use crate::expect::*;
use crate::harness::{Planes, Scenario};

const NODE: &str = "walkthrough-node";
const ZONE: &str = "zone-a";
const SERVICE: &str = "nginx-basic";
const FIRST: (&str, &str) = ("nginx-deployment-1", "192.168.185.14");
const SECOND: (&str, &str) = ("nginx-deployment-2", "192.168.185.15");

fn nginx((name, _): (&str, &str)) -> e2e::kubelet::PodTemplate {
    pod(name, "nginx", NODE, ("http", 80))
}

/// A pod (name, IP) and its slice conditions (ready, serving, terminating).
type SliceEntry<'a> = ((&'a str, &'a str), (bool, bool, bool));

fn expected(
    ready: &[(&str, &str)],
    not_ready: &[(&str, &str)],
    slices_of: &[SliceEntry<'_>],
) -> e2e::view::PublishedView {
    let mut http = subset(&[("http", 80, "TCP")]);
    for (name, ip) in ready {
        http = http.ready(address(ip, NODE, name));
    }
    for (name, ip) in not_ready {
        http = http.not_ready(address(ip, NODE, name));
    }
    let endpoints_of_slices = slices_of
        .iter()
        .map(|((name, ip), conditions)| endpoint(ip, NODE, Some(ZONE), name, *conditions));
    published(
        Some(endpoints([http], &[])),
        None,
        slices(SERVICE, false).group("IPv4", &[("http", 80, "TCP")], endpoints_of_slices),
    )
}

pub async fn walkthrough(planes: Arc<Planes>) -> Result<()> {
    let s = Scenario::start(&planes, "walkthrough").await?;
    s.each(|side| async move { side.node(NODE, Some(ZONE)).await })
        .await?;

    // 1. One replica whose readiness probe fails; 2. the Service.
    s.each(|side| async move {
        side.start_pods(&[(nginx(FIRST), running(FIRST.1, false))])
            .await
    })
    .await?;
    s.each(|side| async move {
        side.create_service(service(
            SERVICE,
            &[("app", "nginx")],
            &[("http", 80, "TCP", "80")],
        ))
        .await
    })
    .await?;
    let not_ready = (false, false, false);
    let ready = (true, true, false);
    s.converge(
        SERVICE,
        Some(&expected(&[], &[FIRST], &[(FIRST, not_ready)])),
    )
    .await?;

    // 3. A second replica, not ready either.
    s.each(|side| async move {
        side.start_pods(&[(nginx(SECOND), running(SECOND.1, false))])
            .await
    })
    .await?;
    s.converge(
        SERVICE,
        Some(&expected(
            &[],
            &[FIRST, SECOND],
            &[(FIRST, not_ready), (SECOND, not_ready)],
        )),
    )
    .await?;

    // 4. The first becomes ready.
    s.each(|side| async move { side.set_pod(FIRST.0, &running(FIRST.1, true)).await })
        .await?;
    s.converge(
        SERVICE,
        Some(&expected(
            &[FIRST],
            &[SECOND],
            &[(FIRST, ready), (SECOND, not_ready)],
        )),
    )
    .await?;

    // 5. publishNotReadyAddresses lists both as ready; serving still tells them apart.
    s.each(|side| async move {
        side.merge_patch::<Service>(
            SERVICE,
            json!({ "spec": { "publishNotReadyAddresses": true } }),
        )
        .await
    })
    .await?;
    s.converge(
        SERVICE,
        Some(&expected(
            &[FIRST, SECOND],
            &[],
            &[(FIRST, ready), (SECOND, (true, false, false))],
        )),
    )
    .await?;
    s.finish(&[SERVICE]).await
}
