//! Metrics, with the in-tree names where the in-tree controllers have one.
//!
//! prometheus-client appends `_total` to counters, so `endpoint_slice_controller_changes` is
//! exposed as `endpoint_slice_controller_changes_total` (the name in-tree adopts in 1.38) and
//! `endpoint_slice_controller_syncs` as `endpoint_slice_controller_syncs_total`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::cache::ObjectKey;
use super::enabled::EnabledControllers;
use super::queue::QueueMetrics;

type Labels = Vec<(&'static str, &'static str)>;

/// What the EndpointSlice controller knows of one Service's slices, for the cluster-wide gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ServiceSliceCounts {
    /// Slices that exist after the last sync.
    pub slices: i64,
    /// Slices a perfect packing would need.
    pub desired_slices: i64,
    /// Endpoints desired.
    pub endpoints: i64,
}

/// The controllers' metrics, registered once in the registry `run` is given.
#[derive(Debug)]
pub(crate) struct Metrics {
    slice_changes: Family<Labels, Counter>,
    endpoints_added_per_sync: Histogram,
    endpoints_removed_per_sync: Histogram,
    slices_changed_per_sync: Family<Vec<(&'static str, String)>, Histogram>,
    slice_syncs: Family<Labels, Counter>,
    num_endpoint_slices: Gauge,
    desired_endpoint_slices: Gauge,
    endpoints_desired: Gauge,
    api_writes: Family<Labels, Counter>,
    api_write_durations: Family<Labels, Histogram>,
    rate_limiter_waits: Family<Labels, Histogram>,
    per_service: Mutex<HashMap<ObjectKey, ServiceSliceCounts>>,
    mirroring_changes: Family<Labels, Counter>,
    mirroring_endpoints_added_per_sync: Histogram,
    mirroring_endpoints_removed_per_sync: Histogram,
    mirroring_addresses_skipped_per_sync: Histogram,
    mirroring_syncs: Family<Labels, Counter>,
    queue_adds: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    queue_retries: Family<Labels, Counter>,
    queue_queued: Family<Labels, Histogram>,
    queue_work: Family<Labels, Histogram>,
}

fn per_sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(2.0, 2.0, 15))
}

/// 1 ms to 8 s, doubling.
fn write_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

