//! The Endpoints controller: one core/v1 Endpoints object per Service with a selector.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Endpoints;
use kube::api::DeleteParams;
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Client};
use tracing::instrument;

use super::Shared;
use super::cache::ObjectKey;
use super::error::{SyncError, namespace_terminating, not_found};
use super::events::{self, endpoints_reference};
use super::indexes::Indexes;
use super::metrics::Metrics;
use super::shared::{Caches, ChangedPods};
use super::write;
use crate::service::manages_endpoints;
use crate::well_known::SVCPLANE_ENDPOINTS_MANAGER;
use crate::{
    EndpointsIndex, EndpointsParams, EndpointsTracker, EndpointsWrite, TriggerTimeTracker,
};

/// Syncs the Endpoints object of one Service at a time (the queue keeps a Service from being
/// synced by two workers at once).
pub(crate) struct EndpointsController {
    client: Client,
    caches: Arc<Caches>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    tracker: Mutex<EndpointsTracker>,
    triggers: Mutex<TriggerTimeTracker>,
    indexes: Indexes<EndpointsIndex>,
}

impl EndpointsController {
    pub fn new(shared: Shared, recorder: Recorder, changes: Arc<ChangedPods>) -> Self {
        EndpointsController {
            client: shared.client,
            caches: shared.caches,
            metrics: shared.metrics,
            recorder,
            tracker: Mutex::default(),
            triggers: Mutex::default(),
            indexes: Indexes::new(changes),
        }
    }

    /// Brings the Endpoints of the Service `key` up to date.
    #[instrument(level = "debug", skip(self), fields(service = %key))]
    pub async fn sync(&self, key: &ObjectKey) -> Result<(), SyncError> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(service) = self.caches.services.get(&key.namespace, &key.name) else {
            // The Service is gone, and so goes its Endpoints object (as in-tree, whoever wrote it).
            let started = Instant::now();
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => self
                    .metrics
                    .api_write("Endpoints", "delete", started.elapsed()),
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
            self.indexes.forget(key);
            return Ok(());
        };
        if !manages_endpoints(&service) {
            // Selectorless and ExternalName Services: their Endpoints, if any, are the user's.
            self.indexes.forget(key);
            return Ok(());
        }

        let cached = self.caches.endpoints.get(&key.namespace, &key.name);
        let current =
            self.tracker
                .lock()
                .expect("tracker lock")
                .current(&key.namespace, &key.name, cached);
        let Some(mut index) = self.indexes.take(key, &service, &self.caches) else {
            return Ok(());
        };
        let (changed, every_pod) = index.changed_pods();
        let (trigger_time, observation) = self
            .triggers
            .lock()
            .expect("tracker lock")
            .trigger_time(&service, changed, every_pod);
        let params = EndpointsParams {
            trigger_time: trigger_time.as_ref(),
            managed_by: Some(SVCPLANE_ENDPOINTS_MANAGER),
        };
        let mut sync = index.plan(current.as_deref(), &params);
        let result = self.write(key, current.as_deref(), sync.write.take()).await;
        match &result {
            Ok(resource_version) => index.synced(&sync, resource_version.as_deref()),
            Err(_) => {
                index.failed();
                self.tracker
                    .lock()
                    .expect("tracker lock")
                    .forget(&key.namespace, &key.name);
            }
        }
        self.indexes.put(key, index);
        result?;
        self.triggers
            .lock()
            .expect("tracker lock")
            .commit(observation);
        Ok(())
    }

    /// Makes the write planned from `current`; returns the resourceVersion of the object it
    /// leaves in place.
    async fn write(
        &self,
        key: &ObjectKey,
        current: Option<&Endpoints>,
        write: Option<EndpointsWrite>,
    ) -> Result<Option<String>, SyncError> {
        let namespace = &key.namespace;
        let started = Instant::now();
        match write {
            None => Ok(current.and_then(|c| c.metadata.resource_version.clone())),
            Some(EndpointsWrite::Create(endpoints)) => {
                match write::create(&self.client, namespace, &endpoints).await {
                    Ok(stored) => {
                        self.metrics
                            .api_write("Endpoints", "create", started.elapsed());
                        Ok(stored.resource_version)
                    }
                    Err(error) if namespace_terminating(&error) => Ok(None),
                    Err(error) => {
                        let note = format!(
                            "Failed to create endpoint for service {}/{}: {error}",
                            key.namespace, key.name
                        );
                        self.warn(&endpoints, "FailedToCreateEndpoint", note).await;
                        Err(SyncError::api("create", "Endpoints", key, error))
                    }
                }
            }
            Some(EndpointsWrite::Update(endpoints)) => {
                match write::replace(&self.client, namespace, &key.name, &endpoints).await {
                    Ok(stored) => {
                        self.metrics
                            .api_write("Endpoints", "update", started.elapsed());
                        let version = stored.resource_version.clone();
                        if let Some(previous) = current {
                            self.tracker
                                .lock()
                                .expect("tracker lock")
                                .record_update(previous, endpoints, stored);
                        }
                        Ok(version)
                    }
                    Err(error) => {
                        let note = format!(
                            "Failed to update endpoint {}/{}: {error}",
                            key.namespace, key.name
                        );
                        self.warn(&endpoints, "FailedToUpdateEndpoint", note).await;
                        Err(SyncError::api("update", "Endpoints", key, error))
                    }
                }
            }
        }
    }

    async fn warn(&self, endpoints: &Endpoints, reason: &str, note: String) {
        let regarding = endpoints_reference(endpoints);
        events::publish(
            &self.recorder,
            &regarding,
            EventType::Warning,
            "Sync",
            reason,
            note,
        )
        .await;
    }
}
