//! Which namespaces' pods hold each pod IP, from a Pod watch: what the cross-namespace check
//! of user-written endpoints (CVE-2021-25740) needs.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;
use plumbing::{ObjectKey, Relist};
use tokio::sync::watch;

use crate::validate::PodIps;
use crate::validate::addresses::parse_ip;

/// What the index keeps of a pod: its key (with its namespace) and its IPs in canonical
/// form (none for host-network pods, whose IP is the node's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddresses {
    key: ObjectKey,
    ips: Vec<IpAddr>,
}

impl From<Pod> for PodAddresses {
    fn from(pod: Pod) -> Self {
        let key = ObjectKey {
            namespace: pod.metadata.namespace.unwrap_or_default(),
            name: pod.metadata.name.unwrap_or_default(),
        };
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ips = if host_network {
            Vec::new()
        } else {
            pod.status
                .iter()
                .flat_map(|s| s.pod_ips.iter().flatten())
                .filter_map(|ip| parse_ip(&ip.ip))
                .collect()
        };
        PodAddresses { key, ips }
    }
}

/// Pod IPs and the pods holding them. An IP may have several holders: a new pod can get an
/// IP before the deletion of the pod that had it is seen, and each holder is forgotten only
/// when it goes. Host-network pods are left out: their IP is the node's.
#[derive(Debug)]
pub struct PodIpIndex {
    inner: RwLock<Index>,
    /// Whether a first complete list has been applied.
    synced: watch::Sender<bool>,
}

impl Default for PodIpIndex {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            synced: watch::channel(false).0,
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    holders: HashMap<IpAddr, BTreeSet<ObjectKey>>,
    ips_of: HashMap<ObjectKey, Vec<IpAddr>>,
    relist: Relist,
}

impl PodIpIndex {
    /// A pod was created or changed (or listed during a relist).
    pub fn apply(&self, pod: PodAddresses) {
        let mut index = self.inner.write().expect("pod index lock poisoned");
        index.remove(&pod.key);
        index.relist.seen(&pod.key);
        for &ip in &pod.ips {
            index.holders.entry(ip).or_default().insert(pod.key.clone());
        }
        if !pod.ips.is_empty() {
            index.ips_of.insert(pod.key, pod.ips);
        }
    }

    /// A pod was deleted.
    pub fn delete(&self, pod: &PodAddresses) {
        self.inner
            .write()
            .expect("pod index lock poisoned")
            .remove(&pod.key);
    }

    /// A relist starts: what it does not list is forgotten when it is done.
    pub fn relist_start(&self) {
        self.inner
            .write()
            .expect("pod index lock poisoned")
            .relist
            .start();
    }

    /// A pod the relist saw but could not read: what the index knew of it stays.
    pub fn relist_keep(&self, key: ObjectKey) {
        self.inner
            .write()
            .expect("pod index lock poisoned")
            .relist
            .seen(&key);
    }

    /// The relist is over: pods it did not list are gone, and the index is synced (from the
    /// first relist on, for good: later relists keep answering from what was known).
    pub fn relist_done(&self) {
        {
            let mut index = self.inner.write().expect("pod index lock poisoned");
            if !index.relist.is_running() {
                return;
            }
            let known: Vec<ObjectKey> = index.ips_of.keys().cloned().collect();
            for key in index.relist.finish(known) {
                index.remove(&key);
            }
        }
        self.synced.send_replace(true);
    }

