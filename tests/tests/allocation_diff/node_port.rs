//! NodePorts: requested, taken, duplicated within one Service, outside the range, one number
//! shared by TCP, UDP and SCTP, LoadBalancers with and without node ports, and
//! healthCheckNodePort.
//!
//! kube-apiserver v1.37.2: `pkg/registry/core/service/storage/alloc.go` `initNodePorts`
//! (one node port per port number, whatever the protocol; a requested port refused as
//! `spec.ports[i].nodePort: Invalid value: <port>: <portallocator error>`) and
//! `allocHealthCheckNodePort` (refusals wrapped in `NewInternalError`: HTTP 500);
//! `portallocator/allocator.go` for the errors; `pkg/apis/core/validation/validation.go`
//! `validateServicePort` and `ValidateService` for the rest.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::planes::Planes;
use crate::table::{Known, compare, create, delete, merge};

pub async fn requested_and_duplicate(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "port-requested",
        vec![
            create(
                "a",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30010 }] }),
            ),
            create(
                "b",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30010 }] }),
            ),
            create(
                "c",
                json!({ "type": "NodePort", "ports": [
                    { "name": "a", "port": 80, "nodePort": 30011 },
                    { "name": "b", "port": 81, "nodePort": 30011 },
                ] }),
            ),
            create(
                "d",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 29999 }] }),
            ),
            create(
                "e",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 70000 }] }),
            ),
            create(
                "f",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": -1 }] }),
            ),
            create(
                "g",
                json!({ "type": "ClusterIP", "ports": [{ "port": 80, "nodePort": 30012 }] }),
            ),
            create(
                "h",
                json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": "{{a.ports[0].nodePort}}" }] }),
            ),
            create(
                "h2",
                json!({ "type": "ClusterIP", "ports": [
                    { "name": "a", "port": 80, "nodePort": 30013 },
                    { "name": "b", "port": 81, "nodePort": 30013 },
                ] }),
            ),
            // Nothing above held 30011 or 30012.
            create(
                "i",
                json!({ "type": "NodePort", "ports": [
                    { "name": "a", "port": 80, "nodePort": 30011 },
                    { "name": "b", "port": 81, "nodePort": 30012 },
                ] }),
            ),
            // alloc.go updateNodePorts: an error that is no API status at all (HTTP 500).
            merge(
                "i",
                json!({ "spec": { "ports": [
                    { "name": "a", "port": 80, "nodePort": 30011 },
                    { "name": "b", "port": 81, "nodePort": 30011 },
                ] } }),
            )
            .known(Known {
                name: NODE_PORT_TWICE_ON_UPDATE,
                svcplane: (
                    422,
                    "Service \"i\" is invalid: spec.ports[1].nodePort: Invalid value: <i.ports[0].nodePort>: provided port is already allocated",
                ),
            }),
            merge(
                "i",
                json!({ "spec": { "ports": [
                    { "name": "a", "port": 80, "nodePort": 30011 },
                    { "name": "b", "port": 81, "nodePort": 30012 },
                    { "name": "c", "port": 82, "nodePort": 30010 },
                ] } }),
            ),
        ],
    )
    .await
}

pub async fn protocols_share_a_number(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "port-protocols",
        vec![
            create(
                "a",
                json!({ "type": "NodePort", "ports": [
                    { "name": "t", "port": 53, "protocol": "TCP", "nodePort": 30020 },
                    { "name": "u", "port": 53, "protocol": "UDP", "nodePort": 30020 },
                    { "name": "s", "port": 53, "protocol": "SCTP", "nodePort": 30020 },
                ] }),
            ),
            create(
                "b",
                json!({ "type": "NodePort", "ports": [{ "port": 53, "protocol": "UDP", "nodePort": 30020 }] }),
            ),
            create(
                "c",
                json!({ "type": "NodePort", "ports": [
                    { "name": "t", "port": 53, "protocol": "TCP", "nodePort": 30021 },
                    { "name": "u", "port": 54, "protocol": "UDP", "nodePort": 30021 },
                ] }),
            ),
            create(
                "d",
                json!({ "type": "NodePort", "ports": [
                    { "name": "t", "port": 53, "protocol": "TCP" },
                    { "name": "u", "port": 53, "protocol": "UDP" },
                ] }),
            ),
            create(
                "e",
                json!({ "type": "NodePort", "ports": [
                    { "name": "t", "port": 53, "protocol": "TCP", "nodePort": 30022 },
                    { "name": "u", "port": 53, "protocol": "UDP" },
                ] }),
            ),
            delete("a"),
            create(
                "f",
                json!({ "type": "NodePort", "ports": [{ "port": 53, "protocol": "SCTP", "nodePort": 30020 }] }),
            ),
        ],
    )
    .await
}

