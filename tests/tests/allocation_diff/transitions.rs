//! Type transitions (ClusterIP, NodePort, LoadBalancer, ExternalName, headless), each
//! followed by a request for the values it released.
//!
//! kube-apiserver v1.37.2: `pkg/registry/core/service/strategy.go` `dropTypeDependentFields`
//! clears what the new type does not use when the client left it unchanged;
//! `storage/alloc.go` `allocateUpdate` and `releaseNodePorts` / `releaseIPs` free it in the
//! same request, so another Service may ask for it at once.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::planes::Planes;
use crate::table::{compare, create, merge, put};

pub async fn cluster_ip_node_port_load_balancer(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "type-ports",
        vec![
            create("a", json!({ "type": "ClusterIP" })),
            merge("a", json!({ "spec": { "type": "NodePort" } })),
            merge("a", json!({ "spec": { "type": "LoadBalancer" } })),
            merge("a", json!({ "spec": { "type": "ClusterIP" } })),
            create(
                "b",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": "{{a.ports[0].nodePort}}" }] }),
            ),
            // validation.go validateServicePort: no nodePort on a ClusterIP Service.
            merge(
                "b",
                json!({ "spec": { "type": "ClusterIP", "ports": [{ "port": 80, "nodePort": "{{b.ports[0].nodePort}}" }] } }),
            ),
            create(
                "c",
                json!({ "type": "LoadBalancer", "ports": [{ "port": 80, "nodePort": 30050 }] }),
            ),
            merge("c", json!({ "spec": { "type": "NodePort" } })),
            put("c", json!({ "type": "ClusterIP" })),
            create(
                "d",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30050 }] }),
            ),
        ],
    )
    .await
}

pub async fn external_name_and_back(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "type-external",
        vec![
            create("a", json!({ "clusterIP": "10.96.7.11" })),
            merge(
                "a",
                json!({ "spec": { "type": "ExternalName", "externalName": "example.com" } }),
            ),
            create("b", json!({ "clusterIP": "10.96.7.11" })),
            merge(
                "a",
                json!({ "spec": { "type": "ClusterIP", "externalName": null } }),
            ),
            merge("a", json!({ "spec": { "type": "NodePort" } })),
            merge(
                "a",
                json!({ "spec": { "type": "ExternalName", "externalName": "example.com" } }),
            ),
            create(
                "c",
                json!({ "type": "NodePort", "clusterIP": "{{a.clusterIPs[0]}}", "ports": [{ "port": 80, "nodePort": "{{a.ports[0].nodePort}}" }] }),
            ),
            // validation.go: ExternalName Services have no cluster IP and no node port.
            create(
                "d",
                json!({ "type": "ExternalName", "externalName": "example.com", "clusterIP": "10.96.7.12" }),
            ),
            create(
                "e",
                json!({ "type": "ExternalName", "externalName": "example.com", "ports": [{ "port": 80, "nodePort": 30051 }] }),
            ),
            create(
                "f",
                json!({ "clusterIP": "10.96.7.12", "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30051 }] }),
            ),
            // validation.go ValidateService: an unknown type.
            create("g", json!({ "type": "Nodeport" })),
        ],
    )
    .await
}

pub async fn headless(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "type-headless",
        vec![
            create("a", json!({ "clusterIP": "None" })),
            merge("a", json!({ "spec": { "clusterIP": "10.96.8.11" } })),
            merge("a", json!({ "spec": { "type": "NodePort" } })),
            create(
                "b",
                json!({ "clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "RequireDualStack" }),
            ),
            create("c", json!({ "clusterIP": "None", "ipFamilies": ["IPv6"] })),
            merge(
                "a",
                json!({ "spec": { "type": "ExternalName", "externalName": "example.com" } }),
            ),
            merge(
                "a",
                json!({ "spec": { "type": "ClusterIP", "externalName": null, "clusterIP": "10.96.8.11" } }),
            ),
            create("d", json!({ "clusterIP": "10.96.8.11" })),
        ],
    )
    .await
}
