//! The router: applies each watch event to the shared caches and queues the Services whose
//! sync it may change.
//!
//! - A Service change queues it for both controllers.
//! - A pod change queues the Services selecting it before or after, and only when something
//!   they publish changed (labels for selection; IPs, readiness, phase, deletion, node,
//!   hostname/subdomain, container ports for the endpoints), after the batch period.
//! - A Node appearing or changing zone queues, for the slice controller, the Services
//!   selecting pods on it (their endpoints wait for it, or carry its zone). A Node
//!   disappearing queues nothing, as in-tree: its pods' endpoints stay until their Service
//!   syncs for another reason, so that a Node briefly re-registering does not empty slices.
//! - A Node added, deleted or changed in what topology hints depend on
//!   ([`nodes_changed_relevant`]) recomputes the shared [`ZoneCapacity`] once the Node cache is
//!   synced; when it moved, every Service with Auto hints is queued for the slice controller.
//! - For the mirroring controller: a Service without selector added or deleted, or whose
//!   selector appears or goes; an Endpoints change when the old or new object may be
//!   mirrored ([`endpoints_mirrorable`]); a mirrored slice change that is news to the
//!   mirroring tracker, or that moves it to another Service or manager.
//! - A deleted Endpoints object queues its Service for the Endpoints controller (to recreate).
//! - A slice change queues its Service for the slice controller unless it only echoes the
//!   controller's own write ([`SliceTracker::is_news`]), after at least a second, to batch
//!   changes to several slices.
//! - A sync that found the cache behind the controller's own writes registers with
//!   [`CacheWaiters`]; the next event of that Service's slices queues it again
//!   at once, instead of waiting for the retry backoff.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use plumbing::Event as WatchEvent;

use super::cache::{Cache, Change, Keyed, ObjectKey};
use super::enabled::EnabledControllers;
use super::shared::{Caches, Queues, SharedState, slice_service};
use super::trim::{PodChange, node_zone_changed, pod_change};
use crate::mirroring::endpoints_mirrorable;
use crate::pods::PodInfo;
use crate::selectors::SelectorIndex;
use crate::service::selects;
use crate::topology::{ZoneCapacity, nodes_changed_relevant, uses_auto_hints};
use crate::well_known::{
    IN_TREE_MIRRORING_MANAGER, IN_TREE_SLICE_MANAGER, LABEL_SLICE_MANAGED_BY,
    SVCPLANE_MIRRORING_MANAGER,
};

/// The least delay before a sync caused by a slice change, as in-tree: changes to several
/// slices of one Service are handled in one sync.
pub(crate) const SLICE_CHANGE_MIN_DELAY: Duration = Duration::from_secs(1);

/// A watch event of any of the kinds (boxed: objects differ much in size).
#[derive(Debug)]
pub(crate) enum Update {
    Service(Box<WatchEvent<Service>>),
    Pod(Box<WatchEvent<PodInfo>>),
    Node(Box<WatchEvent<Node>>),
    Endpoints(Box<WatchEvent<Endpoints>>),
    Slice(Box<WatchEvent<EndpointSlice>>),
}

/// Applies watch events to the caches and queues the Services they affect.
#[derive(Debug)]
pub(crate) struct Router {
    caches: Arc<Caches>,
    queues: Queues,
    shared: SharedState,
    slice_manager: &'static str,
    /// Pod changes are recorded only for the controllers that run, which take them.
    enabled: EnabledControllers,
    pods_by_node: HashMap<String, BTreeSet<ObjectKey>>,
    /// The cached Services filed by their selectors, to find those selecting a pod.
    selectors: SelectorIndex,
    /// A Node changed in a way that can move the zones' CPU shares since they were computed.
    capacity_outdated: bool,
}

fn apply_event<K: Keyed>(cache: &Cache<K>, event: WatchEvent<K>) -> Vec<Change<K>> {
    match event {
        WatchEvent::Apply(object) => vec![cache.apply(object)],
        WatchEvent::Delete(object) => vec![cache.delete(object)],
        WatchEvent::Unreadable(key) => {
            cache.keep(key);
            Vec::new()
        }
        WatchEvent::RelistStart => {
            cache.begin_relist();
            Vec::new()
        }
        WatchEvent::RelistDone => cache
            .end_relist()
            .into_iter()
            .map(Change::Deleted)
            .collect(),
    }
}

