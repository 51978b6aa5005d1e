//! Someone else touches what the controllers own: both must put it back.

use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::expect::*;
use crate::harness::{Planes, Scenario, Side};

const READY: (bool, bool, bool) = (true, true, false);
const HTTP: [(&str, i32, &str); 1] = [("http", 8080, "TCP")];

async fn setup(s: &Scenario, node: &'static str, ip_prefix: &'static str) -> Result<()> {
    s.each(|side| async move {
        side.node(node, None).await?;
        side.start_pods(&[
            (
                pod("a", "t", node, ("http", 8080)),
                running(&format!("{ip_prefix}.1"), true),
            ),
            (
                pod("b", "t", node, ("http", 8080)),
                running(&format!("{ip_prefix}.2"), true),
            ),
        ])
        .await?;
        side.create_service(service(
            "t",
            &[("app", "t")],
            &[("http", 80, "TCP", "http")],
        ))
        .await?;
        Ok(())
    })
    .await?;
    Ok(())
}

fn expected(node: &str, ip_prefix: &str) -> e2e::view::PublishedView {
    let (a, b) = (format!("{ip_prefix}.1"), format!("{ip_prefix}.2"));
    published(
        Some(endpoints(
            [subset(&HTTP)
                .ready(address(&a, node, "a"))
                .ready(address(&b, node, "b"))],
            &[],
        )),
        None,
        slices("t", false).group(
            "IPv4",
            &HTTP,
            [
                endpoint(&a, node, None, "a", READY),
                endpoint(&b, node, None, "b", READY),
            ],
        ),
    )
}

async fn only_slice(side: &Side) -> Result<String> {
    let (slices, _) = side.slices("t").await?;
    slices
        .first()
        .and_then(|s| s.metadata.name.clone())
        .with_context(|| format!("no slice of t on {}", side.label))
}

/// A user deletes the Endpoints object of a Service with a selector: it comes back.
pub async fn endpoints_deleted_by_user(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "tamper-ep-node";
    let s = Scenario::start(&planes, "endpoints-deleted").await?;
    setup(&s, NODE, "10.40.0").await?;
    let want = expected(NODE, "10.40.0");
    s.converge("t", Some(&want)).await?;
    s.each(|side| async move {
        side.api::<Endpoints>()
            .delete("t", &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await?;
    s.user_wrote(1);
    s.converge("t", Some(&want)).await?;
    s.finish(&["t"]).await
}

/// A user empties the Endpoints object of a Service with a selector: neither controller
/// watches for that, but the next pod change writes the whole object again.
pub async fn endpoints_edited_by_user(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "tamper-ep-edit-node";
    let s = Scenario::start(&planes, "endpoints-edited").await?;
    setup(&s, NODE, "10.44.0").await?;
    let want = expected(NODE, "10.44.0");
    s.converge("t", Some(&want)).await?;
    s.each(|side| async move {
        side.merge_patch::<Endpoints>("t", json!({ "subsets": null }))
            .await
    })
    .await?;
    s.user_wrote(1);
    for ready in [false, true] {
        s.each(|side| async move { side.set_pod("b", &running("10.44.0.2", ready)).await })
            .await?;
    }
    s.converge("t", Some(&want)).await?;
    s.finish(&["t"]).await
}

/// A user deletes the Service's only slice: a new one replaces it.
pub async fn slice_deleted_by_user(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "tamper-del-node";
    let s = Scenario::start(&planes, "slice-deleted").await?;
    setup(&s, NODE, "10.41.0").await?;
    let want = expected(NODE, "10.41.0");
    s.converge("t", Some(&want)).await?;
    s.each(|side| async move {
        let name = only_slice(&side).await?;
        side.api::<EndpointSlice>()
            .delete(&name, &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await?;
    s.user_wrote(1);
    s.converge("t", Some(&want)).await?;
    s.finish(&["t"]).await
}

/// A user empties the Service's slice: the endpoints are put back.
pub async fn slice_edited_by_user(planes: Arc<Planes>) -> Result<()> {
    const NODE: &str = "tamper-edit-node";
    let s = Scenario::start(&planes, "slice-edited").await?;
    setup(&s, NODE, "10.42.0").await?;
    let want = expected(NODE, "10.42.0");
    s.converge("t", Some(&want)).await?;
    s.each(|side| async move {
        let name = only_slice(&side).await?;
        side.api::<EndpointSlice>()
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "endpoints": [] })),
            )
            .await?;
        Ok(())
    })
    .await?;
    s.user_wrote(1);
    s.converge("t", Some(&want)).await?;
    s.finish(&["t"]).await
}
