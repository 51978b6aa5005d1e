//! Repair: compares the allocation state with the values the Services hold, and with
//! kube-apiserver's own record of allocated ClusterIPs (IPAddress objects, Kubernetes 1.33+),
//! and says what to mark, what to free and what to report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use allocator::{Allocators, Value};

/// Sweeps in a row a value must be seen leaked before it is freed: a value reserved by an
/// admission whose Service write has not landed yet looks leaked for a moment (in-tree bug
/// #37488 freed such values).
pub const LEAK_SWEEPS: u8 = 3;

/// kube-apiserver's IPAddress objects: each allocated ClusterIP, with the Service it names
/// as its parent (`namespace/name`; `None` when the parent is not a Service).
pub type IpAddresses = BTreeMap<IpAddr, Option<String>>;

/// Something repair reports, as an event with the in-tree reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A Service holds a value the state lacked; it is now marked.
    NotAllocated {
        /// `namespace/name`.
        service: String,
        /// The value.
        value: Value,
    },
    /// Several Services hold the same value.
    AlreadyAllocated {
        /// The Services, `namespace/name`, sorted.
        services: Vec<String>,
        /// The value.
        value: Value,
    },
    /// A Service holds a value outside the configured ranges.
    OutOfRange {
        /// `namespace/name`.
        service: String,
        /// The value.
        value: Value,
    },
    /// kube-apiserver holds a ClusterIP (an IPAddress object) the state lacked and no
    /// Service svcplane sees holds; it is now marked.
    HeldByIpAddress {
        /// The Service the IPAddress names as its parent (`namespace/name`), if any.
        parent: Option<String>,
        /// The address.
        ip: IpAddr,
    },
    /// A Service holds a ClusterIP that has no IPAddress object, on two sweeps in a row:
    /// kube-apiserver does not count it as allocated (its own repair recreates it).
    NoIpAddress {
        /// `namespace/name`.
        service: String,
        /// The value.
        value: Value,
    },
}

/// An object a repair event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Regarding {
    /// A Service, `namespace/name`.
    Service(String),
    /// kube-apiserver's IPAddress object of that name.
    IpAddress(String),
}

impl Finding {
    /// The in-tree event reason.
    pub fn reason(&self) -> &'static str {
        let cluster_ip = matches!(self.value(), Value::ClusterIp(_));
        match (self, cluster_ip) {
            (Finding::NotAllocated { .. }, true) => "ClusterIPNotAllocated",
            (Finding::NotAllocated { .. }, false) => "PortNotAllocated",
            (Finding::AlreadyAllocated { .. }, true) => "ClusterIPAlreadyAllocated",
            (Finding::AlreadyAllocated { .. }, false) => "PortAlreadyAllocated",
            (Finding::OutOfRange { .. }, true) => "ClusterIPOutOfRange",
            (Finding::OutOfRange { .. }, false) => "PortOutOfRange",
            // kube-apiserver's repairip.go names a Service's address without an IPAddress so.
            (Finding::NoIpAddress { .. } | Finding::HeldByIpAddress { .. }, _) => {
                "ClusterIPNotAllocated"
            }
        }
    }

    /// The value concerned.
    pub fn value(&self) -> Value {
        match self {
            Finding::NotAllocated { value, .. }
            | Finding::AlreadyAllocated { value, .. }
            | Finding::OutOfRange { value, .. }
            | Finding::NoIpAddress { value, .. } => *value,
            Finding::HeldByIpAddress { ip, .. } => Value::ClusterIp(*ip),
        }
    }

    /// A sentence for the event's note.
    pub fn message(&self) -> String {
        match self {
            Finding::NotAllocated { service, value } => {
                format!("{value} of Service {service} was not recorded as allocated; repaired")
            }
            Finding::AlreadyAllocated { services, value } => {
                format!(
                    "{value} is held by more than one Service: {}",
                    services.join(", ")
                )
            }
            Finding::OutOfRange { service, value } => {
                format!("{value} of Service {service} is outside the configured range")
            }
            Finding::HeldByIpAddress { parent, .. } => format!(
                "{} has an IPAddress object (parent {}) but was not recorded as allocated; repaired",
                self.value(),
                parent.as_deref().unwrap_or("not a Service")
            ),
            Finding::NoIpAddress { service, value } => format!(
                "Cluster IP {value} of Service {service} has no IPAddress object: kube-apiserver does not count it as allocated"
            ),
        }
    }

    /// What the finding's event regards, and the object it relates where that is another.
    ///
    /// An event's name begins with the regarded object's name and must be a DNS subdomain:
    /// an IPv6 IPAddress's name (its colons) cannot begin one. Such an address is related
    /// to an event about its parent Service instead, and has no event without a parent
    /// (the sweep's log still counts it).
    pub fn regarding(&self) -> Option<(Regarding, Option<Regarding>)> {
        let service = match self {
            Finding::NotAllocated { service, .. }
            | Finding::OutOfRange { service, .. }
            | Finding::NoIpAddress { service, .. } => service,
            Finding::AlreadyAllocated { services, .. } => &services[0],
            Finding::HeldByIpAddress { parent, ip } => {
                let address = Regarding::IpAddress(ip.to_string());
                return match parent {
                    _ if ip.is_ipv4() => Some((address, None)),
                    Some(parent) => Some((Regarding::Service(parent.clone()), Some(address))),
                    None => None,
                };
            }
        };
        Some((Regarding::Service(service.clone()), None))
    }
}