fn default_buckets_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    /// The metrics, of which those of the enabled controllers are registered (the others are
    /// kept but never shown).
    pub fn register(registry: &mut Registry, enabled: EnabledControllers) -> Self {
        let metrics = Metrics {
            slice_changes: Family::default(),
            endpoints_added_per_sync: per_sync_histogram(),
            endpoints_removed_per_sync: per_sync_histogram(),
            slices_changed_per_sync: Family::new_with_constructor(default_buckets_histogram),
            slice_syncs: Family::default(),
            num_endpoint_slices: Gauge::default(),
            desired_endpoint_slices: Gauge::default(),
            endpoints_desired: Gauge::default(),
            api_writes: Family::default(),
            api_write_durations: Family::new_with_constructor(write_duration_histogram),
            rate_limiter_waits: Family::new_with_constructor(write_duration_histogram),
            per_service: Mutex::new(HashMap::new()),
            mirroring_changes: Family::default(),
            mirroring_endpoints_added_per_sync: per_sync_histogram(),
            mirroring_endpoints_removed_per_sync: per_sync_histogram(),
            mirroring_addresses_skipped_per_sync: per_sync_histogram(),
            mirroring_syncs: Family::default(),
            queue_adds: Family::default(),
            queue_depth: Family::default(),
            queue_retries: Family::default(),
            queue_queued: Family::new_with_constructor(QueueMetrics::duration_histogram),
            queue_work: Family::new_with_constructor(QueueMetrics::duration_histogram),
        };
        if enabled.endpointslice {
            registry.register(
                "endpoint_slice_controller_changes",
                "Number of EndpointSlice changes",
                metrics.slice_changes.clone(),
            );
            registry.register(
                "endpoint_slice_controller_endpoints_added_per_sync",
                "Number of endpoints added on each Service sync",
                metrics.endpoints_added_per_sync.clone(),
            );
            registry.register(
                "endpoint_slice_controller_endpoints_removed_per_sync",
                "Number of endpoints removed on each Service sync",
                metrics.endpoints_removed_per_sync.clone(),
            );
            registry.register(
                "endpoint_slice_controller_endpointslices_changed_per_sync",
                "Number of EndpointSlices changed on each Service sync",
                metrics.slices_changed_per_sync.clone(),
            );
            registry.register(
                "endpoint_slice_controller_syncs",
                "Number of EndpointSlice syncs",
                metrics.slice_syncs.clone(),
            );
            registry.register(
                "endpoint_slice_controller_num_endpoint_slices",
                "Number of EndpointSlices",
                metrics.num_endpoint_slices.clone(),
            );
            registry.register(
                "endpoint_slice_controller_desired_endpoint_slices",
                "Number of EndpointSlices that would exist with perfect endpoint allocation",
                metrics.desired_endpoint_slices.clone(),
            );
            registry.register(
                "endpoint_slice_controller_endpoints_desired",
                "Number of endpoints desired",
                metrics.endpoints_desired.clone(),
            );
        }
        if !enabled.none() {
            // client-go's names; the queues are labelled `endpoint`, `endpoint_slice` and
            // `endpoint_slice_mirroring`, as in kube-controller-manager.
            registry.register(
                "workqueue_adds",
                "Total number of adds handled by workqueue",
                metrics.queue_adds.clone(),
            );
            registry.register(
                "workqueue_depth",
                "Current depth of workqueue",
                metrics.queue_depth.clone(),
            );
            registry.register(
                "workqueue_retries",
                "Total number of retries handled by workqueue",
                metrics.queue_retries.clone(),
            );
            registry.register(
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
                metrics.queue_queued.clone(),
            );
            registry.register(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes",
                metrics.queue_work.clone(),
            );
            registry.register(
                "svcplane_controller_api_writes",
                "API writes made by svcplane's endpoint controllers, by kind and operation",
                metrics.api_writes.clone(),
            );
            registry.register(
                "svcplane_controller_api_write_duration_seconds",
                "Time of each successful API write of svcplane's endpoint controllers, from its serialization to its answer read (the apiserver's time included), by kind and operation",
                metrics.api_write_durations.clone(),
            );
            registry.register(
                "svcplane_controller_client_rate_limiter_duration_seconds",
                "Time each API request of svcplane's endpoint controllers waited for its controller's --kube-api-qps token, by controller (observed only with a limit set)",
                metrics.rate_limiter_waits.clone(),
            );
        }
        if enabled.mirroring {
            registry.register(
                "endpoint_slice_mirroring_controller_changes",
                "Number of EndpointSlice changes",
                metrics.mirroring_changes.clone(),
            );
            registry.register(
                "endpoint_slice_mirroring_controller_endpoints_added_per_sync",
                "Number of endpoints added on each Endpoints sync",
                metrics.mirroring_endpoints_added_per_sync.clone(),
            );
            registry.register(
                "endpoint_slice_mirroring_controller_endpoints_removed_per_sync",
                "Number of endpoints removed on each Endpoints sync",
                metrics.mirroring_endpoints_removed_per_sync.clone(),
            );
            registry.register(
                "endpoint_slice_mirroring_controller_addresses_skipped_per_sync",
                "Number of addresses skipped on each Endpoints sync due to being invalid or exceeding MaxEndpointsPerSubset",
                metrics.mirroring_addresses_skipped_per_sync.clone(),
            );
            registry.register(
                "svcplane_mirroring_controller_syncs",
                "Number of EndpointSlice mirroring syncs, by result (no in-tree equivalent)",
                metrics.mirroring_syncs.clone(),
            );
        }
        metrics
    }

    /// The work-queue metrics of the queue named `name` (kube-controller-manager's name).
    pub fn queue(&self, name: &'static str) -> QueueMetrics {
        let labels = vec![("name", name)];
        QueueMetrics {
            adds: self.queue_adds.get_or_create(&labels).clone(),
            depth: self.queue_depth.get_or_create(&labels).clone(),
            retries: self.queue_retries.get_or_create(&labels).clone(),
            queued: self.queue_queued.get_or_create(&labels).clone(),
            work: self.queue_work.get_or_create(&labels).clone(),
        }
    }

    /// Counts and times one successful mirrored slice write: `create`, `update` or `delete`.
    pub fn mirroring_write(&self, operation: &'static str, took: Duration) {
        self.written("EndpointSlice", operation, took);
        self.mirroring_changes
            .get_or_create(&vec![("operation", operation)])
            .inc();
    }

    /// Records how long one of `controller`'s requests waited for its client-side token.
    pub fn rate_limited(&self, controller: &'static str, waited: Duration) {
        self.rate_limiter_waits
            .get_or_create(&vec![("controller", controller)])
            .observe(waited.as_secs_f64());
    }

    fn written(&self, kind: &'static str, operation: &'static str, took: Duration) {
        let labels = vec![("kind", kind), ("operation", operation)];
        self.api_writes.get_or_create(&labels).inc();
        self.api_write_durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records the outcome of a mirroring sync: `success`, `stale` or `error`.
    pub fn mirroring_sync(&self, result: &'static str) {
        self.mirroring_syncs
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    /// Records what a successful mirroring sync changed.
    pub fn mirroring_sync_changes(&self, added: usize, removed: usize, skipped: usize) {
        self.mirroring_endpoints_added_per_sync
            .observe(added as f64);
        self.mirroring_endpoints_removed_per_sync
            .observe(removed as f64);
        self.mirroring_addresses_skipped_per_sync
            .observe(skipped as f64);
    }

    /// Counts and times one successful write; `kind` is `Endpoints` or `EndpointSlice`,
    /// `operation` `create`, `update` or `delete`.
    pub fn api_write(&self, kind: &'static str, operation: &'static str, took: Duration) {
        self.written(kind, operation, took);
        if kind == "EndpointSlice" {
            self.slice_changes
                .get_or_create(&vec![("operation", operation)])
                .inc();
        }
    }

    /// Records the outcome of a slice sync: `success`, `stale` or `error`.
    pub fn slice_sync(&self, result: &'static str) {
        self.slice_syncs
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    /// Records what a successful slice sync changed.
    pub fn slice_sync_changes(
        &self,
        added: usize,
        removed: usize,
        slices_changed: usize,
        topology: &'static str,
        traffic_distribution: &str,
    ) {
        self.endpoints_added_per_sync.observe(added as f64);
        self.endpoints_removed_per_sync.observe(removed as f64);
        self.slices_changed_per_sync
            .get_or_create(&vec![
                ("topology", topology.to_string()),
                ("traffic_distribution", traffic_distribution.to_string()),
            ])
            .observe(slices_changed as f64);
    }

    /// Sets a Service's share of the cluster-wide slice gauges; `None` removes it.
    pub fn service_slices(&self, key: &ObjectKey, counts: Option<ServiceSliceCounts>) {
        let mut per_service = self.per_service.lock().expect("metrics lock");
        let before = match counts {
            Some(counts) => per_service.insert(key.clone(), counts),
            None => per_service.remove(key),
        }
        .unwrap_or_default();
        let after = counts.unwrap_or_default();
        self.num_endpoint_slices
            .inc_by(after.slices - before.slices);
        self.desired_endpoint_slices
            .inc_by(after.desired_slices - before.desired_slices);
        self.endpoints_desired
            .inc_by(after.endpoints - before.endpoints);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn exposes_the_in_tree_names() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, EnabledControllers::default());
        metrics.api_write("EndpointSlice", "create", Duration::from_millis(3));
        metrics.api_write("Endpoints", "update", Duration::from_millis(5));
        metrics.slice_sync("success");
        metrics.slice_sync_changes(3, 1, 1, "Disabled", "");
        metrics.mirroring_write("create", Duration::from_millis(4));
        metrics.mirroring_sync_changes(1, 0, 2);
        metrics.rate_limited("endpoints", Duration::from_millis(50));
        let key = ObjectKey::new("ns", "web");
        let counts = ServiceSliceCounts {
            slices: 2,
            desired_slices: 1,
            endpoints: 30,
        };
        metrics.service_slices(&key, Some(counts));
        metrics.service_slices(&ObjectKey::new("ns", "db"), Some(counts));
        metrics.service_slices(&key, None);

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "endpoint_slice_controller_changes_total{operation=\"create\"} 1",
            "endpoint_slice_controller_syncs_total{result=\"success\"} 1",
            "endpoint_slice_controller_endpoints_added_per_sync_sum 3.0",
            "endpoint_slice_controller_num_endpoint_slices 2",
            "endpoint_slice_controller_desired_endpoint_slices 1",
            "endpoint_slice_controller_endpoints_desired 30",
            "svcplane_controller_api_writes_total{kind=\"Endpoints\",operation=\"update\"} 1",
            "svcplane_controller_api_writes_total{kind=\"EndpointSlice\",operation=\"create\"} 2",
            "svcplane_controller_api_write_duration_seconds_sum{kind=\"EndpointSlice\",operation=\"create\"} 0.007",
            "svcplane_controller_api_write_duration_seconds_bucket{le=\"0.002\",kind=\"EndpointSlice\",operation=\"create\"} 0",
            "svcplane_controller_api_write_duration_seconds_bucket{le=\"0.004\",kind=\"EndpointSlice\",operation=\"create\"} 2",
            "endpoint_slice_mirroring_controller_changes_total{operation=\"create\"} 1",
            "svcplane_controller_client_rate_limiter_duration_seconds_bucket{le=\"0.064\",controller=\"endpoints\"} 1",
            "endpoint_slice_mirroring_controller_addresses_skipped_per_sync_sum 2.0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    /// A queue reports client-go's work-queue metrics under kube-controller-manager's queue
    /// names: each add counted, the depth of what waits, each wait and each sync timed, each
    /// retry.
    #[tokio::test(start_paused = true)]
    async fn a_queue_reports_adds_depth_waits_work_and_retries() {
        use super::super::queue::{Backoff, WorkQueue};
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, EnabledControllers::default());
        let backoff = Backoff {
            base: std::time::Duration::from_millis(5),
            max: std::time::Duration::from_secs(1),
        };
        let queue = WorkQueue::new(backoff).with_metrics(metrics.queue("endpoint_slice"));
        let text = || {
            let mut text = String::new();
            encode(&mut text, &registry).unwrap();
            text
        };
        let (a, b) = (ObjectKey::new("ns", "a"), ObjectKey::new("ns", "b"));
        queue.add(a.clone());
        queue.add(a.clone());
        queue.add(b.clone());
        let seen = text();
        for line in [
            "workqueue_adds_total{name=\"endpoint_slice\"} 3",
            "workqueue_depth{name=\"endpoint_slice\"} 2",
        ] {
            assert!(seen.contains(line), "missing {line:?} in\n{seen}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let first = queue.next().await.unwrap();
        // Added again while being synced: it waits from this add, through the sync's end.
        queue.add(first.clone());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        queue.done(&first);
        let second = queue.next().await.unwrap();
        let again = queue.next().await.unwrap();
        assert_eq!((&second, &again), (&b, &first));
        queue.done(&second);
        queue.done(&again);
        queue.retry(again);
        let seen = text();
        // a waited 3 ms, b 5 ms, a again 2 ms.
        let waited: f64 = seen
            .lines()
            .find_map(|l| {
                l.strip_prefix("workqueue_queue_duration_seconds_sum{name=\"endpoint_slice\"} ")
            })
            .expect("the queue duration's sum")
            .parse()
            .unwrap();
        assert!((waited - 0.010).abs() < 1e-9, "{waited}");
        for line in [
            "workqueue_depth{name=\"endpoint_slice\"} 0",
            "workqueue_queue_duration_seconds_count{name=\"endpoint_slice\"} 3",
            "workqueue_work_duration_seconds_count{name=\"endpoint_slice\"} 3",
            "workqueue_retries_total{name=\"endpoint_slice\"} 1",
        ] {
            assert!(seen.contains(line), "missing {line:?} in\n{seen}");
        }
    }

    #[test]
    fn only_the_enabled_controllers_metrics_are_shown() {
        let shown = |enabled: EnabledControllers| {
            let mut registry = Registry::default();
            let metrics = Metrics::register(&mut registry, enabled);
            metrics.api_write("EndpointSlice", "create", Duration::ZERO);
            metrics.slice_sync("success");
            metrics.mirroring_write("create", Duration::ZERO);
            let mut text = String::new();
            encode(&mut text, &registry).unwrap();
            [
                "endpoint_slice_controller_",
                "endpoint_slice_mirroring_controller_",
                "svcplane_controller_api_writes",
            ]
            .map(|prefix| text.contains(&format!("# TYPE {prefix}")))
        };
        let only_mirroring = EnabledControllers {
            endpoints: false,
            endpointslice: false,
            mirroring: true,
        };
        assert_eq!(shown(only_mirroring), [false, true, true]);
        let no_endpoints = EnabledControllers {
            endpoints: false,
            ..EnabledControllers::default()
        };
        assert_eq!(shown(no_endpoints), [true, true, true]);
        let none = EnabledControllers {
            endpointslice: false,
            mirroring: false,
            ..no_endpoints
        };
        assert_eq!(shown(none), [false, false, false]);
    }
}
