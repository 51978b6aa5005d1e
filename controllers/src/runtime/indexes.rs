//! Each controller's per-Service indexes of endpoints, kept between syncs: taken out for a sync
//! of the Service (the queue never syncs one Service twice at once), brought up to date with the
//! pods the router saw change, and put back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;

use super::cache::ObjectKey;
use super::shared::{Caches, ChangedPods};
use crate::pods::PodInfo;
use crate::service::{same_for_endpoints, selects};
use crate::{EndpointsIndex, SliceIndex};

/// Pods by name as they are now (`None`: gone).
type PodsNow = Vec<(String, Option<Arc<PodInfo>>)>;

/// A pure index of one Service's endpoints, as the controllers keep them.
pub(crate) trait ServiceIndex: Sized {
    /// An empty index, `None` for a Service whose endpoints the controllers do not manage.
    fn new(service: &Service) -> Option<Self>;
    /// The Service the index was built for.
    fn service(&self) -> &Service;
    /// Applies pods as they are now (`None`: gone).
    fn apply(&mut self, pods: &[(String, Option<Arc<PodInfo>>)], caches: &Caches);
}

impl ServiceIndex for EndpointsIndex {
    fn new(service: &Service) -> Option<Self> {
        EndpointsIndex::new(service)
    }

    fn service(&self) -> &Service {
        EndpointsIndex::service(self)
    }

    fn apply(&mut self, pods: &[(String, Option<Arc<PodInfo>>)], _: &Caches) {
        self.apply_pods(pods.iter().map(|(name, pod)| (name.as_str(), pod.as_ref())));
    }
}

impl ServiceIndex for SliceIndex {
    fn new(service: &Service) -> Option<Self> {
        SliceIndex::new(service)
    }

    fn service(&self) -> &Service {
        SliceIndex::service(self)
    }

    fn apply(&mut self, pods: &[(String, Option<Arc<PodInfo>>)], caches: &Caches) {
        self.apply_pods(
            pods.iter().map(|(name, pod)| (name.as_str(), pod.as_ref())),
            |node| caches.nodes.get("", node),
        );
    }
}

/// One controller's indexes, and the pods changed per Service since it last took them. An
/// index is boxed: it takes about a kilobyte in place (its Service is most of it), and the map
/// has room for up to twice the Services it holds.
pub(crate) struct Indexes<I> {
    indexes: Mutex<HashMap<ObjectKey, Box<I>>>,
    changes: Arc<ChangedPods>,
}

impl<I: ServiceIndex> Indexes<I> {
    pub fn new(changes: Arc<ChangedPods>) -> Self {
        Indexes {
            indexes: Mutex::default(),
            changes,
        }
    }

    /// The index of the Service `key`, up to date with the pods changed since its last sync;
    /// built from every pod it selects for a Service new or changed since. `None` when the
    /// controllers do not manage the Service's endpoints.
    pub fn take(&self, key: &ObjectKey, service: &Service, caches: &Caches) -> Option<Box<I>> {
        let changed = self.changes.take(key);
        let kept = self.indexes.lock().expect("indexes lock").remove(key);
        let (mut index, pods): (Box<I>, PodsNow) =
            match kept.filter(|index| same_for_endpoints(index.service(), service)) {
                Some(index) => {
                    let pods = changed.into_iter().map(|name| {
                        let pod = caches.pods.get(&key.namespace, &name);
                        (name, pod)
                    });
                    (index, pods.collect())
                }
                None => {
                    let selected = caches
                        .pods
                        .list(&key.namespace, |pod| selects(service, pod));
                    let pods = selected
                        .into_iter()
                        .map(|pod| (pod.name.clone(), Some(pod)));
                    (Box::new(I::new(service)?), pods.collect())
                }
            };
        index.apply(&pods, caches);
        Some(index)
    }

    /// Puts the index back after the sync.
    pub fn put(&self, key: &ObjectKey, index: Box<I>) {
        let mut indexes = self.indexes.lock().expect("indexes lock");
        indexes.insert(key.clone(), index);
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, key: &ObjectKey) {
        self.indexes.lock().expect("indexes lock").remove(key);
        self.changes.take(key);
    }
}
