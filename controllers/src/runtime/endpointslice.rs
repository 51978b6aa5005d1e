//! The EndpointSlice controller: the slices of each Service with a selector, written with the
//! fewest creates, updates and deletes the reconciler can find, with the topology hints the
//! Service asks for.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DeleteParams;
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Client, Resource};
use tracing::instrument;

use super::Shared;
use super::cache::ObjectKey;
use super::error::{SyncError, namespace_terminating, not_found};
use super::events;
use super::indexes::Indexes;
use super::metrics::{Metrics, ServiceSliceCounts};
use super::router::is_managed_by;
use super::shared::{CacheWaiters, Caches, SharedState};
use super::write;
use crate::service::{IpFamily, manages_endpoints};
use crate::topology::{self, HintsEventTracker, HintsPolicy, TopologyEvent, ZoneCapacity};
use crate::{
    MaxEndpointsPerSlice, SliceIndex, SliceParams, SlicePlan, SliceTracker, TriggerTimeTracker,
};

/// Syncs the slices of one Service at a time.
pub(crate) struct SliceController {
    client: Client,
    caches: Arc<Caches>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    managed_by: &'static str,
    max_endpoints_per_slice: MaxEndpointsPerSlice,
    tracker: Arc<Mutex<SliceTracker>>,
    waiters: Arc<CacheWaiters>,
    triggers: Mutex<TriggerTimeTracker>,
    indexes: Indexes<SliceIndex>,
    capacity: Arc<RwLock<ZoneCapacity>>,
    hints_events: Mutex<HintsEventTracker>,
}

fn desired_counts(
    index: &SliceIndex,
    max: MaxEndpointsPerSlice,
    slices: usize,
) -> ServiceSliceCounts {
    let (address_types, sizes) = index.group_sizes();
    let sizes: Vec<(IpFamily, usize)> = sizes.collect();
    let mut desired_slices = 0;
    let mut endpoints = 0;
    for family in address_types {
        let groups: Vec<usize> = sizes
            .iter()
            .filter(|(f, _)| f == family)
            .map(|(_, size)| *size)
            .collect();
        if groups.is_empty() {
            desired_slices += 1;
        }
        for size in groups {
            desired_slices += size.div_ceil(max.get());
            endpoints += size;
        }
    }
    ServiceSliceCounts {
        slices: slices as i64,
        desired_slices: desired_slices as i64,
        endpoints: endpoints as i64,
    }
}

impl SliceController {
    pub fn new(
        shared: Shared,
        recorder: Recorder,
        managed_by: &'static str,
        max_endpoints_per_slice: MaxEndpointsPerSlice,
        state: SharedState,
        waiters: Arc<CacheWaiters>,
    ) -> Self {
        SliceController {
            client: shared.client,
            caches: shared.caches,
            metrics: shared.metrics,
            recorder,
            managed_by,
            max_endpoints_per_slice,
            tracker: state.slice_tracker,
            waiters,
            triggers: Mutex::default(),
            indexes: Indexes::new(state.slice_changes),
            capacity: state.capacity,
            hints_events: Mutex::default(),
        }
    }

    /// Syncs the slices of the Service `key`, and records the outcome in the metrics.
    #[instrument(level = "debug", skip(self), fields(service = %key))]
    pub async fn sync(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let result = self.sync_service(key).await;
        self.metrics.slice_sync(
            result
                .as_ref()
                .map_or_else(SyncError::metric_label, |()| "success"),
        );
        result
    }

    async fn sync_service(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let Some(service) = self.caches.services.get(&key.namespace, &key.name) else {
            // The garbage collector deletes the slices through their owner reference.
            self.triggers
                .lock()
                .expect("tracker lock")
                .forget_service(&key.namespace, &key.name);
            self.tracker
                .lock()
                .expect("tracker lock")
                .forget_service(&key.namespace, &key.name);
            self.hints_events
                .lock()
                .expect("tracker lock")
                .forget_service(&key.namespace, &key.name);
            self.indexes.forget(key);
            self.metrics.service_slices(key, None);
            return Ok(());
        };
        if !manages_endpoints(&service) {
            // Selectorless Services get their slices from users or the mirroring controller.
            self.indexes.forget(key);
            return Ok(());
        }

        self.waiters.wait(key);
        let slices = self
            .caches
            .slices
            .list_group(&key.namespace, &key.name, |slice| {
                is_managed_by(slice, self.managed_by) && slice.metadata.deletion_timestamp.is_none()
            });
        if self
            .tracker
            .lock()
            .expect("tracker lock")
            .is_stale(&service, &slices)
        {
            return Err(SyncError::StaleCache("EndpointSlice"));
        }
        self.waiters.cancel(key);
        let Some(mut index) = self.indexes.take(key, &service, &self.caches) else {
            return Ok(());
        };
        let (changed, every_pod) = index.changed_pods();
        let (trigger_time, observation) = self
            .triggers
            .lock()
            .expect("tracker lock")
            .trigger_time(&service, changed, every_pod);
        let capacity = self.capacity.read().expect("capacity lock").clone();
        let params = SliceParams {
            managed_by: self.managed_by,
            max_endpoints_per_slice: self.max_endpoints_per_slice,
            trigger_time: trigger_time.as_ref(),
        };
        let sync = index.plan(&slices, &capacity, &params);
        let writes = sync.plan.writes();
        let slices_after = slices.len() + sync.plan.create.len() - sync.plan.delete.len();

        let written = |operation, took| self.metrics.api_write("EndpointSlice", operation, took);
        let result = apply_plan(&self.client, &self.tracker, key, &sync.plan, written).await;
        match &result {
            Ok(written) => index.synced(&slices, &sync, written),
            Err(_) => index.failed(),
        }
        let counts = desired_counts(&index, self.max_endpoints_per_slice, slices_after);
        self.indexes.put(key, index);
        if let Err(error) = result {
            self.warn(&service, &error).await;
            return Err(error);
        }
        self.triggers
            .lock()
            .expect("tracker lock")
            .commit(observation);
        let events = self.hints_events.lock().expect("tracker lock").events(
            &key.namespace,
            &key.name,
            &sync.topology,
        );
        for event in &events {
            self.record_hints(&service, event).await;
        }
        let (topology, traffic_distribution) = HintsPolicy::of(&service).metric_labels();
        self.metrics.slice_sync_changes(
            sync.added,
            sync.removed,
            writes,
            topology,
            traffic_distribution,
        );
        self.metrics.service_slices(key, Some(counts));

        if !sync.pods_on_missing_nodes.is_empty() {
            let pods: Vec<String> = sync
                .pods_on_missing_nodes
                .iter()
                .map(|p| format!("{} (node {:?})", p.pod, p.node))
                .collect();
            let error = SyncError::PodsOnMissingNodes(pods.join(", "));
            self.warn(&service, &error).await;
            return Err(error);
        }
        Ok(())
    }

