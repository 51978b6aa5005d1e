//! Which namespace each pod IP belongs to, from a Pod watch: what the cross-namespace check
//! of user-written endpoints (CVE-2021-25740) needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;

use crate::validate::PodIps;

/// Pod IPs and their namespaces. Host-network pods are left out: their IP is the node's.
#[derive(Debug, Default)]
pub struct PodIpIndex {
    inner: RwLock<Index>,
}

#[derive(Debug, Default)]
struct Index {
    namespace_of: HashMap<IpAddr, String>,
    ips_of: HashMap<String, Vec<IpAddr>>,
}

impl PodIpIndex {
    /// A pod was created or changed.
    pub fn apply(&self, pod: &Pod) {
        let key = key(pod);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ips: Vec<IpAddr> = if host_network {
            Vec::new()
        } else {
            pod.status
                .iter()
                .flat_map(|s| s.pod_ips.iter().flatten())
                .filter_map(|ip| ip.ip.parse().ok())
                .collect()
        };
        let mut index = self.inner.write().expect("pod index lock poisoned");
        index.remove(&key);
        for &ip in &ips {
            index.namespace_of.insert(ip, namespace.clone());
        }
        if !ips.is_empty() {
            index.ips_of.insert(key, ips);
        }
    }

    /// A pod was deleted.
    pub fn delete(&self, pod: &Pod) {
        self.inner
            .write()
            .expect("pod index lock poisoned")
            .remove(&key(pod));
    }

    /// Forgets everything (before a relist).
    pub fn clear(&self) {
        *self.inner.write().expect("pod index lock poisoned") = Index::default();
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

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, ip: &str, host_network: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "namespace": namespace, "name": name },
            "spec": { "hostNetwork": host_network, "containers": [] },
            "status": { "podIPs": [{ "ip": ip }] },
        }))
        .unwrap()
    }

    #[test]
    fn pod_ips_follow_their_pods() {
        let index = PodIpIndex::default();
        let ip: IpAddr = "192.168.1.10".parse().unwrap();
        index.apply(&pod("team-a", "web", "192.168.1.10", false));
        assert_eq!(index.namespace_of(ip).as_deref(), Some("team-a"));
        index.apply(&pod("team-a", "web", "192.168.1.11", false));
        assert_eq!(
            index.namespace_of(ip),
            None,
            "the pod's old IP is forgotten"
        );
        index.delete(&pod("team-a", "web", "192.168.1.11", false));
        assert_eq!(index.namespace_of("192.168.1.11".parse().unwrap()), None);
        index.apply(&pod("kube-system", "proxy", "10.0.0.5", true));
        assert_eq!(
            index.namespace_of("10.0.0.5".parse().unwrap()),
            None,
            "host-network pods carry the node's IP"
        );
    }
}
