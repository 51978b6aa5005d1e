//! Dry runs, deletes and deletecollection, each followed by requests for the same values.
//!
//! kube-apiserver v1.37.2: `pkg/registry/core/service/storage/alloc.go` allocates a dry run
//! on the allocators' `DryRun()` views (checked, never held); `storage.go` `afterDelete`
//! releases a deleted Service's values in the same request (`releaseAllocatedResources`),
//! and deletecollection deletes one Service after the other through the same path.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::planes::Planes;
use crate::table::{
    Known, compare, create, delete, delete_collection, merge, put, webhook_down, webhook_up,
};

/// README: "a dry-run create asking for a cluster IP that is taken". kube-apiserver alone
/// answers 201: its dry-run IP allocator checks only the range (`ipallocator.go`
/// `allocateService` returns before looking the address up when `dryRun`), so the dry run
/// promises what the real create refuses. svcplane answers as the real create would.
const DRY_RUN_OF_A_TAKEN_IP: &str = "dry-run create of a taken cluster IP: refused as the create";

pub async fn dry_run(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "dry-run",
        vec![
            create("a", json!({ "clusterIP": "10.96.10.11" })).dry_run(),
            create("a", json!({ "clusterIP": "10.96.10.11" })),
            create("b", json!({ "clusterIP": "10.96.10.11" }))
                .dry_run()
                .known(Known {
                    name: DRY_RUN_OF_A_TAKEN_IP,
                    svcplane: (
                        422,
                        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: [\"<a.clusterIPs[0]>\"]: failed to allocate IP <a.clusterIPs[0]>: provided IP is already allocated",
                    ),
                }),
            create(
                "c",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30060 }] }),
            )
            .dry_run(),
            create(
                "c",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30060 }] }),
            ),
            create("d", json!({ "type": "NodePort" })).dry_run(),
            merge("a", json!({ "spec": { "type": "NodePort" } })).dry_run(),
            merge("a", json!({ "spec": { "clusterIP": "10.96.10.12" } })).dry_run(),
            put(
                "a",
                json!({ "clusterIP": "10.96.10.11", "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30061 }] }),
            )
            .dry_run(),
            create(
                "e",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30061 }] }),
            ),
            create(
                "e2",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30061 }] }),
            )
            .dry_run(),
            merge("a", json!({ "spec": { "ipFamilyPolicy": "PreferDualStack" } })).dry_run(),
            delete("a").dry_run(),
            create("f", json!({ "clusterIP": "10.96.10.11" })),
            merge("c", json!({ "spec": { "type": "ClusterIP" } })).dry_run(),
            create(
                "g",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30060 }] }),
            ),
        ],
    )
    .await
}

pub async fn delete_and_request_again(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "delete",
        vec![
            create(
                "a",
                json!({ "type": "NodePort", "clusterIP": "10.96.11.11", "ports": [{ "port": 80, "nodePort": 30062 }] }),
            ),
            create(
                "b",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "ipFamilyPolicy": "RequireDualStack" }),
            ),
            delete("a"),
            delete("b"),
            create(
                "c",
                json!({ "type": "NodePort", "clusterIP": "10.96.11.11", "ports": [{ "port": 80, "nodePort": 30062 }] }),
            ),
            create(
                "d",
                json!({
                    "type": "LoadBalancer", "externalTrafficPolicy": "Local",
                    "ipFamilyPolicy": "RequireDualStack",
                    "clusterIP": "{{b.clusterIPs[0]}}",
                    "clusterIPs": ["{{b.clusterIPs[0]}}", "{{b.clusterIPs[1]}}"],
                    "ports": [{ "port": 80, "nodePort": "{{b.ports[0].nodePort}}" }],
                    "healthCheckNodePort": "{{b.healthCheckNodePort}}",
                }),
            ),
            delete("c"),
            delete("c"),
        ],
    )
    .await
}

pub async fn delete_collection_and_request_again(planes: Arc<Planes>) -> Result<()> {
    let a = || {
        create(
            "a",
            json!({ "type": "NodePort", "clusterIP": "10.96.12.11", "ports": [{ "port": 80, "nodePort": 30063 }] }),
        )
    };
    let b = || {
        create(
            "b",
            json!({ "ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.12.12", "clusterIPs": ["10.96.12.12", "fd00:10:96::61"] }),
        )
    };
    compare(
        &planes,
        "delete-collection",
        vec![
            a(),
            b(),
            create("c", json!({ "type": "LoadBalancer" })),
            delete_collection(),
            a(),
            b(),
            create(
                "c",
                json!({ "type": "LoadBalancer", "clusterIP": "{{c.clusterIPs[0]}}", "ports": [{ "port": 80, "nodePort": "{{c.ports[0].nodePort}}" }] }),
            ),
        ],
    )
    .await
}

/// Services created while svcplane's webhook was down (kube-apiserver allocated them on its
/// own, the registration failing open), then svcplane back: their values are refused to
/// others, and freed when they are deleted. On planes of the case's own, since the webhook
/// stops.
pub async fn svcplane_down_then_back(shared: Arc<Planes>) -> Result<()> {
    let planes = Planes::start().await?;
    let outcome = compare(
        &planes,
        "down-and-back",
        vec![
            create(
                "a",
                json!({ "type": "NodePort", "clusterIP": "10.96.17.11", "ports": [{ "port": 80, "nodePort": 30077 }] }),
            ),
            webhook_down(),
            create(
                "b",
                json!({ "type": "NodePort", "clusterIP": "10.96.17.12", "ports": [{ "port": 80, "nodePort": 30078 }] }),
            ),
            create("c", json!({ "type": "NodePort", "ipFamilyPolicy": "RequireDualStack" })),
            webhook_up(),
            create(
                "d",
                json!({ "type": "NodePort", "clusterIP": "10.96.17.12", "ports": [{ "port": 80, "nodePort": 30078 }] }),
            ),
            create(
                "e",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": "{{c.ports[0].nodePort}}" }] }),
            ),
            create("f", json!({ "clusterIP": "{{c.clusterIPs[1]}}" })),
            delete("b"),
            create(
                "g",
                json!({ "type": "NodePort", "clusterIP": "10.96.17.12", "ports": [{ "port": 80, "nodePort": 30078 }] }),
            ),
            delete("c"),
            create(
                "h",
                json!({
                    "type": "NodePort", "ipFamilyPolicy": "RequireDualStack",
                    "clusterIP": "{{c.clusterIPs[0]}}", "clusterIPs": ["{{c.clusterIPs[0]}}", "{{c.clusterIPs[1]}}"],
                    "ports": [{ "port": 80, "nodePort": "{{c.ports[0].nodePort}}" }],
                }),
            ),
            create("i", json!({ "type": "NodePort" })),
        ],
    )
    .await;
    for line in planes.summary() {
        shared.record(line);
    }
    outcome
}
