//! The Kubernetes plumbing svcplane's controllers and webhook share: watches restarted with
//! backoff that no single object can stop, the relist bookkeeping ([`Relist`]) of the indexes
//! they feed with one key type ([`ObjectKey`]), Lease election ([`lease`]), readiness
//! ([`Readiness`]) and a step around a client's requests ([`client::around`]).
//!
//! A typed watch fails as a whole when one object in a list or an event does not deserialize,
//! and then fails again on every retry. Here each object is read on its own: one that cannot be
//! read is reported by its key (callers keep what they knew of it) while the watch goes on.

use std::borrow::Cow;
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::api::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::value::RawValue;

pub mod client;
pub mod lease;
mod readiness;
mod relist;
pub use readiness::{Readiness, ReadinessGate};
pub use relist::Relist;

/// An object as the watch delivered it: readable as `K`, or only its metadata.
#[derive(Debug, Clone)]
pub enum Lenient<K> {
    Readable(K),
    Unreadable {
        metadata: Box<ObjectMeta>,
        error: String,
    },
}

/// Only the metadata of an object that cannot be read as a whole.
#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The object's text is kept and read twice only when it is unreadable; a generic JSON
        // tree in between would double the allocations of every event.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        match serde_json::from_str::<K>(raw.get()) {
            Ok(object) => Ok(Lenient::Readable(object)),
            Err(error) => Ok(Lenient::Unreadable {
                metadata: Box::new(
                    serde_json::from_str::<MetadataOnly>(raw.get())
                        .map(|m| m.metadata)
                        .unwrap_or_default(),
                ),
                error: error.to_string(),
            }),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Readable(object) => object.meta(),
            Lenient::Unreadable { metadata, .. } => metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Readable(object) => object.meta_mut(),
            Lenient::Unreadable { metadata, .. } => metadata,
        }
    }
}

/// What the watch of one kind reports.
#[derive(Debug)]
pub enum Event<K> {
    /// Added or modified (or listed again during a relist).
    Apply(K),
    /// Deleted; the last state the watch saw, perhaps only its metadata.
    Delete(K),
    /// An object that could not be read: whoever knew it keeps it as it was (during a relist,
    /// as if it had been listed).
    Unreadable(ObjectKey),
    /// The watch (re)started: a full list follows.
    RelistStart,
    /// The full list is over.
    RelistDone,
}

/// A namespaced name; cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object.
    pub fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        ObjectKey::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

fn readable<K: Resource<DynamicType = ()> + Default>(object: Lenient<K>) -> Result<K, ObjectKey> {
    match object {
        Lenient::Readable(object) => Ok(object),
        Lenient::Unreadable { metadata, error } => {
            let key = ObjectKey::new(
                metadata.namespace.unwrap_or_default(),
                metadata.name.unwrap_or_default(),
            );
            tracing::warn!(kind = %K::kind(&()), object = %key, %error, "skipping an object that cannot be read");
            Err(key)
        }
    }
}

fn convert<K, T>(event: watcher::Event<Lenient<K>>, trim: fn(K) -> T) -> Event<T>
where
    K: Resource<DynamicType = ()> + Default,
{
    match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
            match readable(object) {
                Ok(object) => Event::Apply(trim(object)),
                Err(key) => Event::Unreadable(key),
            }
        }
        watcher::Event::Delete(object) => Event::Delete(match object {
            Lenient::Readable(object) => trim(object),
            // The key is all a deletion needs.
            Lenient::Unreadable { metadata, .. } => {
                let mut object = K::default();
                *object.meta_mut() = *metadata;
                trim(object)
            }
        }),
        watcher::Event::Init => Event::RelistStart,
        watcher::Event::InitDone => Event::RelistDone,
    }
}

/// Watches the objects of kind `K` in every namespace that `config` selects, each cut down by
/// `trim` to what the caller keeps. Errors are logged and the watch restarted with the default
/// backoff; the stream never ends.
pub fn watch<K, T>(
    client: Client,
    config: watcher::Config,
    trim: fn(K) -> T,
) -> impl Stream<Item = Event<T>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Default + Send + 'static,
    T: Send + 'static,
{
    let api: Api<Lenient<K>> = Api::all(client);
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| async move {
            match event {
                Ok(event) => Some(convert(event, trim)),
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff");
                    None
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    /// Reads `value` from its text, as the client reads what the apiserver sends.
    fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> serde_json::Result<T> {
        serde_json::from_str(&value.to_string())
    }

    #[test]
    fn an_unreadable_object_keeps_its_metadata() {
        let good: Lenient<Pod> = from_json(serde_json::json!({
            "metadata": { "name": "a", "namespace": "ns" },
            "spec": { "containers": [{ "name": "app" }] },
        }))
        .unwrap();
        assert!(matches!(good, Lenient::Readable(_)));

        let bad: Lenient<Pod> = from_json(serde_json::json!({
            "metadata": { "name": "b", "namespace": "ns" },
            "spec": { "containers": "not a list" },
        }))
        .unwrap();
        let Lenient::Unreadable { metadata, error } = &bad else {
            panic!("unreadable expected")
        };
        assert_eq!(metadata.name.as_deref(), Some("b"));
        assert!(error.contains("invalid type"), "{error}");

        let Event::Delete(deleted) = convert(watcher::Event::Delete(bad.clone()), |p| p) else {
            panic!("a deletion")
        };
        assert_eq!(deleted.metadata.name.as_deref(), Some("b"));
        assert_eq!(deleted.metadata.namespace.as_deref(), Some("ns"));
        let Event::Unreadable(key) = convert(watcher::Event::InitApply(bad), |p| p) else {
            panic!("unreadable")
        };
        assert_eq!(key, ObjectKey::new("ns", "b"));
    }

    #[test]
    fn a_list_with_one_bad_item_still_reads_the_others() {
        let list: kube::core::ObjectList<Lenient<Pod>> = from_json(serde_json::json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": { "resourceVersion": "5" },
            "items": [
                { "metadata": { "name": "a" }, "spec": { "containers": [] } },
                { "metadata": { "name": "b" }, "spec": { "nodeName": 7 } },
            ],
        }))
        .unwrap();
        let readable: Vec<bool> = list
            .items
            .iter()
            .map(|i| matches!(i, Lenient::Readable(_)))
            .collect();
        assert_eq!(readable, vec![true, false]);
    }

    #[test]
    fn watch_lines_are_read_one_object_at_a_time() {
        let lines = [
            r#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","resourceVersion":"7"},"spec":{"containers":[{"name":"app"}]},"status":{"podIP":"10.0.0.1"}}}"#,
            r#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"b","namespace":"ns"},"spec":{"containers":"not a list"}}}"#,
        ];
        let events: Vec<kube::core::WatchEvent<Lenient<Pod>>> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let kube::core::WatchEvent::Added(Lenient::Readable(pod)) = &events[0] else {
            panic!("a readable pod expected: {:?}", events[0])
        };
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            pod.status.as_ref().unwrap().pod_ip.as_deref(),
            Some("10.0.0.1")
        );
        let kube::core::WatchEvent::Modified(Lenient::Unreadable { metadata, .. }) = &events[1]
        else {
            panic!("an unreadable pod expected: {:?}", events[1])
        };
        assert_eq!(metadata.name.as_deref(), Some("b"));
    }
}
