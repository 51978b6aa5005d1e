//! Criterion benchmarks of reading one pod from a watch event into the [`PodInfo`] the
//! controllers keep: read as a whole `Pod`, then cut down, against read as a [`WatchedPod`]. The
//! pod (`data/pod.json`) is a Deployment's pod as a cluster with kubelets serves it: managed
//! fields of two writers, probes, env, resources, a projected service account volume.

use std::hint::black_box;

use controllers::pods::{PodInfo, WatchedPod};
use criterion::Criterion;
use k8s_openapi::api::core::v1::Pod;

const POD: &str = include_str!("data/pod.json");

fn main() {
    let as_pod = PodInfo::from(serde_json::from_str::<Pod>(POD).unwrap());
    let as_watched = PodInfo::from(serde_json::from_str::<WatchedPod>(POD).unwrap());
    assert_eq!(as_pod, as_watched, "both readings make the same PodInfo");

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("pod_event/as_pod", |b| {
        b.iter(|| PodInfo::from(serde_json::from_str::<Pod>(black_box(POD)).unwrap()))
    });
    c.bench_function("pod_event/as_watched_pod", |b| {
        b.iter(|| PodInfo::from(serde_json::from_str::<WatchedPod>(black_box(POD)).unwrap()))
    });
    c.final_summary();
}
