//! Which values each Service holds, kept from the Service watch, so that values a Service
//! gives up are released once the write that drops them is observed.

use std::collections::{HashMap, HashSet};

use allocator::{ServiceSpec, Value};

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

/// Values held per Service (`namespace/name`), fed by watch events.
#[derive(Debug, Default)]
pub struct HeldIndex {
    by_service: HashMap<String, Vec<Value>>,
    relisting: Option<HashMap<String, Vec<Value>>>,
}

impl HeldIndex {
    /// A Service was created or changed: returns the values it gave up that no other
    /// Service holds.
    pub fn apply(&mut self, service: &str, values: Vec<Value>) -> Vec<Value> {
        let previous = self
            .by_service
            .insert(service.to_string(), values)
            .unwrap_or_default();
        self.released(previous)
    }

    /// A Service was deleted: returns its values that no other Service holds.
    pub fn delete(&mut self, service: &str) -> Vec<Value> {
        let previous = self.by_service.remove(service).unwrap_or_default();
        self.released(previous)
    }

    /// A relist starts (after a watch restart, deletions may have been missed).
    pub fn relist_start(&mut self) {
        self.relisting = Some(HashMap::new());
    }

    /// A Service seen during the relist.
    pub fn relist_apply(&mut self, service: &str, values: Vec<Value>) {
        self.relisting
            .get_or_insert_with(HashMap::new)
            .insert(service.to_string(), values);
    }

    /// A Service the relist saw but could not read: it keeps the values it held before.
    pub fn relist_keep(&mut self, service: &str) {
        let values = self.by_service.get(service).cloned().unwrap_or_default();
        if let Some(relisting) = &mut self.relisting {
            relisting.insert(service.to_string(), values);
        }
    }

    /// The relist is complete: returns the values held before and by no Service now.
    pub fn relist_done(&mut self) -> Vec<Value> {
        let current = self.relisting.take().unwrap_or_default();
        let previous = std::mem::replace(&mut self.by_service, current);
        self.released(previous.into_values().flatten().collect())
    }

    /// Every Service with its values.
    pub fn services(&self) -> impl Iterator<Item = (&String, &Vec<Value>)> {
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
                "default/web",
                vec![ip("10.96.0.20"), Value::NodePort(30080)]
            ),
            vec![]
        );
        assert_eq!(
            index.apply("default/web", vec![ip("10.96.0.20")]),
            vec![Value::NodePort(30080)]
        );
        assert_eq!(index.delete("default/web"), vec![ip("10.96.0.20")]);
        assert_eq!(index.delete("default/web"), vec![]);
    }

    #[test]
    fn a_value_another_service_holds_is_kept() {
        let mut index = HeldIndex::default();
        index.apply("a/one", vec![Value::NodePort(30080)]);
        index.apply("b/two", vec![Value::NodePort(30080)]);
        assert_eq!(index.delete("a/one"), vec![]);
        assert_eq!(index.delete("b/two"), vec![Value::NodePort(30080)]);
    }

    #[test]
    fn a_relist_releases_services_deleted_while_the_watch_was_down() {
        let mut index = HeldIndex::default();
        index.apply("a/gone", vec![ip("10.96.0.30")]);
        index.apply("a/kept", vec![ip("10.96.0.31")]);
        index.relist_start();
        index.relist_apply("a/kept", vec![ip("10.96.0.31")]);
        assert_eq!(index.relist_done(), vec![ip("10.96.0.30")]);
        assert_eq!(index.services().count(), 1);
    }

    #[test]
    fn a_service_the_relist_cannot_read_keeps_its_values() {
        let mut index = HeldIndex::default();
        index.apply("a/unreadable", vec![Value::NodePort(30081)]);
        index.relist_start();
        index.relist_keep("a/unreadable");
        assert_eq!(index.relist_done(), vec![], "nothing released");
        assert_eq!(
            index.services().collect::<Vec<_>>(),
            vec![(&"a/unreadable".to_string(), &vec![Value::NodePort(30081)])]
        );
    }
}
