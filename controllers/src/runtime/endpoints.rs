//! The Endpoints controller: one core/v1 Endpoints object per Service with a selector.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};
use tracing::instrument;

use super::Shared;
use super::cache::ObjectKey;
use super::error::{SyncError, namespace_terminating, not_found};
use super::informer::{CacheWaiters, Caches};
use super::metrics::Metrics;
use crate::service::{manages_endpoints, selects};
use crate::well_known::SVCPLANE_ENDPOINTS_MANAGER;
use crate::{
    EndpointsParams, EndpointsTracker, EndpointsWrite, TriggerTimeTracker, desired_endpoints,
    plan_endpoints_write,
};

/// Syncs the Endpoints object of one Service at a time (the queue keeps a Service from being
/// synced by two workers at once).
pub(crate) struct EndpointsController {
    client: Client,
    caches: Arc<Caches>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    waiters: Arc<CacheWaiters>,
    tracker: Mutex<EndpointsTracker>,
    triggers: Mutex<TriggerTimeTracker>,
}

impl EndpointsController {
    pub fn new(shared: Shared, recorder: Recorder, waiters: Arc<CacheWaiters>) -> Self {
        EndpointsController {
            client: shared.client,
            caches: shared.caches,
            metrics: shared.metrics,
            recorder,
            waiters,
            tracker: Mutex::default(),
            triggers: Mutex::default(),
        }
    }

    /// Brings the Endpoints of the Service `key` up to date.
    #[instrument(level = "debug", skip(self), fields(service = %key))]
    pub async fn sync(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(service) = self.caches.services.get(&key.namespace, &key.name) else {
            // The Service is gone, and so goes its Endpoints object (as in-tree, whoever wrote it).
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => self.metrics.api_write("Endpoints", "delete"),
                Err(error) if not_found(&error) => {}
                Err(error) => return Err(SyncError::api("delete", "Endpoints", key, error)),
            }
            self.tracker
                .lock()
                .expect("tracker lock")
                .forget(&key.namespace, &key.name);
            self.triggers
                .lock()
                .expect("tracker lock")
                .forget_service(&key.namespace, &key.name);
            return Ok(());
        };
        if !manages_endpoints(&service) {
            // Selectorless and ExternalName Services: their Endpoints, if any, are the user's.
            return Ok(());
        }

        self.waiters.wait(key);
        let cached = self.caches.endpoints.get(&key.namespace, &key.name);
        if let Some(cached) = &cached
            && self.tracker.lock().expect("tracker lock").is_stale(cached)
        {
            return Err(SyncError::StaleCache("Endpoints"));
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
        let params = EndpointsParams {
            trigger_time: trigger_time.as_ref(),
            managed_by: Some(SVCPLANE_ENDPOINTS_MANAGER),
        };
        let Some(desired) = desired_endpoints(&service, &pods, &params) else {
            return Ok(());
        };

        match plan_endpoints_write(cached.as_deref(), &desired) {
            None => {}
            Some(EndpointsWrite::Create(endpoints)) => {
                match api.create(&PostParams::default(), &endpoints).await {
                    Ok(_) => self.metrics.api_write("Endpoints", "create"),
                    Err(error) if namespace_terminating(&error) => return Ok(()),
                    Err(error) => {
                        let note = format!(
                            "Failed to create endpoint for service {}/{}: {error}",
                            key.namespace, key.name
                        );
                        self.warn(&endpoints, "FailedToCreateEndpoint", note).await;
                        return Err(SyncError::api("create", "Endpoints", key, error));
                    }
                }
            }
            Some(EndpointsWrite::Update(endpoints)) => {
                match api
                    .replace(&key.name, &PostParams::default(), &endpoints)
                    .await
                {
                    Ok(written) => {
                        self.metrics.api_write("Endpoints", "update");
                        if let Some(previous) = &cached {
                            self.tracker
                                .lock()
                                .expect("tracker lock")
                                .record_update(previous, &written);
                        }
                    }
                    Err(error) => {
                        let note = format!(
                            "Failed to update endpoint {}/{}: {error}",
                            key.namespace, key.name
                        );
                        self.warn(&endpoints, "FailedToUpdateEndpoint", note).await;
                        return Err(SyncError::api("update", "Endpoints", key, error));
                    }
                }
            }
        }
        self.triggers
            .lock()
            .expect("tracker lock")
            .commit(observation);
        Ok(())
    }

    async fn warn(&self, endpoints: &Endpoints, reason: &str, note: String) {
        let meta = &endpoints.metadata;
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Endpoints".into()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason, "could not publish an event");
        }
    }
}
