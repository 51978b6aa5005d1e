//! Selectorless Services whose user-written Endpoints are mirrored into EndpointSlices, by the
//! in-tree mirroring controller on one plane and svcplane's on the other.

use std::sync::Arc;

use anyhow::{Context, Result};
use e2e::view::{ServiceSlicesView, SliceEndpointView};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::expect::SERVICE_NAME_LABEL;
use crate::harness::{MirroredView, Planes, Scenario, Side};

/// A selectorless Service with these ports (name, port, protocol).
fn selectorless(name: &str, ports: &[(&str, i32, &str)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({ "name": n, "port": p, "protocol": proto }))
        .collect();
    json!({ "metadata": { "name": name }, "spec": { "ports": ports } })
}

/// A subset: ports (name, port, protocol), ready IPs, not-ready IPs.
fn subset(ports: &[(&str, i32, &str)], ready: &[&str], not_ready: &[&str]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({ "name": n, "port": p, "protocol": proto }))
        .collect();
    let addresses =
        |ips: &[&str]| -> Vec<Value> { ips.iter().map(|ip| json!({ "ip": ip })).collect() };
    json!({ "ports": ports, "addresses": addresses(ready), "notReadyAddresses": addresses(not_ready) })
}

fn endpoints_manifest(name: &str, labels: Value, annotations: Value, subsets: Vec<Value>) -> Value {
    json!({
        "metadata": { "name": name, "labels": labels, "annotations": annotations },
        "subsets": subsets,
    })
}

async fn create_endpoints(side: &Side, manifest: Value) -> Result<()> {
    let endpoints: Endpoints = serde_json::from_value(manifest)?;
    side.api::<Endpoints>()
        .create(&PostParams::default(), &endpoints)
        .await
        .with_context(|| format!("creating Endpoints on {}", side.label))?;
    Ok(())
}

fn mirrored_endpoint(ip: &str, ready: bool) -> SliceEndpointView {
    SliceEndpointView {
        addresses: vec![ip.to_string()],
        ready: Some(ready),
        serving: None,
        terminating: None,
        node: None,
        zone: None,
        hostname: None,
        target: None,
        hints: Vec::new(),
    }
}

/// One expected mirrored slice: address type, ports, endpoints.
type MirroredGroup<'a> = (
    &'a str,
    &'a [(&'a str, i32, &'a str)],
    Vec<SliceEndpointView>,
);

/// The expected mirrored slices: (address type, ports, endpoints) each one slice, all with
/// `labels` (the service-name label added) and `annotations`.
fn mirrored(
    service: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    groups: Vec<MirroredGroup<'_>>,
) -> MirroredView {
    let count = groups.len();
    let slice_endpoints = groups.iter().map(|g| g.2.len()).sum();
    let mut all_labels = labels.to_vec();
    all_labels.push((SERVICE_NAME_LABEL, service));
    let mut slices = ServiceSlicesView::default();
    if count > 0 {
        slices = slices.labels(&all_labels);
    }
    for (address_type, ports, endpoints) in groups {
        slices = slices.group(address_type, ports, endpoints);
    }
    let annotations: Vec<(String, String)> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    MirroredView {
        slices,
        annotations: (0..count.min(1)).map(|_| annotations.clone()).collect(),
        count,
        slice_endpoints,
    }
}

const HTTP: [(&str, i32, &str); 1] = [("http", 80, "TCP")];