    async fn record_hints(&self, service: &Service, event: &TopologyEvent) {
        let type_ = match event.type_ {
            topology::EventType::Normal => EventType::Normal,
            topology::EventType::Warning => EventType::Warning,
        };
        events::publish(
            &self.recorder,
            &service.object_ref(&()),
            type_,
            "Sync",
            event.reason,
            event.message.clone(),
        )
        .await;
    }

    async fn warn(&self, service: &Service, error: &SyncError) {
        let note = format!(
            "Error updating Endpoint Slices for Service {}: {error}",
            ObjectKey::of(service)
        );
        events::publish(
            &self.recorder,
            &service.object_ref(&()),
            EventType::Warning,
            "Sync",
            "FailedToUpdateEndpointSlices",
            note,
        )
        .await;
    }
}

/// Writes a slice plan: creates first, then updates, then deletes, as in-tree (consumers see
/// the new endpoints before the old ones go), recording each write in `tracker` and calling
/// `written` with its operation; returns the created and updated slices as written. Used by
/// the EndpointSlice and the mirroring controller.
pub(super) async fn apply_plan(
    client: &Client,
    tracker: &Mutex<SliceTracker>,
    key: &ObjectKey,
    plan: &SlicePlan,
    written: impl Fn(&'static str, Duration),
) -> Result<Vec<EndpointSlice>, SyncError> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.namespace);
    // What the apiserver stored: the slice sent, with the metadata it answered with.
    let stored = |sent: &EndpointSlice, metadata| EndpointSlice {
        metadata,
        ..sent.clone()
    };
    let mut objects = Vec::new();
    for slice in &plan.create {
        let started = Instant::now();
        match write::create(client, &key.namespace, slice).await {
            Ok(metadata) => {
                written("create", started.elapsed());
                let object = stored(slice, metadata);
                tracker.lock().expect("tracker lock").record_write(&object);
                objects.push(object);
            }
            // Nothing can be created in a namespace being deleted; the slices go with it.
            Err(error) if namespace_terminating(&error) => return Ok(objects),
            Err(error) => return Err(SyncError::api("create", "EndpointSlice", key, error)),
        }
    }
    for slice in &plan.update {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        let started = Instant::now();
        match write::replace(client, &key.namespace, name, slice).await {
            Ok(metadata) => {
                written("update", started.elapsed());
                let object = stored(slice, metadata);
                tracker.lock().expect("tracker lock").record_write(&object);
                objects.push(object);
            }
            Err(error) => {
                let object = format!("{}/{name}", key.namespace);
                return Err(SyncError::api("update", "EndpointSlice", object, error));
            }
        }
    }
    for slice in &plan.delete {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        let started = Instant::now();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => written("delete", started.elapsed()),
            Err(error) if not_found(&error) => {}
            Err(error) => {
                let object = format!("{}/{name}", key.namespace);
                return Err(SyncError::api("delete", "EndpointSlice", object, error));
            }
        }
        tracker.lock().expect("tracker lock").record_deletion(slice);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn counts_for_the_gauges() {
        let service = fixtures::service("web").families(&["IPv4", "IPv6"]).build();
        let pods: Vec<_> = (0..250)
            .map(|i| {
                let pod = fixtures::pod(
                    &format!("web-{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                );
                Arc::new(pod.label("app", "web").build())
            })
            .collect();
        let mut index = SliceIndex::new(&service).unwrap();
        index.apply_pods(pods.iter().map(|p| (p.name.as_str(), Some(p))), |_| {
            Some(fixtures::node("node-1", None))
        });
        let counts = desired_counts(&index, MaxEndpointsPerSlice::DEFAULT, 4);
        // 250 IPv4 endpoints in 3 slices, an IPv6 placeholder.
        assert_eq!(
            counts,
            ServiceSliceCounts {
                slices: 4,
                desired_slices: 4,
                endpoints: 250
            }
        );
    }
}
