//! Which of a Service's pods changed since its last successful sync: what an index of its
//! endpoints plans from, and where the trigger time comes from.

use std::collections::BTreeSet;

/// The pods of one Service changed since its last successful sync: some by name, or every pod
/// (an index just built, which no sync has published yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodChanges {
    Every,
    Some(BTreeSet<String>),
}

impl PodChanges {
    /// Records a change of the pod.
    pub fn record(&mut self, pod: &str) {
        if let PodChanges::Some(pods) = self
            && !pods.contains(pod)
        {
            pods.insert(pod.to_string());
        }
    }

    /// Whether the pod changed.
    pub fn contains(&self, pod: &str) -> bool {
        match self {
            PodChanges::Every => true,
            PodChanges::Some(pods) => pods.contains(pod),
        }
    }

    /// The pods changed, by name; `None` for every pod.
    pub fn names(&self) -> Option<&BTreeSet<String>> {
        match self {
            PodChanges::Every => None,
            PodChanges::Some(pods) => Some(pods),
        }
    }

    /// The changes so far, leaving none.
    pub fn take(&mut self) -> PodChanges {
        std::mem::replace(self, PodChanges::Some(BTreeSet::new()))
    }
}