fn service_key(service: &Service) -> ObjectKey {
    ObjectKey::of(service)
}

fn has_selector(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|s| s.selector.is_some())
}

fn slice_manager_of(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SLICE_MANAGED_BY))
        .map(String::as_str)
}

/// Whether the slice is managed by `manager` or by the in-tree slice controller (whose slices
/// svcplane's slice controller takes over).
pub(crate) fn is_managed_by(slice: &EndpointSlice, manager: &str) -> bool {
    slice_manager_of(slice).is_some_and(|m| m == manager || m == IN_TREE_SLICE_MANAGER)
}

/// Whether the slice is a mirrored one (svcplane's or the in-tree mirroring controller's).
pub(crate) fn is_mirrored(slice: &EndpointSlice) -> bool {
    matches!(
        slice_manager_of(slice),
        Some(SVCPLANE_MIRRORING_MANAGER | IN_TREE_MIRRORING_MANAGER)
    )
}

impl Router {
    pub fn new(
        caches: Arc<Caches>,
        queues: Queues,
        shared: SharedState,
        slice_manager: &'static str,
        enabled: EnabledControllers,
    ) -> Self {
        Router {
            caches,
            queues,
            shared,
            slice_manager,
            enabled,
            pods_by_node: HashMap::new(),
            selectors: SelectorIndex::default(),
            capacity_outdated: false,
        }
    }

    /// Applies one watch event.
    pub fn handle(&mut self, update: Update) {
        match update {
            Update::Service(event) => {
                for change in apply_event(&self.caches.services, *event) {
                    match &change {
                        Change::Applied { old, new } => {
                            self.selectors.update(old.as_deref(), Some(new));
                        }
                        Change::Deleted(old) => self.selectors.update(Some(old), None),
                    }
                    let (key, mirroring) = match change {
                        Change::Applied { old: None, new } => {
                            (service_key(&new), !has_selector(&new))
                        }
                        Change::Applied {
                            old: Some(old),
                            new,
                        } => (service_key(&new), has_selector(&old) != has_selector(&new)),
                        Change::Deleted(old) => (service_key(&old), !has_selector(&old)),
                    };
                    if mirroring {
                        self.queues.mirroring.add(key.clone());
                    }
                    self.queues.endpoints.add(key.clone());
                    self.queues.slices.add(key);
                }
            }
            Update::Pod(event) => {
                for change in apply_event(&self.caches.pods, *event) {
                    self.pod_changed(change);
                }
            }
            Update::Node(event) => {
                for change in apply_event(&self.caches.nodes, *event) {
                    self.capacity_outdated |= match &change {
                        Change::Applied {
                            old: Some(old),
                            new,
                        } => nodes_changed_relevant(old, new),
                        Change::Applied { old: None, .. } | Change::Deleted(_) => true,
                    };
                    self.node_changed(change);
                }
                self.recompute_capacity();
            }
            Update::Endpoints(event) => {
                for change in apply_event(&self.caches.endpoints, *event) {
                    let mirrorable = |e: &Endpoints| endpoints_mirrorable(e).is_ok();
                    let (key, deleted, mirroring) = match &change {
                        Change::Applied { old, new } => (
                            ObjectKey::of(new.as_ref()),
                            false,
                            mirrorable(new) || old.as_deref().is_some_and(mirrorable),
                        ),
                        Change::Deleted(old) => {
                            (ObjectKey::of(old.as_ref()), true, mirrorable(old))
                        }
                    };
                    if mirroring || self.queues.mirroring_waiters.take(&key) {
                        self.queues.mirroring.add(key.clone());
                    }
                    if deleted {
                        self.queues.endpoints.add(key);
                    }
                }
            }
            Update::Slice(event) => {
                for change in apply_event(&self.caches.slices, *event) {
                    self.mirrored_slice_changed(&change);
                    self.slice_changed(change);
                }
            }
        }
    }