/// What one sweep decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Values Services hold that the state lacks.
    pub mark: Vec<Value>,
    /// Values seen leaked on [`LEAK_SWEEPS`] sweeps in a row.
    pub release: Vec<Value>,
    /// Values leaked but not yet for long enough.
    pub pending_leaks: usize,
    /// What to report.
    pub findings: Vec<Finding>,
}

/// Counts carried from one sweep to the next.
#[derive(Clone, Debug, Default)]
pub struct Repairer {
    leaked_sweeps: HashMap<Value, u8>,
    /// Service addresses seen without an IPAddress object on the last sweep.
    unrecorded: BTreeSet<Value>,
}

impl Repairer {
    /// Compares `services` (`namespace/name` -> values held) with `state`; values in
    /// `pooled` (the pools of live webhook replicas) are not leaks. Where kube-apiserver
    /// serves them, `addresses` (its IPAddress objects, listed after `services` were
    /// taken) are allocated too: never handed out, never freed as leaks.
    pub fn sweep<'a>(
        &mut self,
        services: impl IntoIterator<Item = (&'a String, &'a Vec<Value>)>,
        state: &Allocators,
        pooled: &BTreeSet<Value>,
        addresses: Option<&IpAddresses>,
    ) -> Sweep {
        let mut holders: BTreeMap<Value, Vec<String>> = BTreeMap::new();
        for (service, values) in services {
            for &value in values {
                holders.entry(value).or_default().push(service.clone());
            }
        }
        let mut sweep = Sweep::default();
        let mut unrecorded = BTreeSet::new();
        for (&value, services) in &mut holders {
            services.sort();
            let service = services[0].clone();
            if !in_range(state, value) {
                sweep.findings.push(Finding::OutOfRange { service, value });
                continue;
            }
            if services.len() > 1 {
                sweep.findings.push(Finding::AlreadyAllocated {
                    services: services.clone(),
                    value,
                });
            }
            if !state.has(value) {
                sweep.mark.push(value);
                sweep.findings.push(Finding::NotAllocated {
                    service: service.clone(),
                    value,
                });
            }
            // A Service deleted since its index was taken shows no IPAddress once: only
            // the second sweep in a row is a disagreement.
            if let (Some(addresses), Value::ClusterIp(ip)) = (addresses, value)
                && !addresses.contains_key(&ip)
            {
                unrecorded.insert(value);
                if self.unrecorded.contains(&value) {
                    sweep.findings.push(Finding::NoIpAddress { service, value });
                }
            }
        }
        self.unrecorded = unrecorded;

        // What kube-apiserver allocated for something svcplane does not see holding it (a
        // Service being created, an IPAddress object written by hand): it would refuse
        // the address, so svcplane must not give it.
        for (&ip, parent) in addresses.into_iter().flatten() {
            let value = Value::ClusterIp(ip);
            if holders.contains_key(&value) || !in_range(state, value) || state.has(value) {
                continue;
            }
            sweep.mark.push(value);
            sweep.findings.push(Finding::HeldByIpAddress {
                parent: parent.clone(),
                ip,
            });
        }

        let mut leaked_sweeps = HashMap::new();
        for value in allocated(state) {
            let recorded = |ip| addresses.is_some_and(|a| a.contains_key(&ip));
            let by_apiserver = matches!(value, Value::ClusterIp(ip) if recorded(ip));
            if holders.contains_key(&value) || pooled.contains(&value) || by_apiserver {
                continue;
            }
            let sweeps = self.leaked_sweeps.get(&value).copied().unwrap_or(0) + 1;
            if sweeps >= LEAK_SWEEPS {
                sweep.release.push(value);
            } else {
                leaked_sweeps.insert(value, sweeps);
            }
        }
        sweep.pending_leaks = leaked_sweeps.len();
        self.leaked_sweeps = leaked_sweeps;
        sweep
    }
}

