//! Which namespace each pod IP belongs to, from a Pod watch: what the cross-namespace check
//! of user-written endpoints (CVE-2021-25740) needs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;

use crate::validate::PodIps;

/// What the index keeps of a pod: its key, namespace and IPs (none for host-network pods,
/// whose IP is the node's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddresses {
    key: String,
    namespace: String,
    ips: Vec<IpAddr>,
}

impl From<Pod> for PodAddresses {
    fn from(pod: Pod) -> Self {
        let namespace = pod.metadata.namespace.unwrap_or_default();
        let key = format!("{namespace}/{}", pod.metadata.name.unwrap_or_default());
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
                .filter_map(|ip| ip.ip.parse().ok())
                .collect()
        };
        PodAddresses {
            key,
            namespace,
            ips,
        }
    }
}

/// Pod IPs and their namespaces. Host-network pods are left out: their IP is the node's.
#[derive(Debug, Default)]
pub struct PodIpIndex {
    inner: RwLock<Index>,
}

#[derive(Debug, Default)]
struct Index {
    namespace_of: HashMap<IpAddr, String>,
    ips_of: HashMap<String, Vec<IpAddr>>,
    /// During a relist, the pods listed so far (or kept, when unreadable).
    listed: Option<HashSet<String>>,
}

impl PodIpIndex {
    /// A pod was created or changed (or listed during a relist).
    pub fn apply(&self, pod: PodAddresses) {
        let mut index = self.inner.write().expect("pod index lock poisoned");
        index.remove(&pod.key);
        if let Some(listed) = &mut index.listed {
            listed.insert(pod.key.clone());
        }
        for &ip in &pod.ips {
            index.namespace_of.insert(ip, pod.namespace.clone());
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
        self.inner.write().expect("pod index lock poisoned").listed = Some(HashSet::new());
    }

    /// A pod the relist saw but could not read: what the index knew of it stays.
    pub fn relist_keep(&self, key: String) {
        if let Some(listed) = &mut self.inner.write().expect("pod index lock poisoned").listed {
            listed.insert(key);
        }
    }

    /// The relist is over: pods it did not list are gone.
    pub fn relist_done(&self) {
        let mut index = self.inner.write().expect("pod index lock poisoned");
        let Some(listed) = index.listed.take() else {
            return;
        };
        let gone: Vec<String> = index
            .ips_of
            .keys()
            .filter(|key| !listed.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            index.remove(&key);
        }
    }
}

impl Index {
    fn remove(&mut self, key: &str) {
        for ip in self.ips_of.remove(key).unwrap_or_default() {
            self.namespace_of.remove(&ip);
        }
    }
}

impl PodIps for PodIpIndex {
    fn namespace_of(&self, ip: IpAddr) -> Option<String> {
        self.inner
            .read()
            .expect("pod index lock poisoned")
            .namespace_of
            .get(&ip)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, ip: &str, host_network: bool) -> PodAddresses {
        serde_json::from_value::<Pod>(json!({
            "metadata": { "namespace": namespace, "name": name },
            "spec": { "hostNetwork": host_network, "containers": [] },
            "status": { "podIPs": [{ "ip": ip }] },
        }))
        .unwrap()
        .into()
    }

    #[test]
    fn pod_ips_follow_their_pods() {
        let index = PodIpIndex::default();
        let ip: IpAddr = "192.168.1.10".parse().unwrap();
        index.apply(pod("team-a", "web", "192.168.1.10", false));
        assert_eq!(index.namespace_of(ip).as_deref(), Some("team-a"));
        index.apply(pod("team-a", "web", "192.168.1.11", false));
        assert_eq!(
            index.namespace_of(ip),
            None,
            "the pod's old IP is forgotten"
        );
        index.delete(&pod("team-a", "web", "192.168.1.11", false));
        assert_eq!(index.namespace_of("192.168.1.11".parse().unwrap()), None);
        index.apply(pod("kube-system", "proxy", "10.0.0.5", true));
        assert_eq!(
            index.namespace_of("10.0.0.5".parse().unwrap()),
            None,
            "host-network pods carry the node's IP"
        );
    }

    #[test]
    fn a_relist_forgets_unlisted_pods_and_keeps_unreadable_ones() {
        let index = PodIpIndex::default();
        index.apply(pod("a", "listed", "10.1.0.1", false));
        index.apply(pod("a", "gone", "10.1.0.2", false));
        index.apply(pod("b", "unreadable", "10.1.0.3", false));
        index.relist_start();
        assert_eq!(
            index.namespace_of("10.1.0.2".parse().unwrap()).as_deref(),
            Some("a"),
            "known pods stay answerable while the relist runs"
        );
        index.apply(pod("a", "listed", "10.1.0.1", false));
        index.relist_keep("b/unreadable".to_string());
        index.relist_done();
        let namespace = |ip: &str| index.namespace_of(ip.parse().unwrap());
        assert_eq!(namespace("10.1.0.1").as_deref(), Some("a"));
        assert_eq!(namespace("10.1.0.2"), None);
        assert_eq!(namespace("10.1.0.3").as_deref(), Some("b"));
    }
}
