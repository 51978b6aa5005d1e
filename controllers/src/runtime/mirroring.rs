//! The EndpointSlice mirroring controller: the slices of each user-written Endpoints object
//! whose Service has no selector, written with the fewest creates, updates and deletes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::runtime::events::{EventType, Recorder};
use tracing::instrument;

use super::Shared;
use super::cache::ObjectKey;
use super::endpointslice::apply_plan;
use super::error::SyncError;
use super::events::{self, endpoints_reference};
use super::metrics::Metrics;
use super::router::is_mirrored;
use super::shared::{CacheWaiters, Caches};
use crate::mirroring::{DesiredMirroredSlices, MirroringEvent};
use crate::{MirroringParams, SliceTracker, desired_mirrored_slices, plan_mirrored_slices};

/// Mirrors one Endpoints object at a time (the queue keeps a key from being synced by two
/// workers at once).
pub(crate) struct MirroringController {
    client: Client,
    caches: Arc<Caches>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    params: MirroringParams,
    tracker: Arc<Mutex<SliceTracker>>,
    waiters: Arc<CacheWaiters>,
}

/// An endpoint as the added/removed metrics count it: address type and addresses.
type EndpointId = (String, Vec<String>);

/// Endpoints added and removed by a sync, as the in-tree metrics count them.
fn endpoint_changes(
    existing: &[Arc<EndpointSlice>],
    desired: Option<&DesiredMirroredSlices>,
) -> (usize, usize) {
    let before: HashSet<EndpointId> = existing
        .iter()
        .flat_map(|s| {
            s.endpoints
                .iter()
                .flatten()
                .map(|e| (s.address_type.clone(), e.addresses.clone()))
        })
        .collect();
    let after: HashSet<EndpointId> = desired
        .into_iter()
        .flat_map(|d| &d.groups)
        .flat_map(|g| {
            g.endpoints
                .iter()
                .map(|e| (g.address_type.as_str().to_string(), e.addresses.clone()))
        })
        .collect();
    (
        after.difference(&before).count(),
        before.difference(&after).count(),
    )
}

impl MirroringController {
    pub fn new(
        shared: Shared,
        recorder: Recorder,
        params: MirroringParams,
        tracker: Arc<Mutex<SliceTracker>>,
        waiters: Arc<CacheWaiters>,
    ) -> Self {
        MirroringController {
            client: shared.client,
            caches: shared.caches,
            metrics: shared.metrics,
            recorder,
            params,
            tracker,
            waiters,
        }
    }

    /// Brings the mirrored slices of the Endpoints `key` up to date, and records the outcome
    /// in the metrics.
    #[instrument(level = "debug", skip(self), fields(endpoints = %key))]
    pub async fn sync(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let result = self.sync_endpoints(key).await;
        self.metrics.mirroring_sync(
            result
                .as_ref()
                .map_or_else(SyncError::metric_label, |()| "success"),
        );
        result
    }

    async fn sync_endpoints(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let service = self.caches.services.get(&key.namespace, &key.name);
        let endpoints = self.caches.endpoints.get(&key.namespace, &key.name);
        self.waiters.wait(key);
        let slices = self
            .caches
            .slices
            .list_group(&key.namespace, &key.name, is_mirrored);
        let desired = match desired_mirrored_slices(
            service.as_deref(),
            endpoints.as_deref(),
            &self.params,
        ) {
            Err(reason) => {
                self.waiters.cancel(key);
                if !slices.is_empty() {
                    tracing::debug!(endpoints = %key, %reason, "not mirrored; deleting its mirrored slices");
                }
                self.tracker
                    .lock()
                    .expect("tracker lock")
                    .forget_service(&key.namespace, &key.name);
                None
            }
            Ok(desired) => {
                let service = service.as_deref().expect("mirroring needs the Service");
                if self
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .is_stale(service, &slices)
                {
                    return Err(SyncError::StaleCache("mirrored EndpointSlice"));
                }
                self.waiters.cancel(key);
                Some(desired)
            }
        };

        let plan = plan_mirrored_slices(&slices, desired.as_ref());
        let (added, removed) = endpoint_changes(&slices, desired.as_ref());
        let written = |operation, took| self.metrics.mirroring_write(operation, took);
        apply_plan(&self.client, &self.tracker, key, &plan, written).await?;
        let skipped = desired.as_ref().map_or(0, |d| d.addresses_skipped);
        self.metrics.mirroring_sync_changes(added, removed, skipped);
        if let (Some(desired), Some(endpoints)) = (&desired, &endpoints) {
            for event in &desired.events {
                self.warn(endpoints, event).await;
            }
        }
        Ok(())
    }

    async fn warn(&self, endpoints: &Endpoints, event: &MirroringEvent) {
        let regarding = endpoints_reference(endpoints);
        events::publish(
            &self.recorder,
            &regarding,
            EventType::Warning,
            "Mirror",
            event.reason,
            event.message.clone(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn counts_added_and_removed_endpoints() {
        let service = fixtures::service("ext").no_selector().build();
        let mut endpoints = Endpoints::default();
        endpoints.metadata.name = Some("ext".into());
        endpoints.metadata.namespace = Some(fixtures::NS.into());
        endpoints.subsets = Some(vec![k8s_openapi::api::core::v1::EndpointSubset {
            addresses: Some(vec![
                k8s_openapi::api::core::v1::EndpointAddress {
                    ip: "10.1.0.1".into(),
                    ..Default::default()
                },
                k8s_openapi::api::core::v1::EndpointAddress {
                    ip: "fd00::1".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }]);
        let desired = desired_mirrored_slices(
            Some(&service),
            Some(&endpoints),
            &MirroringParams::default(),
        )
        .unwrap();
        assert_eq!(endpoint_changes(&[], Some(&desired)), (2, 0));
        let plan = plan_mirrored_slices::<EndpointSlice>(&[], Some(&desired));
        let existing: Vec<Arc<EndpointSlice>> = plan.create.into_iter().map(Arc::new).collect();
        assert_eq!(endpoint_changes(&existing, Some(&desired)), (0, 0));
        assert_eq!(endpoint_changes(&existing, None), (0, 2));
    }
}