fn in_range(state: &Allocators, value: Value) -> bool {
    match value {
        Value::ClusterIp(ip) => state.cluster_ips().iter().any(|a| a.contains(ip)),
        Value::NodePort(port) => state.node_ports().range().contains(port),
    }
}

fn allocated(state: &Allocators) -> impl Iterator<Item = Value> + '_ {
    state
        .cluster_ips()
        .iter()
        .flat_map(|a| a.iter().map(Value::ClusterIp))
        .chain(state.node_ports().iter().map(Value::NodePort))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator::{ClusterIpAllocator, NodePortAllocator, PortRange};

    fn allocators() -> Allocators {
        Allocators::new(
            vec![ClusterIpAllocator::new("10.96.0.0/12".parse().unwrap())],
            NodePortAllocator::new(PortRange::default()),
        )
        .unwrap()
    }

    fn ip(s: &str) -> Value {
        Value::ClusterIp(s.parse().unwrap())
    }

    fn services(entries: &[(&str, &[Value])]) -> Vec<(String, Vec<Value>)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn sweep(
        repairer: &mut Repairer,
        services: &[(String, Vec<Value>)],
        state: &Allocators,
    ) -> Sweep {
        repairer.sweep(
            services.iter().map(|(k, v)| (k, v)),
            state,
            &BTreeSet::new(),
            None,
        )
    }

    #[test]
    fn values_held_without_the_state_knowing_are_marked() {
        let state = allocators();
        let held = services(&[
            ("default/kubernetes", &[ip("10.96.0.1")]),
            ("default/web", &[Value::NodePort(30080)]),
        ]);
        let result = sweep(&mut Repairer::default(), &held, &state);
        assert_eq!(result.mark, vec![ip("10.96.0.1"), Value::NodePort(30080)]);
        let reasons: Vec<&str> = result.findings.iter().map(Finding::reason).collect();
        assert_eq!(reasons, vec!["ClusterIPNotAllocated", "PortNotAllocated"]);
    }

    #[test]
    fn duplicates_and_out_of_range_values_are_reported() {
        let mut state = allocators();
        state.allocate(Value::NodePort(30080)).unwrap();
        let held = services(&[
            ("a/one", &[Value::NodePort(30080), ip("192.168.0.1")]),
            ("b/two", &[Value::NodePort(30080), Value::NodePort(80)]),
        ]);
        let result = sweep(&mut Repairer::default(), &held, &state);
        assert_eq!(result.mark, vec![]);
        assert_eq!(
            result.findings,
            vec![
                Finding::OutOfRange {
                    service: "a/one".into(),
                    value: ip("192.168.0.1")
                },
                Finding::OutOfRange {
                    service: "b/two".into(),
                    value: Value::NodePort(80)
                },
                Finding::AlreadyAllocated {
                    services: vec!["a/one".into(), "b/two".into()],
                    value: Value::NodePort(30080)
                },
            ]
        );
        assert_eq!(result.findings[0].reason(), "ClusterIPOutOfRange");
        assert_eq!(result.findings[2].reason(), "PortAlreadyAllocated");
    }

    #[test]
    fn a_leak_is_freed_on_the_third_sweep_in_a_row_only() {
        let mut state = allocators();
        state.allocate(ip("10.96.0.50")).unwrap();
        let mut repairer = Repairer::default();
        let none = services(&[]);
        assert_eq!(sweep(&mut repairer, &none, &state).pending_leaks, 1);
        assert_eq!(sweep(&mut repairer, &none, &state).release, vec![]);
        // The Service write landed in between: the count starts over.
        let landed = services(&[("a/late", &[ip("10.96.0.50")])]);
        assert_eq!(sweep(&mut repairer, &landed, &state).pending_leaks, 0);
        assert_eq!(sweep(&mut repairer, &none, &state).release, vec![]);
        assert_eq!(sweep(&mut repairer, &none, &state).release, vec![]);
        assert_eq!(
            sweep(&mut repairer, &none, &state).release,
            vec![ip("10.96.0.50")]
        );
    }

    #[test]
    fn pooled_values_are_no_leaks() {
        let mut state = allocators();
        state.allocate(ip("10.96.0.50")).unwrap();
        let pooled = BTreeSet::from([ip("10.96.0.50")]);
        let mut repairer = Repairer::default();
        for _ in 0..LEAK_SWEEPS + 1 {
            let result = repairer.sweep(std::iter::empty(), &state, &pooled, None);
            assert_eq!((result.release, result.pending_leaks), (vec![], 0));
        }
        // Once its replica's entry is dead, the value is a leak like any other.
        let none = services(&[]);
        assert_eq!(sweep(&mut repairer, &none, &state).pending_leaks, 1);
    }

    #[test]
    fn ip_address_objects_are_allocated_and_services_without_one_are_reported() {
        // kube-apiserver v1.37.2 repairip.go: a Service's ClusterIP without an IPAddress is
        // "ClusterIPNotAllocated"; an IPAddress blocks its address for any allocator.
        let mut state = allocators();
        state.allocate(ip("10.96.0.10")).unwrap();
        state.allocate(ip("10.96.0.11")).unwrap();
        let addresses = IpAddresses::from([
            ("10.96.0.10".parse().unwrap(), Some("a/web".to_string())),
            ("10.96.0.20".parse().unwrap(), None),
            ("192.168.0.1".parse().unwrap(), None),
        ]);
        let held = services(&[
            ("a/web", &[ip("10.96.0.10")]),
            ("b/db", &[ip("10.96.0.11")]),
        ]);
        let mut repairer = Repairer::default();
        let mut sweep_once = |state: &Allocators| {
            repairer.sweep(
                held.iter().map(|(k, v)| (k, v)),
                state,
                &BTreeSet::new(),
                Some(&addresses),
            )
        };
        let first = sweep_once(&state);
        // 10.96.0.20 is the apiserver's: marked, never a leak. 192.168.0.1 is no range's.
        assert_eq!(first.mark, vec![ip("10.96.0.20")]);
        assert_eq!(
            first.findings,
            vec![Finding::HeldByIpAddress {
                parent: None,
                ip: "10.96.0.20".parse().unwrap()
            }]
        );
        // b/db's address has had no IPAddress for two sweeps: reported.
        let second = sweep_once(&state);
        let reported = Finding::NoIpAddress {
            service: "b/db".into(),
            value: ip("10.96.0.11"),
        };
        assert!(second.findings.contains(&reported), "{:?}", second.findings);
        assert_eq!(reported.reason(), "ClusterIPNotAllocated");
        state.allocate(ip("10.96.0.20")).unwrap();
        for _ in 0..LEAK_SWEEPS + 1 {
            assert_eq!(sweep_once(&state).pending_leaks, 0);
        }
    }

    #[test]
    fn an_ipv6_ip_address_is_related_to_its_parents_event_not_regarded() {
        let held = |address: &str, parent: Option<&str>| Finding::HeldByIpAddress {
            parent: parent.map(str::to_string),
            ip: address.parse().unwrap(),
        };
        let address = |name: &str| Regarding::IpAddress(name.to_string());
        let service = |key: &str| Regarding::Service(key.to_string());
        assert_eq!(
            held("10.96.0.20", Some("a/web")).regarding(),
            Some((address("10.96.0.20"), None))
        );
        assert_eq!(
            held("fd00::14", Some("a/web")).regarding(),
            Some((service("a/web"), Some(address("fd00::14"))))
        );
        assert_eq!(held("fd00::14", None).regarding(), None);
        let duplicate = Finding::AlreadyAllocated {
            services: vec!["a/web".into(), "b/db".into()],
            value: ip("fd00::14"),
        };
        assert_eq!(duplicate.regarding(), Some((service("a/web"), None)));
    }
}
