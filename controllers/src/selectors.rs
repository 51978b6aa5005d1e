//! Which Services may select a pod, without testing every Service of its namespace.
//!
//! Every pod change asks which Services select the pod, before and after. Testing each Service
//! of the namespace costs as many selector matches as it has Services, for every pod event.
//! [`SelectorIndex`] files each Service under one label of its selector (the first by key): a
//! Service selects a pod only if the pod carries that label, so the Services filed under the
//! pod's labels, with those whose empty selector takes every pod, are the only ones to test.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;

use crate::pods::Labels;

/// Where one Service is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filed<'a> {
    /// Under the label `key=value`.
    Label { key: &'a str, value: &'a str },
    /// With the Services selecting every pod (an empty selector).
    EveryPod,
}

/// Where a Service goes, by its selector; `None` for one without a selector, which selects no
/// pod.
fn filed(service: &Service) -> Option<(&str, &str, Filed<'_>)> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref()?;
    let selector = service.spec.as_ref()?.selector.as_ref()?;
    let filed = match selector.iter().next() {
        Some((key, value)) => Filed::Label { key, value },
        None => Filed::EveryPod,
    };
    Some((namespace, name, filed))
}

#[derive(Debug, Default)]
struct Namespace {
    /// Label key, then value, then the names of the Services filed under it.
    by_label: HashMap<String, HashMap<String, BTreeSet<String>>>,
    every_pod: BTreeSet<String>,
}

impl Namespace {
    fn names(&mut self, filed: Filed<'_>) -> &mut BTreeSet<String> {
        match filed {
            Filed::Label { key, value } => self
                .by_label
                .entry(key.to_string())
                .or_default()
                .entry(value.to_string())
                .or_default(),
            Filed::EveryPod => &mut self.every_pod,
        }
    }

    fn remove(&mut self, name: &str, filed: Filed<'_>) {
        match filed {
            Filed::Label { key, value } => {
                let Some(values) = self.by_label.get_mut(key) else {
                    return;
                };
                if let Some(names) = values.get_mut(value) {
                    names.remove(name);
                    if names.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.by_label.remove(key);
                }
            }
            Filed::EveryPod => {
                self.every_pod.remove(name);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_label.is_empty() && self.every_pod.is_empty()
    }
}

/// The Services of each namespace, filed by one label of their selector.
#[derive(Debug, Default)]
pub struct SelectorIndex {
    namespaces: HashMap<String, Namespace>,
}

impl SelectorIndex {
    /// Files a Service change: `old` is the version filed before (if any), `new` the one now
    /// (`None` once deleted).
    pub fn update(&mut self, old: Option<&Service>, new: Option<&Service>) {
        let (old, new) = (old.and_then(filed), new.and_then(filed));
        if old == new {
            return;
        }
        if let Some((namespace, name, filed)) = old
            && let Some(services) = self.namespaces.get_mut(namespace)
        {
            services.remove(name, filed);
            if services.is_empty() {
                self.namespaces.remove(namespace);
            }
        }
        if let Some((namespace, name, filed)) = new {
            self.namespaces
                .entry(namespace.to_string())
                .or_default()
                .names(filed)
                .insert(name.to_string());
        }
    }

    /// The names of the Services of `namespace` that may select a pod with `labels`: every one
    /// that does is among them; each must still be tested with
    /// [`selects`](crate::service::selects).
    pub fn candidates<'a>(&'a self, namespace: &str, labels: &Labels) -> BTreeSet<&'a str> {
        let Some(services) = self.namespaces.get(namespace) else {
            return BTreeSet::new();
        };
        let filed = labels
            .iter()
            .filter_map(|(key, value)| services.by_label.get(key)?.get(value));
        services
            .every_pod
            .iter()
            .chain(filed.flatten())
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;
    use proptest::prelude::*;

    use super::*;
    use crate::pods::PodInfo;
    use crate::service::selects;

    fn service(namespace: &str, name: &str, selector: Option<BTreeMap<String, String>>) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(namespace: &str, labels: &BTreeMap<String, String>) -> PodInfo {
        PodInfo {
            namespace: namespace.to_string(),
            name: "p".to_string(),
            labels: Labels::from(labels.clone()),
            ..Default::default()
        }
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[ab]", "[xy]", 0..3)
    }

    fn change() -> impl Strategy<
        Value = (
            &'static str,
            &'static str,
            Option<Option<BTreeMap<String, String>>>,
        ),
    > {
        (
            prop::sample::select(vec!["n", "m"]),
            prop::sample::select(vec!["s", "t", "u"]),
            // None: deleted; Some(None): no selector; Some(Some(map)): that selector.
            prop::option::weighted(0.8, prop::option::weighted(0.8, labels())),
        )
    }

    proptest! {
        /// After any sequence of Service changes, the Services selecting a pod are exactly the
        /// candidates that select it.
        #[test]
        fn the_candidates_hold_every_service_selecting_the_pod(
            changes in prop::collection::vec(change(), 0..16),
            pods in prop::collection::vec((prop::sample::select(vec!["n", "m"]), labels()), 1..6),
        ) {
            let mut index = SelectorIndex::default();
            let mut services: HashMap<(&str, &str), Service> = HashMap::new();
            for (namespace, name, version) in changes {
                let new = version.map(|selector| service(namespace, name, selector));
                let old = services.remove(&(namespace, name));
                index.update(old.as_ref(), new.as_ref());
                if let Some(new) = new {
                    services.insert((namespace, name), new);
                }
            }
            for (namespace, labels) in pods {
                let pod = pod(namespace, &labels);
                let selecting: BTreeSet<&str> = services
                    .values()
                    .filter(|s| selects(s, &pod))
                    .filter_map(|s| s.metadata.name.as_deref())
                    .collect();
                let candidates = index.candidates(namespace, &pod.labels);
                let tested: BTreeSet<&str> = candidates
                    .iter()
                    .copied()
                    .filter(|name| services.get(&(namespace, *name)).is_some_and(|s| selects(s, &pod)))
                    .collect();
                prop_assert_eq!(&tested, &selecting);
                for name in candidates {
                    prop_assert!(services.contains_key(&(namespace, name)), "{} is not a Service of {}", name, namespace);
                }
            }
            if services.values().all(|s| s.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none()) {
                prop_assert!(index.namespaces.is_empty(), "nothing is left filed: {:?}", index);
            }
        }
    }

    #[test]
    fn a_pod_is_tested_against_the_services_filed_under_its_labels_only() {
        let mut index = SelectorIndex::default();
        let app = |v: &str| BTreeMap::from([("app".to_string(), v.to_string())]);
        for (name, selector) in [
            ("web", Some(app("web"))),
            ("db", Some(app("db"))),
            ("all", Some(BTreeMap::new())),
            ("none", None),
        ] {
            index.update(None, Some(&service("n", name, selector)));
        }
        let labels = Labels::from(app("web"));
        assert_eq!(
            index.candidates("n", &labels),
            BTreeSet::from(["all", "web"])
        );
        assert!(index.candidates("m", &labels).is_empty());
    }
}