/// The seed's `service-without-selector`: a user-written Endpoints pointing at 172.67.185.241
/// is mirrored into one slice (labels and annotations copied, the trigger time and kubectl's
/// copy left out); a not-ready address added; the Endpoints deleted takes the slice along.
pub async fn seed_external_endpoints(planes: Arc<Planes>) -> Result<()> {
    const NAME: &str = "service-without-selector";
    let s = Scenario::start(&planes, "mirror-seed").await?;
    s.each(|side| async move {
        side.create_service(selectorless(NAME, &HTTP)).await?;
        create_endpoints(
            &side,
            endpoints_manifest(
                NAME,
                json!({ "app": "external" }),
                json!({
                    "note": "outside the cluster",
                    "endpoints.kubernetes.io/last-change-trigger-time": "2024-01-01T00:00:00Z",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                }),
                vec![subset(&HTTP, &["172.67.185.241"], &[])],
            ),
        )
        .await
    })
    .await?;
    s.user_wrote(1);
    let labels = [("app", "external")];
    let annotations = [("note", "outside the cluster")];
    let one = mirrored(
        NAME,
        &labels,
        &annotations,
        vec![(
            "IPv4",
            &HTTP,
            vec![mirrored_endpoint("172.67.185.241", true)],
        )],
    );
    s.converge_mirrored(NAME, Some(&one)).await?;
    // No Endpoints or slices from the pod-driven controllers.
    s.converge(NAME, None).await?;

    s.each(|side| async move {
        side.merge_patch::<Endpoints>(
            NAME,
            json!({ "subsets": [subset(&HTTP, &["172.67.185.241"], &["172.67.185.242"])] }),
        )
        .await
    })
    .await?;
    s.user_wrote(1);
    let two = mirrored(
        NAME,
        &labels,
        &annotations,
        vec![(
            "IPv4",
            &HTTP,
            vec![
                mirrored_endpoint("172.67.185.241", true),
                mirrored_endpoint("172.67.185.242", false),
            ],
        )],
    );
    s.converge_mirrored(NAME, Some(&two)).await?;

    s.each(|side| async move {
        side.api::<Endpoints>()
            .delete(NAME, &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await?;
    s.user_wrote(1);
    s.converge_mirrored(NAME, Some(&MirroredView::default()))
        .await?;
    s.finish(&[NAME]).await
}

/// Dual-stack Endpoints with two port lists: one slice per address type and port list.
pub async fn dual_stack_endpoints(planes: Arc<Planes>) -> Result<()> {
    const NAME: &str = "dual";
    const DNS: [(&str, i32, &str); 1] = [("dns", 53, "UDP")];
    let s = Scenario::start(&planes, "mirror-dual-stack").await?;
    s.each(|side| async move {
        side.create_service(selectorless(
            NAME,
            &[("http", 80, "TCP"), ("dns", 53, "UDP")],
        ))
        .await?;
        create_endpoints(
            &side,
            endpoints_manifest(
                NAME,
                json!({}),
                json!({}),
                vec![
                    subset(&HTTP, &["10.60.0.1", "fd00:60::1"], &["10.60.0.3"]),
                    subset(&DNS, &["10.60.0.2", "fd00:60::2"], &[]),
                ],
            ),
        )
        .await
    })
    .await?;
    s.user_wrote(1);
    let expected = mirrored(
        NAME,
        &[],
        &[],
        vec![
            (
                "IPv4",
                &HTTP,
                vec![
                    mirrored_endpoint("10.60.0.1", true),
                    mirrored_endpoint("10.60.0.3", false),
                ],
            ),
            ("IPv6", &HTTP, vec![mirrored_endpoint("fd00:60::1", true)]),
            ("IPv4", &DNS, vec![mirrored_endpoint("10.60.0.2", true)]),
            ("IPv6", &DNS, vec![mirrored_endpoint("fd00:60::2", true)]),
        ],
    );
    s.converge_mirrored(NAME, Some(&expected)).await?;
    s.finish(&[NAME]).await
}

/// `endpointslice.kubernetes.io/skip-mirror: "true"` keeps the Endpoints from being mirrored;
/// removing the label mirrors it, setting it again deletes the mirrored slice.
pub async fn skip_mirror_label(planes: Arc<Planes>) -> Result<()> {
    const NAME: &str = "skipped";
    const SKIP: &str = "endpointslice.kubernetes.io/skip-mirror";
    let s = Scenario::start(&planes, "mirror-skip").await?;
    s.each(|side| async move {
        side.create_service(selectorless(NAME, &HTTP)).await?;
        create_endpoints(
            &side,
            endpoints_manifest(
                NAME,
                json!({ SKIP: "true" }),
                json!({}),
                vec![subset(&HTTP, &["10.62.0.1"], &[])],
            ),
        )
        .await
    })
    .await?;
    s.user_wrote(1);
    s.converge_mirrored(NAME, Some(&MirroredView::default()))
        .await?;

    s.each(|side| async move {
        side.merge_patch::<Endpoints>(NAME, json!({ "metadata": { "labels": { SKIP: null } } }))
            .await
    })
    .await?;
    s.user_wrote(1);
    let one = mirrored(
        NAME,
        &[],
        &[],
        vec![("IPv4", &HTTP, vec![mirrored_endpoint("10.62.0.1", true)])],
    );
    s.converge_mirrored(NAME, Some(&one)).await?;

    s.each(|side| async move {
        side.merge_patch::<Endpoints>(NAME, json!({ "metadata": { "labels": { SKIP: "true" } } }))
            .await
    })
    .await?;
    s.user_wrote(1);
    s.converge_mirrored(NAME, Some(&MirroredView::default()))
        .await?;
    s.finish(&[NAME]).await
}

/// A subset with an address the apiserver accepts in an Endpoints object but that is not a
/// canonical IP (`010.63.0.2`, a leading zero): how each controller mirrors it. Compared
/// between the planes only.
pub async fn odd_ip_address(planes: Arc<Planes>) -> Result<()> {
    const NAME: &str = "odd-ip";
    let s = Scenario::start(&planes, "mirror-odd-ip").await?;
    let (reference, ours) = s
        .each(|side| async move {
            side.create_service(selectorless(NAME, &HTTP)).await?;
            let created = create_endpoints(
                &side,
                endpoints_manifest(
                    NAME,
                    json!({}),
                    json!({}),
                    vec![subset(&HTTP, &["10.63.0.1", "010.63.0.2"], &[])],
                ),
            )
            .await;
            Ok(created.map_err(|e| match e.downcast_ref::<kube::Error>() {
                Some(kube::Error::Api(status)) => status.message.clone(),
                _ => format!("{e:#}"),
            }))
        })
        .await?;
    if let (Err(a), Err(b)) = (&reference, &ours) {
        println!(
            "  mirror-odd-ip: the apiserver refuses the address on both planes ({a}; {b}); mirroring a valid subset instead"
        );
        s.each(|side| async move {
            create_endpoints(
                &side,
                endpoints_manifest(
                    NAME,
                    json!({}),
                    json!({}),
                    vec![subset(&HTTP, &["10.63.0.1"], &[])],
                ),
            )
            .await
        })
        .await?;
    }
    s.user_wrote(1);
    s.converge_mirrored(NAME, None).await?;
    let (reference_view, our_view) = s
        .each(|side| async move { Ok(side.mirrored(NAME).await?.0) })
        .await?;
    println!(
        "  mirror-odd-ip: in-tree mirrors {:?}; svcplane {:?}",
        reference_view.slices.groups.values().collect::<Vec<_>>(),
        our_view.slices.groups.values().collect::<Vec<_>>()
    );
    s.finish(&[NAME]).await
}

/// A selector added to the Service: mirroring no longer applies and the mirrored slice is
/// deleted; the pod-driven controllers take over the Endpoints object.
pub async fn selector_added(planes: Arc<Planes>) -> Result<()> {
    const NAME: &str = "gains-selector";
    let s = Scenario::start(&planes, "mirror-selector-added").await?;
    s.each(|side| async move {
        side.create_service(selectorless(NAME, &HTTP)).await?;
        create_endpoints(
            &side,
            endpoints_manifest(
                NAME,
                json!({}),
                json!({}),
                vec![subset(&HTTP, &["10.64.0.1"], &[])],
            ),
        )
        .await
    })
    .await?;
    s.user_wrote(1);
    let one = mirrored(
        NAME,
        &[],
        &[],
        vec![("IPv4", &HTTP, vec![mirrored_endpoint("10.64.0.1", true)])],
    );
    s.converge_mirrored(NAME, Some(&one)).await?;

    s.each(|side| async move {
        side.merge_patch::<Service>(NAME, json!({ "spec": { "selector": { "app": "nobody" } } }))
            .await
    })
    .await?;
    s.converge_mirrored(NAME, Some(&MirroredView::default()))
        .await?;
    s.converge(NAME, None).await?;
    s.finish(&[NAME]).await
}
