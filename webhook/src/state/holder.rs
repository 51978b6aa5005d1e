//! The name of a replica's reservation entries, and how a replica knows the entries of its
//! own previous lives.
//!
//! A name is the pod (or host) name and a random suffix, so that a restarted replica never
//! takes over the entries of its previous life: what that life handed out just before it
//! stopped may still be on its way to kube-apiserver's storage. A pod name is unique in a
//! cluster while the pod exists, and its containers run one at a time, so an entry named
//! after this replica's pod with another suffix belongs to a process of this pod that has
//! stopped: it is dead, whatever its renewal time says, and this replica frees what it
//! lists once nothing it handed out can still reach storage. A host name is no such
//! identity (local replicas share one), so without a pod name no entry is taken for a
//! previous life.

use super::write::random;

/// This replica's entry name, and the pod it names, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    name: String,
    pod: Option<String>,
}

impl Holder {
    /// A fresh name for a replica in pod `pod` (a stable identity), or else named after
    /// the host.
    pub fn new(pod: Option<&str>) -> Self {
        let suffix = random() as u32;
        match pod {
            Some(pod) => Self::of_pod(pod, suffix),
            None => {
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "svcplane".to_string());
                Self::named(format!("{host}-{suffix:08x}"))
            }
        }
    }

    /// The entry name of one life of pod `pod`.
    pub fn of_pod(pod: &str, suffix: u32) -> Self {
        Holder {
            name: format!("{pod}-{suffix:08x}"),
            pod: Some(pod.to_string()),
        }
    }

    /// A name with no identity behind it: no entry is taken for a previous life.
    pub fn named(name: impl Into<String>) -> Self {
        Holder {
            name: name.into(),
            pod: None,
        }
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `other` names an entry of an earlier life of this replica's pod: the pod's
    /// name, a dash and eight hex digits, other than this life's.
    pub fn is_previous_life(&self, other: &str) -> bool {
        let Some(pod) = &self.pod else {
            return false;
        };
        other != self.name
            && other
                .strip_prefix(pod.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|suffix| {
                    suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
                })
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_of_the_same_pod_with_another_suffix_is_a_previous_life() {
        let holder = Holder::of_pod("svcplane-webhook-7d9f-x2k4p", 0xdead_beef);
        assert_eq!(holder.name(), "svcplane-webhook-7d9f-x2k4p-deadbeef");
        assert!(holder.is_previous_life("svcplane-webhook-7d9f-x2k4p-0000abcd"));
        assert!(!holder.is_previous_life("svcplane-webhook-7d9f-x2k4p-deadbeef"));
    }

    #[test]
    fn another_pod_whose_name_extends_this_one_is_not_a_previous_life() {
        let holder = Holder::of_pod("svcplane-webhook", 1);
        // A pod named `svcplane-webhook-abc`: its suffix follows its own name.
        assert!(!holder.is_previous_life("svcplane-webhook-abc-0000abcd"));
        assert!(!holder.is_previous_life("svcplane-webhook-0000abc"));
        assert!(!holder.is_previous_life("svcplane-webhook-0000abcz"));
        assert!(!holder.is_previous_life("svcplane-webhook0000abcd"));
        assert!(!holder.is_previous_life("other-0000abcd"));
    }

    #[test]
    fn a_host_name_is_no_identity() {
        let holder = Holder::named("laptop-00000001");
        assert!(!holder.is_previous_life("laptop-00000002"));
    }
}
