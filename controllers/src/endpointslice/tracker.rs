//! Expectations about this controller's own slice writes, so that a sync never acts on a cache
//! that has not caught up with them.
//!
//! Acting on a stale cache is how the in-tree controller once created duplicate slices (a slice
//! it had just created was not in the cache yet: kubernetes#93374), lost updates and fought
//! itself (kubernetes#99345, kubernetes#100042). The remedy, as in-tree: remember the generation
//! of every slice written and every slice deleted, and refuse to sync a Service whose cached
//! slices do not show all of that yet. The caller retries later.

use std::borrow::Borrow;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::well_known::LABEL_SERVICE_NAME;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Generation(i64),
    Deletion,
}

#[derive(Debug, Clone, Default)]
struct TrackedService {
    uid: Option<String>,
    slices: HashMap<String, Expected>,
}

type ServiceKey = (String, String);

/// What this controller wrote, per Service: the generation of each slice it created or updated
/// and the slices it deleted. Plain data; a controller shares it behind a mutex.
#[derive(Debug, Clone, Default)]
pub struct SliceTracker {
    services: HashMap<ServiceKey, TrackedService>,
}

fn service_key_of_slice(slice: &EndpointSlice) -> ServiceKey {
    (
        slice.metadata.namespace.clone().unwrap_or_default(),
        slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
            .cloned()
            .unwrap_or_default(),
    )
}

fn uid(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.uid.as_deref()
}

impl SliceTracker {
    /// Records a slice as the apiserver returned it from a create or update.
    pub fn record_write(&mut self, written: &EndpointSlice) {
        let Some(uid) = uid(written) else {
            return;
        };
        let generation = written.metadata.generation.unwrap_or_default();
        self.services
            .entry(service_key_of_slice(written))
            .or_default()
            .slices
            .insert(uid.to_string(), Expected::Generation(generation));
    }

    /// Records that this controller deleted the slice.
    pub fn record_deletion(&mut self, deleted: &EndpointSlice) {
        let Some(uid) = uid(deleted) else {
            return;
        };
        self.services
            .entry(service_key_of_slice(deleted))
            .or_default()
            .slices
            .insert(uid.to_string(), Expected::Deletion);
    }

    /// Whether a slice seen in a watch event is news to this controller: a slice it does not
    /// track, or a generation newer than the one it wrote. Events that only echo the
    /// controller's own writes need no sync.
    pub fn is_news(&self, slice: &EndpointSlice) -> bool {
        let tracked = self
            .services
            .get(&service_key_of_slice(slice))
            .and_then(|s| uid(slice).and_then(|uid| s.slices.get(uid)));
        match tracked {
            None => true,
            Some(Expected::Deletion) => false,
            Some(Expected::Generation(written)) => {
                slice.metadata.generation.unwrap_or_default() > *written
            }
        }
    }

    /// Handles a slice deletion seen in a watch event and says whether this controller made it.
    /// A deletion it did not make (someone else removed a slice) calls for a sync.
    pub fn handle_deletion(&mut self, slice: &EndpointSlice) -> bool {
        let Some(tracked) = self.services.get_mut(&service_key_of_slice(slice)) else {
            return false;
        };
        match uid(slice).and_then(|uid| tracked.slices.remove(uid)) {
            Some(Expected::Deletion) => true,
            Some(Expected::Generation(_)) | None => false,
        }
    }

    /// Whether the cached slices of the Service lag behind this controller's writes: a slice it
    /// wrote is missing or shows an older generation, or a slice it deleted is still there
    /// (slices already marked for deletion are ignored). A stale cache must not be synced.
    ///
    /// When the Service's UID changed (deleted and recreated under the same name), what was
    /// tracked for the old one is dropped: those writes are moot.
    pub fn is_stale<S: Borrow<EndpointSlice>>(&mut self, service: &Service, cached: &[S]) -> bool {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let tracked = self.services.entry(key).or_default();
        if let (Some(old), Some(new)) = (&tracked.uid, &service.metadata.uid)
            && old != new
        {
            tracked.slices.clear();
        }
        if service.metadata.uid.is_some() {
            tracked.uid = service.metadata.uid.clone();
        }

        let mut seen = 0;
        for slice in cached.iter().map(Borrow::borrow) {
            if slice.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(expected) = uid(slice).and_then(|uid| tracked.slices.get(uid)) else {
                continue;
            };
            match expected {
                Expected::Deletion => return true,
                Expected::Generation(written) => {
                    if slice.metadata.generation.unwrap_or_default() < *written {
                        return true;
                    }
                    seen += 1;
                }
            }
        }
        let written = tracked
            .slices
            .values()
            .filter(|e| matches!(e, Expected::Generation(_)))
            .count();
        seen < written
    }

    /// Forgets a deleted Service.
    pub fn forget_service(&mut self, namespace: &str, name: &str) {
        self.services
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests;