pub async fn load_balancer_without_node_ports(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "port-lb",
        vec![
            create(
                "a",
                json!({ "type": "LoadBalancer", "allocateLoadBalancerNodePorts": false }),
            ),
            create(
                "b",
                json!({ "type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{ "port": 80, "nodePort": 30030 }] }),
            ),
            merge(
                "a",
                json!({ "spec": { "allocateLoadBalancerNodePorts": true } }),
            ),
            merge(
                "a",
                json!({ "spec": { "allocateLoadBalancerNodePorts": false } }),
            ),
            merge(
                "b",
                json!({ "spec": { "allocateLoadBalancerNodePorts": true } }),
            ),
            // validation.go: only for type LoadBalancer.
            create(
                "c",
                json!({ "type": "NodePort", "allocateLoadBalancerNodePorts": false }),
            ),
            create("d", json!({ "type": "LoadBalancer" })),
            merge("d", json!({ "spec": { "type": "ClusterIP" } })),
            create(
                "e",
                json!({ "type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{ "port": 80, "nodePort": "{{d.ports[0].nodePort}}" }] }),
            ),
        ],
    )
    .await
}

/// README: "an update giving one nodePort to two port numbers". On create kube-apiserver
/// refuses it as taken (422, `initNodePorts`); on update `updateNodePorts` returns a bare
/// `duplicate nodePort: {TCP 30011}` error, answered HTTP 500. svcplane answers the update
/// as the create.
const NODE_PORT_TWICE_ON_UPDATE: &str =
    "one nodePort for two port numbers on update: 422 as on create, not 500";

/// README: "`healthCheckNodePort` taken or outside the range". A requested
/// healthCheckNodePort that cannot be had is an internal error in-tree (alloc.go
/// `allocHealthCheckNodePort`'s error wrapped in `NewInternalError`: HTTP 500).
const HEALTH_CHECK_NODE_PORT_REFUSED: &str =
    "healthCheckNodePort taken or outside the range: 422 with the field named, not 500";

pub async fn health_check_node_port(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "port-health",
        vec![
            create(
                "a",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local" }),
            ),
            create(
                "b",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30040 }),
            ),
            create(
                "c",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30040 }),
            )
            .known(Known {
                name: HEALTH_CHECK_NODE_PORT_REFUSED,
                svcplane: (
                    422,
                    "Service \"c\" is invalid: spec.healthCheckNodePort: Invalid value: <b.healthCheckNodePort>: provided port is already allocated",
                ),
            }),
            create(
                "d",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{ "port": 80, "nodePort": 30041 }], "healthCheckNodePort": 30041 }),
            )
            .known(Known {
                name: HEALTH_CHECK_NODE_PORT_REFUSED,
                svcplane: (
                    422,
                    "Service \"d\" is invalid: spec.healthCheckNodePort: Invalid value: 30041: provided port is already allocated",
                ),
            }),
            create(
                "e",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 29000 }),
            )
            .known(Known {
                name: HEALTH_CHECK_NODE_PORT_REFUSED,
                svcplane: (
                    422,
                    "Service \"e\" is invalid: spec.healthCheckNodePort: Invalid value: 29000: provided port is not in the valid range. The range of valid ports is 30000-32767",
                ),
            }),
            merge("a", json!({ "spec": { "externalTrafficPolicy": "Cluster" } })),
            create(
                "f",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": "{{a.healthCheckNodePort}}" }),
            ),
            merge("b", json!({ "spec": { "healthCheckNodePort": 30042 } })),
            // validation.go: healthCheckNodePort only for LoadBalancer with Local.
            create(
                "g",
                json!({ "type": "NodePort", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30043 }),
            ),
            merge("b", json!({ "spec": { "type": "NodePort" } })),
            create(
                "h",
                json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30040 }),
            ),
        ],
    )
    .await
}
