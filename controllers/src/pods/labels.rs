//! A pod's labels as the pod cache keeps them.
//!
//! A pod has a handful of labels (its app's, `pod-template-hash`). Kept as a `BTreeMap`, they
//! cost a tree node of room for eleven entries per pod, about 540 bytes, as much as the rest of
//! a [`PodInfo`](super::PodInfo); a sorted list costs what the labels hold.

use std::collections::BTreeMap;

/// Labels sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// The value of the label, if the pod has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The labels in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(labels: BTreeMap<String, String>) -> Self {
        Labels(
            labels
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    /// A key given twice keeps its last value, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Labels::from(map)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn answers_as_the_map_it_was_made_from(
            pairs in prop::collection::vec(("[a-d]{0,2}", "[x-z]{0,2}"), 0..8),
            key in "[a-e]{0,2}",
        ) {
            let map: BTreeMap<String, String> = pairs.iter().cloned().collect();
            let labels: Labels = pairs.into_iter().collect();
            prop_assert_eq!(labels.get(&key), map.get(&key).map(String::as_str));
            prop_assert!(labels.iter().eq(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }
    }

    #[test]
    fn looks_up_every_label_and_no_other() {
        let labels: Labels = [
            ("tier", "web"),
            ("app", "shop"),
            ("pod-template-hash", "7d9c"),
        ]
        .into_iter()
        .collect();
        assert_eq!(labels.get("app"), Some("shop"));
        assert_eq!(labels.get("pod-template-hash"), Some("7d9c"));
        assert_eq!(labels.get("tier"), Some("web"));
        assert_eq!(labels.get("zone"), None);
        assert_eq!(labels.get(""), None);
        assert_eq!(
            labels.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["app", "pod-template-hash", "tier"]
        );
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value() {
        let labels: Labels = [("app", "old"), ("app", "new")].into_iter().collect();
        assert_eq!(labels.iter().collect::<Vec<_>>(), [("app", "new")]);
    }

    #[test]
    fn no_labels() {
        let labels = Labels::default();
        assert_eq!(labels.get("app"), None);
        assert_eq!(labels, Labels::from(BTreeMap::new()));
    }
}
