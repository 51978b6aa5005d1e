//! Criterion benchmarks of one sync's pure work for a large Service, for each controller: when
//! one of 5,000 selected pods changes (the change applied to the Service's index, then the plan
//! against what is published), which is what the controllers do on every pod change; and from
//! scratch (the index built from every pod, then the plan), which is what they do for a new or
//! changed Service and after a restart.
//!
//! With `SYNC=endpoints`, `endpoints-full`, `endpointslices` or `endpointslices-full` and
//! `SYNC_ITERATIONS=N` in the environment, that sync runs N times without criterion, for
//! counting instructions under cachegrind (`hack/bench-sync.sh`): on a shared machine the count
//! is stable where times are not.

use std::hint::black_box;
use std::sync::Arc;

use controllers::pods::PodInfo;
use controllers::{
    EndpointsIndex, EndpointsParams, EndpointsSync, EndpointsWrite, MaxEndpointsPerSlice,
    SliceIndex, SliceParams, SliceSync, ZoneCapacity,
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

fn endpoints_params() -> EndpointsParams<'static> {
    EndpointsParams {
        trigger_time: None,
        managed_by: Some("endpoint-controller.svcplane.io"),
    }
}

fn endpoints_index(service: &Service, pods: &[Arc<PodInfo>]) -> EndpointsIndex {
    let mut index = EndpointsIndex::new(service).unwrap();
    index.apply_pods(pods.iter().map(|p| (p.name.as_str(), Some(p))));
    index
}

/// The Endpoints index of the Service's 5,000 ready pods, synced: what is published.
fn endpoints_published() -> (Service, EndpointsIndex, Endpoints) {
    let service = service();
    let (before, _) = pods();
    let mut index = endpoints_index(&service, &before);
    let planned = index.plan(None, &endpoints_params());
    let Some(EndpointsWrite::Create(mut published)) = planned.write.clone() else {
        panic!("a create");
    };
    published.metadata.resource_version = Some("1".into());
    index.synced(&planned, Some("1"));
    (service, index, published)
}

/// One Endpoints sync after one pod changed: the change applied to the Service's index, then
/// the write planned against what is published.
fn endpoints_sync() -> impl FnMut() -> EndpointsSync {
    let (_, mut index, published) = endpoints_published();
    let (_, after) = pods();
    let changed = after[PODS / 2].clone();
    move || {
        index.apply_pods([(changed.name.as_str(), Some(black_box(&changed)))]);
        index.plan(Some(&published), &endpoints_params())
    }
}

/// One Endpoints sync from scratch (a new or changed Service, a restart): the index built from
/// every pod, then the write planned against what is published.
fn endpoints_full_sync() -> impl FnMut() -> EndpointsSync {
    let (service, _, published) = endpoints_published();
    let (_, after) = pods();
    move || {
        let index = endpoints_index(&service, black_box(&after));
        index.plan(Some(&published), &endpoints_params())
    }
}

fn slice_params() -> SliceParams<'static> {
    SliceParams {
        managed_by: MANAGER,
        max_endpoints_per_slice: MaxEndpointsPerSlice::DEFAULT,
        trigger_time: None,
    }
}

fn node_lookup<'n>(nodes: &'n [Node]) -> impl Fn(&str) -> Option<&'n Node> + 'n {
    move |name| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

fn slice_index(service: &Service, pods: &[Arc<PodInfo>], nodes: &[Node]) -> SliceIndex {
    let mut index = SliceIndex::new(service).unwrap();
    index.apply_pods(
        pods.iter().map(|p| (p.name.as_str(), Some(p))),
        node_lookup(nodes),
    );
    index
}

/// The slice index of the Service's 5,000 ready pods, synced: 50 slices published.
fn slices_published() -> (Service, Vec<Node>, SliceIndex, Vec<EndpointSlice>) {
    let service = service();
    let nodes = nodes();
    let (before, _) = pods();
    let mut index = slice_index(&service, &before, &nodes);
    let none: &[EndpointSlice] = &[];
    let planned = index.plan(none, &ZoneCapacity::from_nodes(&nodes), &slice_params());
    let published: Vec<EndpointSlice> = planned
        .plan
        .create
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, mut slice)| {
            slice.metadata.name = Some(format!("web-{i}"));
            slice.metadata.uid = Some(format!("uid-web-{i}"));
            slice.metadata.resource_version = Some("1".into());
            slice
        })
        .collect();
    index.synced(none, &planned, &published);
    (service, nodes, index, published)
}

/// One EndpointSlice sync after one pod changed: the change applied to the Service's index,
/// then the plan against the published slices (one update).
fn slices_sync() -> impl FnMut() -> SliceSync {
    let (_, nodes, mut index, published) = slices_published();
    let capacity = ZoneCapacity::from_nodes(&nodes);
    let (_, after) = pods();
    let changed = after[PODS / 2].clone();
    move || {
        index.apply_pods(
            [(changed.name.as_str(), Some(black_box(&changed)))],
            node_lookup(&nodes),
        );
        let planned = index.plan(&published, &capacity, &slice_params());
        assert_eq!(planned.plan.writes(), 1);
        planned
    }
}

/// One EndpointSlice sync from scratch (a new or changed Service, a restart): the index built
/// from every pod, then the plan against the published slices (one update).
fn slices_full_sync() -> impl FnMut() -> SliceSync {
    let (service, nodes, _, published) = slices_published();
    let capacity = ZoneCapacity::from_nodes(&nodes);
    let (_, after) = pods();
    move || {
        let index = slice_index(&service, black_box(&after), &nodes);
        let planned = index.plan(&published, &capacity, &slice_params());
        assert_eq!(planned.plan.writes(), 1);
        planned
    }
}

fn run<T>(mut sync: impl FnMut() -> T, iterations: usize) {
    (0..iterations).for_each(|_| drop(black_box(sync())));
}

fn main() {
    if let Ok(sync) = std::env::var("SYNC") {
        let iterations: usize = std::env::var("SYNC_ITERATIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .expect("SYNC_ITERATIONS: how many syncs to run");
        match sync.as_str() {
            "endpoints" => run(endpoints_sync(), iterations),
            "endpoints-full" => run(endpoints_full_sync(), iterations),
            "endpointslices" => run(slices_sync(), iterations),
            "endpointslices-full" => run(slices_full_sync(), iterations),
            other => panic!(
                "SYNC={other}: endpoints, endpoints-full, endpointslices or endpointslices-full"
            ),
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("endpoints_sync_5000_pods_one_changed", |b| {
        b.iter(endpoints_sync())
    });
    c.bench_function("endpoints_full_sync_5000_pods", |b| {
        b.iter(endpoints_full_sync())
    });
    c.bench_function("endpointslices_sync_5000_pods_one_changed", |b| {
        b.iter(slices_sync())
    });
    c.bench_function("endpointslices_full_sync_5000_pods", |b| {
        b.iter(slices_full_sync())
    });
    c.final_summary();
}
