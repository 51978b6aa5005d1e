//! The EndpointSlice controller: the slices of each Service with a selector, written with the
//! fewest creates, updates and deletes the reconciler can find, with the topology hints the
//! Service asks for.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use tracing::instrument;

use super::Shared;
use super::cache::ObjectKey;
use super::error::{SyncError, namespace_terminating, not_found};
use super::informer::{CacheWaiters, Caches};
use super::metrics::{Metrics, ServiceSliceCounts};
use crate::service::{manages_endpoints, selects};
use crate::topology::{self, HintsEventTracker, TopologyEvent, ZoneCapacity, uses_auto_hints};
use crate::well_known::{IN_TREE_SLICE_MANAGER, LABEL_SERVICE_NAME, LABEL_SLICE_MANAGED_BY};
use crate::{
    DesiredEndpointSlices, MaxEndpointsPerSlice, SliceParams, SlicePlan, SliceTracker,
    TriggerTimeTracker, desired_endpoint_slices, plan_endpoint_slices,
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
    capacity: Arc<RwLock<ZoneCapacity>>,
    hints_events: Mutex<HintsEventTracker>,
}

/// An endpoint as the added/removed metrics count it: address type, addresses and pod.
type EndpointId<'a> = (&'a str, &'a [String], Option<&'a str>);

fn endpoint_ids<'a>(
    address_type: &'a str,
    endpoints: impl IntoIterator<Item = &'a Endpoint> + 'a,
) -> impl Iterator<Item = EndpointId<'a>> + 'a {
    endpoints.into_iter().map(move |e| {
        (
            address_type,
            e.addresses.as_slice(),
            e.target_ref.as_ref().and_then(|r| r.uid.as_deref()),
        )
    })
}

/// Endpoints added and removed by a sync, as the in-tree metrics count them.
fn endpoint_changes(
    existing: &[Arc<EndpointSlice>],
    desired: &DesiredEndpointSlices,
) -> (usize, usize) {
    let before: HashSet<EndpointId> = existing
        .iter()
        .flat_map(|s| endpoint_ids(&s.address_type, s.endpoints.iter().flatten()))
        .collect();
    let after: HashSet<EndpointId> = desired
        .groups
        .iter()
        .flat_map(|g| endpoint_ids(g.address_type.as_api(), &g.endpoints))
        .collect();
    (
        after.difference(&before).count(),
        before.difference(&after).count(),
    )
}