    /// Resolves once the first complete list has been applied.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`: this cannot fail while we borrow it.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

impl Index {
    fn remove(&mut self, key: &ObjectKey) {
        for ip in self.ips_of.remove(key).unwrap_or_default() {
            if let Some(holders) = self.holders.get_mut(&ip) {
                holders.remove(key);
                if holders.is_empty() {
                    self.holders.remove(&ip);
                }
            }
        }
    }
}

impl PodIps for PodIpIndex {
    fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn namespaces_of(&self, ip: IpAddr) -> BTreeSet<String> {
        self.inner
            .read()
            .expect("pod index lock poisoned")
            .holders
            .get(&ip)
            .into_iter()
            .flatten()
            .map(|key| key.namespace.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, ips: &[&str], host_network: bool) -> PodAddresses {
        let ips: Vec<_> = ips.iter().map(|ip| json!({ "ip": ip })).collect();
        serde_json::from_value::<Pod>(json!({
            "metadata": { "namespace": namespace, "name": name },
            "spec": { "hostNetwork": host_network, "containers": [] },
            "status": { "podIPs": ips },
        }))
        .unwrap()
        .into()
    }

    fn namespaces(index: &PodIpIndex, ip: &str) -> Vec<String> {
        index
            .namespaces_of(ip.parse().unwrap())
            .into_iter()
            .collect()
    }

    fn key(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    #[test]
    fn pod_ips_follow_their_pods() {
        let index = PodIpIndex::default();
        index.apply(pod("team-a", "web", &["192.168.1.10"], false));
        assert_eq!(namespaces(&index, "192.168.1.10"), ["team-a"]);
        index.apply(pod("team-a", "web", &["192.168.1.11"], false));
        assert!(
            namespaces(&index, "192.168.1.10").is_empty(),
            "the pod's old IP is forgotten"
        );
        index.delete(&pod("team-a", "web", &["192.168.1.11"], false));
        assert!(namespaces(&index, "192.168.1.11").is_empty());
        index.apply(pod("kube-system", "proxy", &["10.0.0.5"], true));
        assert!(
            namespaces(&index, "10.0.0.5").is_empty(),
            "host-network pods carry the node's IP"
        );
    }

    #[test]
    fn a_reused_ip_keeps_its_new_holder_when_the_old_one_goes() {
        let index = PodIpIndex::default();
        index.apply(pod("team-a", "old", &["10.244.0.7"], false));
        index.apply(pod("team-b", "new", &["10.244.0.7"], false));
        assert_eq!(namespaces(&index, "10.244.0.7"), ["team-a", "team-b"]);
        index.delete(&pod("team-a", "old", &["10.244.0.7"], false));
        assert_eq!(namespaces(&index, "10.244.0.7"), ["team-b"]);
        index.delete(&pod("team-b", "new", &[], false));
        assert!(
            namespaces(&index, "10.244.0.7").is_empty(),
            "a deletion carrying no status still forgets what the pod held"
        );
    }

    #[test]
    fn two_pods_of_one_namespace_on_one_ip_are_two_holders() {
        let index = PodIpIndex::default();
        index.apply(pod("team-a", "old", &["10.244.0.7"], false));
        index.apply(pod("team-a", "new", &["10.244.0.7"], false));
        index.delete(&pod("team-a", "old", &[], false));
        assert_eq!(namespaces(&index, "10.244.0.7"), ["team-a"]);
    }

    #[test]
    fn pod_ips_are_kept_in_canonical_form() {
        let index = PodIpIndex::default();
        index.apply(pod(
            "team-b",
            "web",
            &["::ffff:10.244.0.9", "fd00:0:0:0::0009"],
            false,
        ));
        assert_eq!(namespaces(&index, "10.244.0.9"), ["team-b"]);
        assert_eq!(namespaces(&index, "fd00::9"), ["team-b"]);
    }

    #[test]
    fn a_relist_forgets_unlisted_pods_and_keeps_unreadable_ones() {
        let index = PodIpIndex::default();
        index.apply(pod("a", "listed", &["10.1.0.1"], false));
        index.apply(pod("a", "gone", &["10.1.0.2"], false));
        index.apply(pod("b", "unreadable", &["10.1.0.3"], false));
        index.apply(pod("c", "gone-too", &["10.1.0.3"], false));
        index.relist_start();
        assert_eq!(
            namespaces(&index, "10.1.0.2"),
            ["a"],
            "known pods stay answerable while the relist runs"
        );
        index.apply(pod("a", "listed", &["10.1.0.1"], false));
        index.relist_keep(key("b", "unreadable"));
        index.relist_done();
        assert_eq!(namespaces(&index, "10.1.0.1"), ["a"]);
        assert!(namespaces(&index, "10.1.0.2").is_empty());
        assert_eq!(namespaces(&index, "10.1.0.3"), ["b"]);
    }

    #[test]
    fn a_relist_that_lists_a_new_holder_keeps_both_until_the_old_one_goes() {
        let index = PodIpIndex::default();
        index.apply(pod("a", "old", &["10.1.0.4"], false));
        index.relist_start();
        index.apply(pod("b", "new", &["10.1.0.4"], false));
        index.relist_keep(key("a", "old"));
        index.relist_done();
        assert_eq!(namespaces(&index, "10.1.0.4"), ["a", "b"]);
        index.relist_start();
        index.apply(pod("b", "new", &["10.1.0.4"], false));
        index.relist_done();
        assert_eq!(namespaces(&index, "10.1.0.4"), ["b"]);
    }

    #[tokio::test]
    async fn the_index_is_synced_from_the_end_of_its_first_list_on() {
        let index = PodIpIndex::default();
        assert!(!index.synced());
        index.relist_start();
        index.apply(pod("a", "web", &["10.1.0.1"], false));
        assert!(!index.synced(), "a list in progress is not a complete one");
        index.relist_done();
        assert!(index.synced());
        tokio::time::timeout(std::time::Duration::from_secs(1), index.wait_synced())
            .await
            .expect("synced");
        index.relist_start();
        assert!(index.synced(), "a later relist answers from what is known");
    }
}
