//! Values handed to admissions whose Service has not yet been seen holding them.
//!
//! The mutating webhook answers before kube-apiserver validates and stores the Service, and
//! any later step may refuse it (validation, other admission plugins, quota, a name already
//! taken, a timeout). A value given at admission is therefore only tentative: it is
//! confirmed when the Service watch shows a Service holding it, and otherwise given back
//! once [`UnconfirmedConfig::timeout`] has passed and a read from the apiserver shows that
//! no Service holds it. One namespace may hold at most
//! [`UnconfirmedConfig::per_namespace`] unconfirmed values of a replica at once, so that a
//! tenant resending refused requests cannot hold a range.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use allocator::Value;

/// How unconfirmed values are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnconfirmedConfig {
    /// How long a value waits for its Service to be seen before the apiserver is asked
    /// whether a Service holds it. It must be longer than a create can take from this
    /// webhook's answer to its storage: later admission webhooks (each up to its own
    /// timeout) and the write, all within kube-apiserver's `--request-timeout` (60 s by
    /// default). A value freed sooner could be given to another Service and then stored
    /// with the first one too.
    pub timeout: Duration,
    /// How many unconfirmed values one namespace may hold in one replica.
    pub per_namespace: usize,
}

impl Default for UnconfirmedConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(75),
            per_namespace: 256,
        }
    }
}

/// The Service an admission was for: its name, or for a create with `generateName` only
/// the prefix (the apiserver picks the name after admission).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    /// `metadata.name`.
    Named(String),
    /// `metadata.generateName`.
    Generated(String),
}

/// Values whose wait ran out, with the Service they were given to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The namespace of the Service.
    pub namespace: String,
    /// The Service.
    pub service: ServiceName,
    /// The values, unconfirmed.
    pub values: Vec<Value>,
}

#[derive(Clone, Debug)]
struct Owner {
    namespace: String,
    service: ServiceName,
    deadline: Instant,
}

/// The unconfirmed values of one replica.
#[derive(Debug, Default)]
pub struct Unconfirmed {
    config: UnconfirmedConfig,
    owners: HashMap<Value, Owner>,
    per_namespace: HashMap<String, usize>,
    /// Values in the order they were given, so in deadline order (one timeout for all); a
    /// confirmed value stays here until its deadline and is skipped then.
    deadlines: VecDeque<(Instant, Value)>,
}

impl Unconfirmed {
    /// No unconfirmed values yet.
    pub fn new(config: UnconfirmedConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// How many more values `namespace` may be given before some are confirmed.
    pub fn room(&self, namespace: &str) -> usize {
        let held = self.per_namespace.get(namespace).copied().unwrap_or(0);
        self.config.per_namespace.saturating_sub(held)
    }

    /// The limit per namespace.
    pub fn limit(&self) -> usize {
        self.config.per_namespace
    }

    /// How long a value waits for its Service to be seen.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// `values` were given at `now` to an admission of `service` in `namespace`.
    pub fn add(&mut self, namespace: &str, service: &ServiceName, values: &[Value], now: Instant) {
        let deadline = now + self.config.timeout;
        for &value in values {
            let owner = Owner {
                namespace: namespace.to_string(),
                service: service.clone(),
                deadline,
            };
            if let Some(previous) = self.owners.insert(value, owner) {
                self.forget_in(&previous.namespace);
            }
            *self.per_namespace.entry(namespace.to_string()).or_default() += 1;
            self.deadlines.push_back((deadline, value));
        }
    }

    /// A Service was seen holding `values`: those that were unconfirmed are confirmed.
    pub fn confirm(&mut self, values: &[Value]) {
        for value in values {
            if let Some(owner) = self.owners.remove(value) {
                self.forget_in(&owner.namespace);
            }
        }
    }

    /// Takes the values whose deadline is past at `now`, grouped by Service.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        let mut grouped: HashMap<(String, ServiceName), Vec<Value>> = HashMap::new();
        while let Some(&(deadline, value)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let current = self
                .owners
                .get(&value)
                .is_some_and(|owner| owner.deadline == deadline);
            if !current {
                continue;
            }
            let owner = self.owners.remove(&value).expect("checked above");
            self.forget_in(&owner.namespace);
            grouped
                .entry((owner.namespace, owner.service))
                .or_default()
                .push(value);
        }
        let mut expired: Vec<Expired> = grouped
            .into_iter()
            .map(|((namespace, service), values)| Expired {
                namespace,
                service,
                values,
            })
            .collect();
        expired.sort_by(|a, b| (&a.namespace, &a.service).cmp(&(&b.namespace, &b.service)));
        expired
    }

