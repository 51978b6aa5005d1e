//! The in-memory copy of one kind of object, fed by its watch and shared by both controllers.
//!
//! Objects are kept per namespace, so a sync lists the pods or slices of one namespace without
//! walking the whole cluster. A relist (the watch restarted) replaces the contents: what was
//! not listed again is reported as deleted, so the controllers hear about deletions they missed
//! while the watch was down. A cache made [`Cache::grouped`] also keeps its objects' names by a
//! group (a slice's Service), so that a sync reads its Service's slices without walking every
//! slice of the namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// The group an object belongs to, if any.
pub type GroupOf<K> = fn(&K) -> Option<&str>;

#[derive(Debug)]
struct Inner<K> {
    objects: HashMap<String, BTreeMap<String, Arc<K>>>,
    /// A group (its namespace and name), then the names of the objects in it.
    groups: HashMap<ObjectKey, BTreeSet<String>>,
    group_of: Option<GroupOf<K>>,
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
                groups: HashMap::new(),
                group_of: None,
                relist: Relist::default(),
                synced: false,
            }),
        }
    }
}

impl<K> Cache<K> {
    /// A cache that also keeps its objects' names by `group_of`, for [`Cache::list_group`].
    pub fn grouped(group_of: GroupOf<K>) -> Self {
        let cache = Cache::default();
        cache.inner.write().expect("cache lock").group_of = Some(group_of);
        cache
    }
}

impl<K> Inner<K> {
    /// Files `key` under the group of `new` instead of that of `old`.
    fn regroup(&mut self, key: &ObjectKey, old: Option<&K>, new: Option<&K>) {
        let Some(group_of) = self.group_of else {
            return;
        };
        let (before, after) = (old.and_then(group_of), new.and_then(group_of));
        if before == after {
            return;
        }
        if let Some(group) = before {
            let group = ObjectKey::new(key.namespace.as_str(), group);
            if let Some(names) = self.groups.get_mut(&group) {
                names.remove(&key.name);
                if names.is_empty() {
                    self.groups.remove(&group);
                }
            }
        }
        if let Some(group) = after {
            self.groups
                .entry(ObjectKey::new(key.namespace.as_str(), group))
                .or_default()
                .insert(key.name.clone());
        }
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let objects = self.objects.get_mut(&key.namespace)?;
        let removed = objects.remove(&key.name);
        if objects.is_empty() {
            self.objects.remove(&key.namespace);
        }
        self.regroup(key, removed.as_deref(), None);
        removed
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

    /// The cached objects of a namespace in `group` that pass `filter`, ordered by name: what
    /// [`Cache::list`] answers for a filter that holds only in the group, without reading
    /// the others. Empty for a cache not [`Cache::grouped`].
    pub fn list_group(
        &self,
        namespace: &str,
        group: &str,
        filter: impl Fn(&K) -> bool,
    ) -> Vec<Arc<K>> {
        let inner = self.inner.read().expect("cache lock");
        let (Some(names), Some(objects)) = (
            inner.groups.get(&ObjectKey::new(namespace, group)),
            inner.objects.get(namespace),
        ) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| objects.get(name))
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
        if inner.group_of.is_some() {
            let old = inner
                .objects
                .get(&key.namespace)
                .and_then(|o| o.get(&key.name))
                .cloned();
            inner.regroup(&key, old.as_deref(), Some(&new));
        }
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
        let cached = inner.remove(&key);
        Change::Deleted(cached.unwrap_or_else(|| Arc::new(object)))
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
        gone.iter().filter_map(|key| inner.remove(key)).collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;
    use proptest::prelude::*;

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

    /// A pod's group in the grouped tests: its label `g`.
    fn group_of(pod: &Pod) -> Option<&str> {
        pod.metadata.labels.as_ref()?.get("g").map(String::as_str)
    }

    fn grouped_pod(namespace: &str, name: &str, group: Option<&str>) -> Pod {
        let mut pod = pod(namespace, name, "1");
        pod.metadata.labels =
            group.map(|g| std::collections::BTreeMap::from([("g".to_string(), g.to_string())]));
        pod
    }

    #[derive(Debug, Clone)]
    enum Op {
        Apply(&'static str, &'static str, Option<&'static str>),
        Delete(&'static str, &'static str),
        Relist(Vec<(&'static str, &'static str, Option<&'static str>)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let namespace = prop::sample::select(vec!["a", "b"]);
        let name = prop::sample::select(vec!["p", "q", "r"]);
        let group = prop::option::of(prop::sample::select(vec!["x", "y"]));
        let object = (namespace.clone(), name.clone(), group);
        prop_oneof![
            4 => object.clone().prop_map(|(ns, n, g)| Op::Apply(ns, n, g)),
            2 => (namespace, name).prop_map(|(ns, n)| Op::Delete(ns, n)),
            1 => prop::collection::vec(object, 0..4).prop_map(Op::Relist),
        ]
    }

    proptest! {
        #[test]
        fn a_group_lists_what_a_filter_on_the_group_lists(
            ops in prop::collection::vec(op(), 0..24),
        ) {
            let cache = Cache::grouped(group_of);
            for op in ops {
                match op {
                    Op::Apply(ns, n, g) => drop(cache.apply(grouped_pod(ns, n, g))),
                    Op::Delete(ns, n) => drop(cache.delete(grouped_pod(ns, n, None))),
                    Op::Relist(objects) => {
                        cache.begin_relist();
                        for (ns, n, g) in objects {
                            cache.apply(grouped_pod(ns, n, g));
                        }
                        cache.end_relist();
                    }
                }
                for ns in ["a", "b"] {
                    for g in ["x", "y"] {
                        prop_assert_eq!(
                            names(&cache.list_group(ns, g, |_| true)),
                            names(&cache.list(ns, |p| group_of(p) == Some(g)))
                        );
                    }
                }
            }
            let with_group = cache.all().iter().filter(|p| group_of(p).is_some()).count();
            let inner = cache.inner.read().unwrap();
            let grouped: usize = inner.groups.values().map(BTreeSet::len).sum();
            prop_assert_eq!(grouped, with_group, "no name outlives its object in the groups");
        }
    }

    #[test]
    fn a_cache_not_grouped_lists_no_group() {
        let cache = Cache::default();
        cache.apply(grouped_pod("a", "p", Some("x")));
        assert!(cache.list_group("a", "x", |_| true).is_empty());
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
