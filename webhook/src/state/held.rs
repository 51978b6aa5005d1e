//! Which values each Service holds, kept from the Service watch, so that values a Service
//! gives up are released once the write that drops them is observed.

use std::collections::{HashMap, HashSet};

use allocator::{ServiceSpec, Value};
use plumbing::{ObjectKey, Relist};

/// The values a Service holds: its ClusterIPs and node ports (healthCheckNodePort included).
pub fn held_values(spec: &ServiceSpec) -> Vec<Value> {
    let mut values: Vec<Value> = spec
        .held_cluster_ips()
        .into_iter()
        .map(Value::ClusterIp)
        .collect();
    values.extend(spec.held_ports().into_iter().map(Value::NodePort));
    values
}

/// `values` for a log line: the first few and how many there are in all, so that a line
/// stays short however many values an operation touched.
pub fn describe(values: &[Value]) -> String {
    const SHOWN: usize = 8;
    let shown: Vec<String> = values.iter().take(SHOWN).map(ToString::to_string).collect();
    match values.len() {
        n if n <= SHOWN => format!("[{}]", shown.join(", ")),
        n => format!("[{}, ...] ({n} values)", shown.join(", ")),
    }
}

/// Values held per Service, fed by watch events.
#[derive(Debug, Default)]
pub struct HeldIndex {
    by_service: HashMap<ObjectKey, Vec<Value>>,
    relist: Relist,
    /// Values Services gave up while a relist is under way: released when it is done.
    given_up: Vec<Value>,
}

impl HeldIndex {
    /// A Service was created or changed: returns the values it gave up that no other
    /// Service holds.
    pub fn apply(&mut self, service: &ObjectKey, values: Vec<Value>) -> Vec<Value> {
        self.relist.seen(service);
        let previous = self
            .by_service
            .insert(service.clone(), values)
            .unwrap_or_default();
        self.released(previous)
    }

    /// A Service was deleted: returns its values that no other Service holds.
    pub fn delete(&mut self, service: &ObjectKey) -> Vec<Value> {
        let previous = self.by_service.remove(service).unwrap_or_default();
        self.released(previous)
    }

    /// A relist starts (after a watch restart, deletions may have been missed).
    pub fn relist_start(&mut self) {
        self.relist.start();
    }

    /// A Service seen during the relist: what it gave up is released when the relist is
    /// done.
    pub fn relist_apply(&mut self, service: &ObjectKey, values: Vec<Value>) {
        let given_up = self.apply(service, values);
        self.given_up.extend(given_up);
    }

    /// A Service the relist saw but could not read: it keeps the values it held before.
    pub fn relist_keep(&mut self, service: &ObjectKey) {
        self.relist.seen(service);
    }

    /// The relist is complete: returns the values held before and by no Service now.
    pub fn relist_done(&mut self) -> Vec<Value> {
        let known: Vec<ObjectKey> = self.by_service.keys().cloned().collect();
        let mut candidates = std::mem::take(&mut self.given_up);
        for gone in self.relist.finish(known) {
            candidates.extend(self.by_service.remove(&gone).unwrap_or_default());
        }
        self.released(candidates)
    }

    /// Every Service with its values.
    pub fn services(&self) -> impl Iterator<Item = (&ObjectKey, &Vec<Value>)> {
        self.by_service.iter()
    }

    fn released(&self, candidates: Vec<Value>) -> Vec<Value> {
        if candidates.is_empty() {
            return candidates;
        }
        let held: HashSet<Value> = self.by_service.values().flatten().copied().collect();
        let mut released: Vec<Value> = candidates
            .into_iter()
            .filter(|v| !held.contains(v))
            .collect();
        released.sort();
        released.dedup();
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespaced: &str) -> ObjectKey {
        let (namespace, name) = namespaced.split_once('/').unwrap();
        ObjectKey::new(namespace, name)
    }

    fn ip(s: &str) -> Value {
        Value::ClusterIp(s.parse().unwrap())
    }

    #[test]
    fn long_lists_are_described_by_their_start_and_count() {
        let ports: Vec<Value> = (30000..30010).map(Value::NodePort).collect();
        assert_eq!(describe(&ports[..2]), "[nodePort 30000, nodePort 30001]");
        assert!(
            describe(&ports).ends_with("nodePort 30007, ...] (10 values)"),
            "{}",
            describe(&ports)
        );
    }

    #[test]
    fn an_update_releases_what_it_drops() {
        let mut index = HeldIndex::default();
        assert_eq!(
            index.apply(
                &key("default/web"),
                vec![ip("10.96.0.20"), Value::NodePort(30080)]
            ),
            vec![]
        );
        assert_eq!(
            index.apply(&key("default/web"), vec![ip("10.96.0.20")]),
            vec![Value::NodePort(30080)]
        );
        assert_eq!(index.delete(&key("default/web")), vec![ip("10.96.0.20")]);
        assert_eq!(index.delete(&key("default/web")), vec![]);
    }

    #[test]
    fn a_value_another_service_holds_is_kept() {
        let mut index = HeldIndex::default();
        index.apply(&key("a/one"), vec![Value::NodePort(30080)]);
        index.apply(&key("b/two"), vec![Value::NodePort(30080)]);
        assert_eq!(index.delete(&key("a/one")), vec![]);
        assert_eq!(index.delete(&key("b/two")), vec![Value::NodePort(30080)]);
    }

    #[test]
    fn a_relist_releases_services_deleted_while_the_watch_was_down() {
        let mut index = HeldIndex::default();
        index.apply(&key("a/gone"), vec![ip("10.96.0.30")]);
        index.apply(&key("a/kept"), vec![ip("10.96.0.31")]);
        index.relist_start();
        index.relist_apply(&key("a/kept"), vec![ip("10.96.0.31")]);
        assert_eq!(index.relist_done(), vec![ip("10.96.0.30")]);
        assert_eq!(index.services().count(), 1);
    }

    #[test]
    fn a_service_the_relist_cannot_read_keeps_its_values() {
        let mut index = HeldIndex::default();
        index.apply(&key("a/unreadable"), vec![Value::NodePort(30081)]);
        index.relist_start();
        index.relist_keep(&key("a/unreadable"));
        assert_eq!(index.relist_done(), vec![], "nothing released");
        assert_eq!(
            index.services().collect::<Vec<_>>(),
            vec![(&key("a/unreadable"), &vec![Value::NodePort(30081)])]
        );
    }
}
