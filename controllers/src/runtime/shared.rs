//! What the router and the controllers share: the caches of the watched kinds, the queues
//! and the Services waiting for a cache to move, the pods changed per Service, the write
//! trackers and the zones' CPU shares.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::cache::{Cache, ObjectKey};
use super::enabled::EnabledControllers;
use super::queue::WorkQueue;
use crate::SliceTracker;
use crate::pods::PodInfo;
use crate::topology::ZoneCapacity;
use crate::well_known::LABEL_SERVICE_NAME;

/// One cache per watched kind, shared by both controllers.
#[derive(Debug)]
pub(crate) struct Caches {
    pub services: Cache<Service>,
    pub pods: Cache<PodInfo>,
    pub nodes: Cache<Node>,
    pub endpoints: Cache<Endpoints>,
    /// Grouped by the Service a slice is labelled for.
    pub slices: Cache<EndpointSlice>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            services: Cache::default(),
            pods: Cache::default(),
            nodes: Cache::default(),
            endpoints: Cache::default(),
            slices: Cache::grouped(slice_service),
        }
    }
}

/// The Service a slice is labelled for.
pub(crate) fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(LABEL_SERVICE_NAME)
        .map(String::as_str)
}

impl Caches {
    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.services.is_synced()
            && self.pods.is_synced()
            && self.nodes.is_synced()
            && self.endpoints.is_synced()
            && self.slices.is_synced()
    }
}

/// The kinds watched: those the enabled controllers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watched {
    pub pods: bool,
    pub nodes: bool,
    pub endpoints: bool,
    pub slices: bool,
}

impl Watched {
    /// Services always; pods for the Endpoints and EndpointSlice controllers; Nodes for the
    /// EndpointSlice controller (zones, hints); Endpoints for the Endpoints and mirroring
    /// controllers; EndpointSlices for the EndpointSlice and mirroring controllers.
    pub fn by(enabled: EnabledControllers) -> Self {
        Watched {
            pods: enabled.endpoints || enabled.endpointslice,
            nodes: enabled.endpointslice,
            endpoints: enabled.endpoints || enabled.mirroring,
            slices: enabled.endpointslice || enabled.mirroring,
        }
    }
}

/// Services whose last sync found the cache out of date, waiting for the cache to move.
#[derive(Debug, Default)]
pub(crate) struct CacheWaiters(Mutex<HashSet<ObjectKey>>);

impl CacheWaiters {
    /// Registers before reading the cache, so that an event applied meanwhile is not missed.
    pub fn wait(&self, key: &ObjectKey) {
        self.0.lock().expect("waiters lock").insert(key.clone());
    }

    /// The cache was fresh after all.
    pub fn cancel(&self, key: &ObjectKey) {
        self.0.lock().expect("waiters lock").remove(key);
    }

    /// Whether the Service was waiting (it is not any more).
    pub(super) fn take(&self, key: &ObjectKey) -> bool {
        self.0.lock().expect("waiters lock").remove(key)
    }
}

/// Per Service, the pods changed since a controller last took them: what its index of the
/// Service's endpoints has to read again.
#[derive(Debug, Default)]
pub(crate) struct ChangedPods(Mutex<HashMap<ObjectKey, BTreeSet<String>>>);

impl ChangedPods {
    pub(super) fn record(&self, service: &ObjectKey, pod: &str) {
        let mut changed = self.0.lock().expect("changed pods lock");
        match changed.get_mut(service) {
            Some(pods) => {
                pods.insert(pod.to_string());
            }
            None => {
                changed.insert(service.clone(), BTreeSet::from([pod.to_string()]));
            }
        }
    }

    /// The pods changed since the last call for this Service.
    pub fn take(&self, service: &ObjectKey) -> BTreeSet<String> {
        let mut changed = self.0.lock().expect("changed pods lock");
        changed.remove(service).unwrap_or_default()
    }
}

/// Where the router sends Service keys.
#[derive(Debug)]
pub(crate) struct Queues {
    pub endpoints: Arc<WorkQueue<ObjectKey>>,
    pub slices: Arc<WorkQueue<ObjectKey>>,
    pub mirroring: Arc<WorkQueue<ObjectKey>>,
    pub slice_waiters: Arc<CacheWaiters>,
    pub mirroring_waiters: Arc<CacheWaiters>,
    /// `--endpoint-updates-batch-period`.
    pub endpoints_batch: Duration,
    /// `--endpointslice-updates-batch-period`.
    pub slices_batch: Duration,
    /// `--mirroring-endpointslice-updates-batch-period`.
    pub mirroring_batch: Duration,
}

/// What the router shares with the controllers besides the caches: the slice controller's and
/// the mirroring controller's write trackers, the pods changed per Service, and the zones' CPU
/// shares.
#[derive(Debug, Clone)]
pub(crate) struct SharedState {
    pub slice_tracker: Arc<Mutex<SliceTracker>>,
    /// Pods changed per Service, for the Endpoints controller's indexes.
    pub endpoints_changes: Arc<ChangedPods>,
    /// Pods changed per Service, for the EndpointSlice controller's indexes.
    pub slice_changes: Arc<ChangedPods>,
    pub mirroring_tracker: Arc<Mutex<SliceTracker>>,
    pub capacity: Arc<RwLock<ZoneCapacity>>,
}

impl Default for SharedState {
    fn default() -> Self {
        SharedState {
            slice_tracker: Arc::default(),
            endpoints_changes: Arc::default(),
            slice_changes: Arc::default(),
            mirroring_tracker: Arc::default(),
            capacity: Arc::new(RwLock::new(ZoneCapacity::from_nodes::<Node>(&[]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kinds_the_enabled_controllers_read_are_watched() {
        let watched = |endpoints, endpointslice, mirroring| {
            Watched::by(EnabledControllers {
                endpoints,
                endpointslice,
                mirroring,
            })
        };
        let all = Watched {
            pods: true,
            nodes: true,
            endpoints: true,
            slices: true,
        };
        assert_eq!(watched(true, true, true), all);
        assert_eq!(watched(false, true, true), all, "mirroring reads Endpoints");
        assert_eq!(
            watched(false, false, true),
            Watched {
                pods: false,
                nodes: false,
                endpoints: true,
                slices: true,
            }
        );
        assert_eq!(
            watched(true, false, false),
            Watched {
                pods: true,
                nodes: false,
                endpoints: true,
                slices: false,
            }
        );
        assert_eq!(
            watched(false, true, false),
            Watched {
                endpoints: false,
                ..all
            }
        );
    }
}