    fn index_pod(&mut self, old: Option<&PodInfo>, new: Option<&PodInfo>) {
        let old_node = old.and_then(|pod| pod.node_name.as_deref());
        let new_node = new.and_then(|pod| pod.node_name.as_deref());
        if old_node == new_node {
            return;
        }
        if let (Some(node), Some(pod)) = (old_node, old)
            && let Some(pods) = self.pods_by_node.get_mut(node)
        {
            pods.remove(&pod.key());
            if pods.is_empty() {
                self.pods_by_node.remove(node);
            }
        }
        if let (Some(node), Some(pod)) = (new_node, new) {
            self.pods_by_node
                .entry(node.to_string())
                .or_default()
                .insert(pod.key());
        }
    }

    fn pod_changed(&mut self, change: Change<PodInfo>) {
        let (old, new) = match change {
            Change::Applied { old, new } => (old, Some(new)),
            Change::Deleted(old) => (Some(old), None),
        };
        self.index_pod(old.as_deref(), new.as_deref());
        let kind = match (&old, &new) {
            (Some(old), Some(new)) => pod_change(old, new),
            _ => PodChange::Endpoints,
        };
        if kind == PodChange::None {
            return;
        }
        let Some(namespace) = new.as_ref().or(old.as_ref()).map(|p| p.namespace.clone()) else {
            return;
        };
        let selected = |service: &Service, pod: &Option<Arc<PodInfo>>| {
            pod.as_ref().is_some_and(|pod| selects(service, pod))
        };
        let mut candidates = BTreeSet::new();
        for pod in [&old, &new].into_iter().flatten() {
            candidates.extend(self.selectors.candidates(&namespace, &pod.labels));
        }
        let affected: Vec<Arc<Service>> = candidates
            .into_iter()
            .filter_map(|name| self.caches.services.get(&namespace, name))
            .filter(|service| {
                let (before, after) = (selected(service, &old), selected(service, &new));
                match kind {
                    PodChange::LabelsOnly => before != after,
                    _ => before || after,
                }
            })
            .collect();
        let name = new
            .as_ref()
            .or(old.as_ref())
            .map_or("", |p| p.name.as_str());
        for service in affected {
            let key = service_key(&service);
            if self.enabled.endpoints {
                self.shared.endpoints_changes.record(&key, name);
            }
            if self.enabled.endpointslice {
                self.shared.slice_changes.record(&key, name);
            }
            self.queues
                .endpoints
                .add_after(key.clone(), self.queues.endpoints_batch);
            self.queues.slices.add_after(key, self.queues.slices_batch);
        }
    }

    fn node_changed(&mut self, change: Change<Node>) {
        // A Node gone queues nothing (see the module notes), but its pods' endpoints are read
        // again by the next sync.
        let (node, queue) = match &change {
            Change::Applied {
                old: Some(old),
                new,
            } => {
                if !node_zone_changed(old, new) {
                    return;
                }
                (new, true)
            }
            Change::Applied { old: None, new } => (new, true),
            Change::Deleted(old) => (old, false),
        };
        let Some(pods) = node
            .metadata
            .name
            .as_ref()
            .and_then(|name| self.pods_by_node.get(name))
        else {
            return;
        };
        let mut affected = BTreeSet::new();
        for key in pods {
            let Some(pod) = self.caches.pods.get(&key.namespace, &key.name) else {
                continue;
            };
            for service in self.selecting(&pod) {
                let service = service_key(&service);
                self.shared.slice_changes.record(&service, &key.name);
                affected.insert(service);
            }
        }
        if queue {
            for key in affected {
                self.queues.slices.add(key);
            }
        }
    }

    /// The cached Services that select the pod, by name.
    fn selecting(&self, pod: &PodInfo) -> Vec<Arc<Service>> {
        self.selectors
            .candidates(&pod.namespace, &pod.labels)
            .into_iter()
            .filter_map(|name| self.caches.services.get(&pod.namespace, name))
            .filter(|service| selects(service, pod))
            .collect()
    }