    /// When the next value's wait runs out. Drops the confirmed values at the front of the
    /// queue on the way, so that the actor asking before every command never walks them.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, value)) = self.deadlines.front() {
            let current = self
                .owners
                .get(&value)
                .is_some_and(|owner| owner.deadline == deadline);
            if current {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Every unconfirmed value: allocated, held by no Service yet, and no leak.
    pub fn values(&self) -> impl Iterator<Item = Value> + '_ {
        self.owners.keys().copied()
    }

    fn forget_in(&mut self, namespace: &str) {
        if let Some(count) = self.per_namespace.get_mut(namespace) {
            *count -= 1;
            if *count == 0 {
                self.per_namespace.remove(namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn unconfirmed(per_namespace: usize) -> Unconfirmed {
        Unconfirmed::new(UnconfirmedConfig {
            timeout: TIMEOUT,
            per_namespace,
        })
    }

    fn named(name: &str) -> ServiceName {
        ServiceName::Named(name.to_string())
    }

    #[test]
    fn a_namespace_has_room_for_its_limit_and_gets_it_back_on_confirmation() {
        let mut values = unconfirmed(3);
        let now = Instant::now();
        values.add(
            "tenant",
            &named("a"),
            &[Value::NodePort(30000), Value::NodePort(30001)],
            now,
        );
        assert_eq!(values.room("tenant"), 1);
        assert_eq!(values.room("other"), 3);
        values.confirm(&[Value::NodePort(30000), Value::NodePort(31000)]);
        assert_eq!(values.room("tenant"), 2);
        assert_eq!(values.values().count(), 1);
    }

    #[test]
    fn values_expire_after_the_timeout_grouped_by_service() {
        let mut values = unconfirmed(10);
        let start = Instant::now();
        values.add(
            "a",
            &named("one"),
            &[Value::NodePort(30000), Value::NodePort(30001)],
            start,
        );
        let generated = ServiceName::Generated("web-".to_string());
        values.add(
            "a",
            &generated,
            &[Value::NodePort(30002)],
            start + Duration::from_secs(1),
        );
        assert_eq!(
            values.expire(start + TIMEOUT - Duration::from_millis(1)),
            vec![]
        );
        assert_eq!(values.next_deadline(), Some(start + TIMEOUT));
        assert_eq!(
            values.expire(start + TIMEOUT),
            vec![Expired {
                namespace: "a".to_string(),
                service: named("one"),
                values: vec![Value::NodePort(30000), Value::NodePort(30001)],
            }]
        );
        assert_eq!(values.room("a"), 9);
        assert_eq!(
            values.expire(start + TIMEOUT * 2),
            vec![Expired {
                namespace: "a".to_string(),
                service: generated,
                values: vec![Value::NodePort(30002)],
            }]
        );
        assert_eq!(values.values().count(), 0);
        assert_eq!(values.next_deadline(), None);
    }

    #[test]
    fn a_confirmed_value_never_expires_even_when_given_again_later() {
        let mut values = unconfirmed(10);
        let start = Instant::now();
        values.add("a", &named("one"), &[Value::NodePort(30000)], start);
        values.confirm(&[Value::NodePort(30000)]);
        // Freed and given to another Service: only the second deadline counts.
        let later = start + Duration::from_secs(10);
        values.add("b", &named("two"), &[Value::NodePort(30000)], later);
        assert_eq!(values.next_deadline(), Some(later + TIMEOUT));
        assert_eq!(values.expire(start + TIMEOUT), vec![]);
        assert_eq!(values.expire(later + TIMEOUT).len(), 1);
        assert_eq!(values.room("b"), 10);
    }
}
