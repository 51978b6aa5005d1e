//! Criterion benchmarks of one sync's pure work for a large Service: what each controller
//! computes when one of 5,000 selected pods changes (desired state from every pod, then the
//! plan against what is published). The controllers run this on every change to the Service,
//! so during a scale-up it is most of their CPU time.
//!
//! With `SYNC=endpoints` or `SYNC=endpointslices` and `SYNC_ITERATIONS=N` in the
//! environment, that sync runs N times without criterion, for counting instructions under
//! cachegrind (`hack/bench-sync.sh`): on a shared machine the count is stable where times are
//! not.

use std::hint::black_box;
use std::sync::Arc;

use controllers::pods::PodInfo;
use controllers::{
    EndpointsParams, EndpointsWrite, MaxEndpointsPerSlice, SliceParams, SlicePlan,
    desired_endpoint_slices, desired_endpoints, plan_endpoint_slices, plan_endpoints_write,
};
use criterion::Criterion;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

const PODS: usize = 5000;
const NODES: usize = 10;
const MANAGER: &str = "endpointslice-controller.svcplane.io";

fn service() -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "bench", "uid": "uid-web" },
        "spec": {
            "selector": { "app": "web" },
            "clusterIP": "10.96.0.10",
            "ipFamilies": ["IPv4"],
            "type": "ClusterIP",
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": "http" }],
        },
    }))
    .unwrap()
}

fn pod(i: usize, ready: bool) -> Arc<PodInfo> {
    let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": format!("web-{i}"),
            "namespace": "bench",
            "uid": format!("00000000-0000-0000-0000-{i:012}"),
            "labels": { "app": "web", "pod-template-hash": "5d8f7c9b6" },
        },
        "spec": {
            "nodeName": format!("node-{}", i % NODES),
            "containers": [{
                "name": "app",
                "image": "registry.example/web:1",
                "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
            }],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
        },
    }))
    .unwrap();
    Arc::new(PodInfo::from(pod))
}

fn nodes() -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {
                    "name": format!("node-{i}"),
                    "labels": { "topology.kubernetes.io/zone": format!("zone-{}", i % 3) },
                },
            }))
            .unwrap()
        })
        .collect()
}

/// The pods before and after one of them turns not ready.
fn pods() -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let before: Vec<_> = (0..PODS).map(|i| pod(i, true)).collect();
    let mut after = before.clone();
    after[PODS / 2] = pod(PODS / 2, false);
    (before, after)
}

/// One Endpoints sync: desired state from every pod, then the write against what is published.
fn endpoints_sync() -> impl FnMut() -> Option<EndpointsWrite> {
    let service = service();
    let (before, after) = pods();
    let params = EndpointsParams {
        trigger_time: None,
        managed_by: Some("endpoint-controller.svcplane.io"),
    };
    let mut published: Endpoints = desired_endpoints(&service, &before, &params).unwrap();
    published.metadata.resource_version = Some("1".into());

    move || {
        let desired = desired_endpoints(&service, black_box(&after), &params).unwrap();
        plan_endpoints_write(Some(&published), &desired)
    }
}

/// One EndpointSlice sync: desired slices from every pod, then the plan against the published
/// ones (one update).
fn slices_sync() -> impl FnMut() -> SlicePlan {
    let service = service();
    let (before, after) = pods();
    let nodes = nodes();
    let node = |name: &str| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    };
    let params = SliceParams {
        managed_by: MANAGER,
        max_endpoints_per_slice: MaxEndpointsPerSlice::DEFAULT,
        trigger_time: None,
    };
    let initial = desired_endpoint_slices(&service, &before, node).unwrap();
    let none: &[EndpointSlice] = &[];
    let published: Vec<EndpointSlice> = plan_endpoint_slices(&service, none, &initial, &params)
        .create
        .into_iter()
        .enumerate()
        .map(|(i, mut slice)| {
            slice.metadata.name = Some(format!("web-{i}"));
            slice.metadata.resource_version = Some("1".into());
            slice
        })
        .collect();

    move || {
        let node = |name: &str| {
            nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name))
        };
        let desired = desired_endpoint_slices(&service, black_box(&after), node).unwrap();
        let plan = plan_endpoint_slices(&service, &published, &desired, &params);
        assert_eq!(plan.writes(), 1);
        plan
    }
}

fn main() {
    if let Ok(sync) = std::env::var("SYNC") {
        let iterations: usize = std::env::var("SYNC_ITERATIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .expect("SYNC_ITERATIONS: how many syncs to run");
        match sync.as_str() {
            "endpoints" => {
                let mut sync = endpoints_sync();
                (0..iterations).for_each(|_| drop(black_box(sync())));
            }
            "endpointslices" => {
                let mut sync = slices_sync();
                (0..iterations).for_each(|_| drop(black_box(sync())));
            }
            other => panic!("SYNC={other}: endpoints or endpointslices"),
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("endpoints_sync_5000_pods_one_changed", |b| {
        b.iter(endpoints_sync())
    });
    c.bench_function("endpointslices_sync_5000_pods_one_changed", |b| {
        b.iter(slices_sync())
    });
    c.final_summary();
}