    /// Recomputes the zones' CPU shares when a Node changed since, once all Nodes are cached;
    /// when they moved, queues every Service with Auto hints for the slice controller.
    fn recompute_capacity(&mut self) {
        if !self.capacity_outdated || !self.caches.nodes.is_synced() {
            return;
        }
        self.capacity_outdated = false;
        let capacity = ZoneCapacity::from_nodes(&self.caches.nodes.all());
        {
            let mut current = self.shared.capacity.write().expect("capacity lock");
            if *current == capacity {
                return;
            }
            *current = capacity;
        }
        for service in self.caches.services.all() {
            if uses_auto_hints(&service) {
                self.queues.slices.add(service_key(&service));
            }
        }
    }

    fn queue_mirroring(&self, slice: &EndpointSlice) {
        if let Some(key) = Self::slice_service(slice) {
            self.queues
                .mirroring
                .add_after(key, self.queues.mirroring_batch);
        }
    }

    fn mirrored_slice_changed(&self, change: &Change<EndpointSlice>) {
        let tracker = &self.shared.mirroring_tracker;
        match change {
            Change::Applied { old, new } => {
                if let Some(key) = Self::slice_service(new)
                    && is_mirrored(new)
                    && self.queues.mirroring_waiters.take(&key)
                {
                    self.queues.mirroring.add(key);
                }
                if let Some(old) = old
                    && (is_mirrored(old) || is_mirrored(new))
                    && (Self::slice_service(old) != Self::slice_service(new)
                        || is_mirrored(old) != is_mirrored(new))
                {
                    self.queue_mirroring(old);
                    self.queue_mirroring(new);
                    return;
                }
                if is_mirrored(new) && tracker.lock().expect("tracker lock").is_news(new) {
                    self.queue_mirroring(new);
                }
            }
            Change::Deleted(old) => {
                if !is_mirrored(old) {
                    return;
                }
                if let Some(key) = Self::slice_service(old)
                    && self.queues.mirroring_waiters.take(&key)
                {
                    self.queues.mirroring.add(key);
                }
                let ours = tracker.lock().expect("tracker lock").handle_deletion(old);
                if !ours {
                    self.queue_mirroring(old);
                }
            }
        }
    }

    fn is_managed(&self, slice: &EndpointSlice) -> bool {
        is_managed_by(slice, self.slice_manager)
    }

    fn slice_service(slice: &EndpointSlice) -> Option<ObjectKey> {
        Some(ObjectKey::new(
            slice.metadata.namespace.clone().unwrap_or_default(),
            slice_service(slice)?,
        ))
    }

    fn queue_slice_service(&self, slice: &EndpointSlice) {
        if let Some(key) = Self::slice_service(slice) {
            let delay = self.queues.slices_batch.max(SLICE_CHANGE_MIN_DELAY);
            self.queues.slices.add_after(key, delay);
        }
    }

    fn slice_changed(&mut self, change: Change<EndpointSlice>) {
        let slice = match &change {
            Change::Applied { new, .. } => new,
            Change::Deleted(old) => old,
        };
        if let Some(key) = Self::slice_service(slice)
            && self.queues.slice_waiters.take(&key)
        {
            self.queues.slices.add(key);
        }
        match change {
            Change::Applied { old, new } => {
                if let Some(old) = &old {
                    let moved = Self::slice_service(old) != Self::slice_service(&new);
                    let adopted_or_released = self.is_managed(old) != self.is_managed(&new);
                    if moved || adopted_or_released {
                        if self.is_managed(old) {
                            self.queue_slice_service(old);
                        }
                        self.queue_slice_service(&new);
                        return;
                    }
                }
                let news = self
                    .shared
                    .slice_tracker
                    .lock()
                    .expect("tracker lock")
                    .is_news(&new);
                if self.is_managed(&new) && news {
                    self.queue_slice_service(&new);
                }
            }
            Change::Deleted(old) => {
                if !self.is_managed(&old) {
                    return;
                }
                let ours = self
                    .shared
                    .slice_tracker
                    .lock()
                    .expect("tracker lock")
                    .handle_deletion(&old);
                if !ours {
                    self.queue_slice_service(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