fn desired_counts(
    desired: &DesiredEndpointSlices,
    max: MaxEndpointsPerSlice,
    slices: usize,
) -> ServiceSliceCounts {
    let mut desired_slices = 0;
    let mut endpoints = 0;
    for family in &desired.address_types {
        let groups: Vec<_> = desired
            .groups
            .iter()
            .filter(|g| g.address_type == *family)
            .collect();
        if groups.is_empty() {
            desired_slices += 1;
        }
        for group in groups {
            desired_slices += group.endpoints.len().div_ceil(max.get());
            endpoints += group.endpoints.len();
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
        tracker: Arc<Mutex<SliceTracker>>,
        capacity: Arc<RwLock<ZoneCapacity>>,
        waiters: Arc<CacheWaiters>,
    ) -> Self {
        SliceController {
            client: shared.client,
            caches: shared.caches,
            metrics: shared.metrics,
            recorder,
            managed_by,
            max_endpoints_per_slice,
            tracker,
            waiters,
            triggers: Mutex::default(),
            capacity,
            hints_events: Mutex::default(),
        }
    }

    fn is_own(&self, slice: &EndpointSlice, service: &str) -> bool {
        let Some(labels) = &slice.metadata.labels else {
            return false;
        };
        labels.get(LABEL_SERVICE_NAME).map(String::as_str) == Some(service)
            && labels
                .get(LABEL_SLICE_MANAGED_BY)
                .is_some_and(|m| m == self.managed_by || m == IN_TREE_SLICE_MANAGER)
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
            self.metrics.service_slices(key, None);
            return Ok(());
        };
        if !manages_endpoints(&service) {
            // Selectorless Services get their slices from users or the mirroring controller.
            return Ok(());
        }

        self.waiters.wait(key);
        let slices = self.caches.slices.list(&key.namespace, |slice| {
            self.is_own(slice, &key.name) && slice.metadata.deletion_timestamp.is_none()
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
        let pods = self
            .caches
            .pods
            .list(&key.namespace, |pod| selects(&service, pod));
        let (trigger_time, observation) = self
            .triggers
            .lock()
            .expect("tracker lock")
            .trigger_time(&service, &pods);
        let Some(mut desired) =
            desired_endpoint_slices(&service, &pods, |node| self.caches.nodes.get("", node))
        else {
            return Ok(());
        };
        let capacity = self.capacity.read().expect("capacity lock").clone();
        let outcome = topology::apply_topology(&service, &capacity, &mut desired, &slices);
        let params = SliceParams {
            managed_by: self.managed_by,
            max_endpoints_per_slice: self.max_endpoints_per_slice,
            trigger_time: trigger_time.as_ref(),
        };
        let plan = plan_endpoint_slices(&service, &slices, &desired, &params);
        let (added, removed) = endpoint_changes(&slices, &desired);
        let writes = plan.writes();
        let slices_after = slices.len() + plan.create.len() - plan.delete.len();

        let written = |operation| self.metrics.api_write("EndpointSlice", operation);
        if let Err(error) = apply_plan(&self.client, &self.tracker, key, plan, written).await {
            self.warn(&service, &error).await;
            return Err(error);
        }
        self.triggers
            .lock()
            .expect("tracker lock")
            .commit(observation);
        let traffic_distribution = service
            .spec
            .as_ref()
            .and_then(|s| s.traffic_distribution.clone())
            .unwrap_or_default();
        let events = self.hints_events.lock().expect("tracker lock").events(
            &key.namespace,
            &key.name,
            &outcome,
        );
        for event in &events {
            self.record_hints(&service, event).await;
        }
        let topology = if uses_auto_hints(&service) {
            "Auto"
        } else {
            "Disabled"
        };
        self.metrics
            .slice_sync_changes(added, removed, writes, topology, &traffic_distribution);
        self.metrics.service_slices(
            key,
            Some(desired_counts(
                &desired,
                self.max_endpoints_per_slice,
                slices_after,
            )),
        );

        if desired.needs_retry() {
            let pods: Vec<String> = desired
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
        let event = Event {
            type_,
            reason: event.reason.into(),
            note: Some(event.message.clone()),
            action: "Sync".into(),
            secondary: None,
        };
        let reference = service.object_ref(&());
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, "could not publish an event");
        }
    }

    async fn warn(&self, service: &Service, error: &SyncError) {
        let event = Event {
            type_: EventType::Warning,
            reason: "FailedToUpdateEndpointSlices".into(),
            note: Some(format!(
                "Error updating Endpoint Slices for Service {}: {error}",
                ObjectKey::of(service)
            )),
            action: "Sync".into(),
            secondary: None,
        };
        let reference = service.object_ref(&());
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, "could not publish an event");
        }
    }
}

/// Writes a slice plan: creates first, then updates, then deletes, as in-tree (consumers see
/// the new endpoints before the old ones go), recording each write in `tracker` and calling
/// `written` with its operation. Used by the EndpointSlice and the mirroring controller.
pub(super) async fn apply_plan(
    client: &Client,
    tracker: &Mutex<SliceTracker>,
    key: &ObjectKey,
    plan: SlicePlan,
    written: impl Fn(&'static str),
) -> Result<(), SyncError> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.namespace);
    let post = PostParams::default();
    for slice in &plan.create {
        match api.create(&post, slice).await {
            Ok(object) => {
                written("create");
                tracker.lock().expect("tracker lock").record_write(&object);
            }
            // Nothing can be created in a namespace being deleted; the slices go with it.
            Err(error) if namespace_terminating(&error) => return Ok(()),
            Err(error) => return Err(SyncError::api("create", "EndpointSlice", key, error)),
        }
    }
    for slice in &plan.update {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        match api.replace(name, &post, slice).await {
            Ok(object) => {
                written("update");
                tracker.lock().expect("tracker lock").record_write(&object);
            }
            Err(error) => {
                let object = format!("{}/{name}", key.namespace);
                return Err(SyncError::api("update", "EndpointSlice", object, error));
            }
        }
    }
    for slice in &plan.delete {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => written("delete"),
            Err(error) if not_found(&error) => {}
            Err(error) => {
                let object = format!("{}/{name}", key.namespace);
                return Err(SyncError::api("delete", "EndpointSlice", object, error));
            }
        }
        tracker.lock().expect("tracker lock").record_deletion(slice);
    }
    Ok(())
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
                fixtures::pod(
                    &format!("web-{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                )
                .label("app", "web")
                .build()
            })
            .collect();
        let desired =
            desired_endpoint_slices(&service, &pods, |_| Some(fixtures::node("node-1", None)))
                .unwrap();
        let counts = desired_counts(&desired, MaxEndpointsPerSlice::DEFAULT, 4);
        // 250 IPv4 endpoints in 3 slices, an IPv6 placeholder.
        assert_eq!(
            counts,
            ServiceSliceCounts {
                slices: 4,
                desired_slices: 4,
                endpoints: 250
            }
        );
        let (added, removed) = endpoint_changes(&[], &desired);
        assert_eq!((added, removed), (250, 0));
    }
}
