//! The in-memory copy of one kind of object, fed by its watch and shared by both controllers.
//!
//! Objects are kept per namespace, so a sync lists the pods or slices of one namespace without
//! walking the whole cluster. A relist (the watch restarted) replaces the contents: what was
//! not listed again is reported as deleted, so the controllers hear about deletions they missed
//! while the watch was down.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kube::Resource;

use crate::pods::PodInfo;

pub use plumbing::ObjectKey;
use plumbing::Relist;

/// Anything a cache can hold: it knows its own key.
pub trait Keyed {
    /// The object's namespaced name.
    fn key(&self) -> ObjectKey;
}

impl<K: Resource> Keyed for K {
    fn key(&self) -> ObjectKey {
        ObjectKey::of(self)
    }
}

impl Keyed for PodInfo {
    fn key(&self) -> ObjectKey {
        ObjectKey::new(self.namespace.clone(), self.name.clone())
    }
}

/// What applying a watch event did to the cache.
#[derive(Debug)]
pub enum Change<K> {
    /// The object was added or replaced; `old` is the version it replaced.
    Applied {
        /// The version before, if any.
        old: Option<Arc<K>>,
        /// The version now cached.
        new: Arc<K>,
    },
    /// The object is gone; this is its last known version.
    Deleted(Arc<K>),
}

#[derive(Debug)]
struct Inner<K> {
    objects: HashMap<String, BTreeMap<String, Arc<K>>>,
    relist: Relist,
    synced: bool,
}

/// The cached objects of one kind.
#[derive(Debug)]
pub struct Cache<K> {
    inner: RwLock<Inner<K>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            inner: RwLock::new(Inner {
                objects: HashMap::new(),
                relist: Relist::default(),
                synced: false,
            }),
        }
    }
}

impl<K: Keyed> Cache<K> {
    /// The cached object, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let inner = self.inner.read().expect("cache lock");
        inner.objects.get(namespace)?.get(name).cloned()
    }

    /// The cached objects of a namespace (empty for cluster-scoped kinds) that pass `filter`,
    /// ordered by name.
    pub fn list(&self, namespace: &str, filter: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        let inner = self.inner.read().expect("cache lock");
        inner
            .objects
            .get(namespace)
            .into_iter()
            .flat_map(|objects| objects.values())
            .filter(|object| filter(object))
            .cloned()
            .collect()
    }

    /// Every cached object.
    pub fn all(&self) -> Vec<Arc<K>> {
        let inner = self.inner.read().expect("cache lock");
        inner
            .objects
            .values()
            .flat_map(|objects| objects.values().cloned())
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        let inner = self.inner.read().expect("cache lock");
        inner.objects.values().map(BTreeMap::len).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full list has been cached.
    pub fn is_synced(&self) -> bool {
        self.inner.read().expect("cache lock").synced
    }

    /// Caches an added or modified object.
    pub(crate) fn apply(&self, object: K) -> Change<K> {
        let key = object.key();
        let new = Arc::new(object);
        let mut inner = self.inner.write().expect("cache lock");
        inner.relist.seen(&key);
        let old = inner
            .objects
            .entry(key.namespace)
            .or_default()
            .insert(key.name, new.clone());
        Change::Applied { old, new }
    }

    /// Removes a deleted object; returns the last version known (the cached one, else the one
    /// the watch reported).
    pub(crate) fn delete(&self, object: K) -> Change<K> {
        let key = object.key();
        let mut inner = self.inner.write().expect("cache lock");
        let cached = Self::remove(&mut inner, &key);
        Change::Deleted(cached.unwrap_or_else(|| Arc::new(object)))
    }

    fn remove(inner: &mut Inner<K>, key: &ObjectKey) -> Option<Arc<K>> {
        let objects = inner.objects.get_mut(&key.namespace)?;
        let removed = objects.remove(&key.name);
        if objects.is_empty() {
            inner.objects.remove(&key.namespace);
        }
        removed
    }

    /// Keeps an object that was listed again but could not be read: the relist must not count
    /// it as deleted.
    pub(crate) fn keep(&self, key: ObjectKey) {
        self.inner.write().expect("cache lock").relist.seen(&key);
    }

    /// The cache of a kind that is not watched: it stays empty and counts as synced.
    pub(crate) fn mark_listed(&self) {
        self.inner.write().expect("cache lock").synced = true;
    }

    /// A relist starts: every object must be listed again to stay.
    pub(crate) fn begin_relist(&self) {
        self.inner.write().expect("cache lock").relist.start();
    }

    /// The relist is complete: objects not listed again are removed and returned. The cache is
    /// synced from now on.
    pub(crate) fn end_relist(&self) -> Vec<Arc<K>> {
        let mut inner = self.inner.write().expect("cache lock");
        inner.synced = true;
        let known: Vec<ObjectKey> = inner
            .objects
            .iter()
            .flat_map(|(namespace, objects)| {
                objects
                    .keys()
                    .map(|name| ObjectKey::new(namespace.clone(), name.clone()))
            })
            .collect();
        let gone = inner.relist.finish(known);
        gone.iter()
            .filter_map(|key| Self::remove(&mut inner, key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(namespace: &str, name: &str, version: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| ObjectKey::of(p.as_ref()).to_string())
            .collect()
    }

    #[test]
    fn apply_replaces_and_reports_the_old_version() {
        let cache = Cache::default();
        assert!(matches!(
            cache.apply(pod("a", "p", "1")),
            Change::Applied { old: None, .. }
        ));
        let Change::Applied { old, new } = cache.apply(pod("a", "p", "2")) else {
            panic!("an apply")
        };
        assert_eq!(old.unwrap().metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(new.metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn lists_one_namespace_in_name_order() {
        let cache = Cache::default();
        for (ns, name) in [("a", "q"), ("b", "x"), ("a", "p")] {
            cache.apply(pod(ns, name, "1"));
        }
        assert_eq!(names(&cache.list("a", |_| true)), vec!["a/p", "a/q"]);
        assert_eq!(
            names(&cache.list("a", |p| p.metadata.name.as_deref() == Some("q"))),
            vec!["a/q"]
        );
        assert!(cache.list("c", |_| true).is_empty());
        assert_eq!(cache.all().len(), 3);
    }

    #[test]
    fn delete_returns_the_cached_version() {
        let cache = Cache::default();
        cache.apply(pod("a", "p", "7"));
        let Change::Deleted(last) = cache.delete(pod("a", "p", "8")) else {
            panic!("a deletion")
        };
        assert_eq!(last.metadata.resource_version.as_deref(), Some("7"));
        assert!(cache.get("a", "p").is_none());
        let Change::Deleted(unknown) = cache.delete(pod("a", "z", "9")) else {
            panic!("a deletion")
        };
        assert_eq!(unknown.metadata.resource_version.as_deref(), Some("9"));
    }

    #[test]
    fn a_relist_removes_what_was_not_listed_again() {
        let cache = Cache::default();
        assert!(!cache.is_synced());
        cache.begin_relist();
        cache.apply(pod("a", "p", "1"));
        cache.apply(pod("a", "q", "1"));
        cache.apply(pod("b", "r", "1"));
        assert!(cache.end_relist().is_empty());
        assert!(cache.is_synced());

        cache.begin_relist();
        cache.apply(pod("a", "p", "2"));
        cache.keep(ObjectKey::new("b", "r"));
        let gone = cache.end_relist();
        assert_eq!(names(&gone), vec!["a/q"]);
        assert_eq!(names(&cache.list("a", |_| true)), vec!["a/p"]);
        assert!(cache.get("b", "r").is_some());
    }
}
