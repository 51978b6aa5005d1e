//! The value of `endpoints.kubernetes.io/last-change-trigger-time`: the earliest change, among
//! those not yet synced, that made the Endpoints or slices change. kube-proxy measures network
//! programming latency from it, so it must neither be lost nor made up.
//!
//! A pod's change time is the last transition of its `Ready` condition; the Service's is its
//! creation. On the first sync of a Service the Service's creation time is used. As in-tree, a
//! pod that changes twice between two syncs only shows its latest change.
//!
//! Unlike in-tree, the observation is committed only once the sync succeeded: a failed write
//! that is retried still reports the change that triggered it.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

type ServiceKey = (String, String);

#[derive(Debug, Clone, PartialEq, Default)]
struct Seen {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

/// What a sync saw, to be committed with [`TriggerTimeTracker::commit`] once it succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerObservation {
    key: ServiceKey,
    service: Option<Timestamp>,
    pods: Vec<(String, Option<Timestamp>)>,
    every_pod: bool,
}

/// Per Service, the change times already accounted for by a successful sync.
#[derive(Debug, Clone, Default)]
pub struct TriggerTimeTracker {
    services: HashMap<ServiceKey, Seen>,
}

/// A pod changed since the last successful sync of its Service: its name, and the last
/// transition of its `Ready` condition (`None` when it has none or is no longer selected).
pub type PodTrigger<'a> = (&'a str, Option<Timestamp>);

impl TriggerTimeTracker {
    /// The trigger time for a sync of `service`, and the observation to commit after the sync
    /// succeeded. `changed` are the pods changed since the last successful sync, the others
    /// being accounted for already; or, with `every_pod`, every pod the Service selects (as on
    /// its first sync). `None` means no change since the last successful sync: the annotation
    /// is left off.
    pub fn trigger_time<'a>(
        &self,
        service: &Service,
        changed: impl IntoIterator<Item = PodTrigger<'a>>,
        every_pod: bool,
    ) -> (Option<Time>, TriggerObservation) {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let pods: Vec<(String, Option<Timestamp>)> = changed
            .into_iter()
            .map(|(name, at)| (name.to_string(), at))
            .collect();
        let time = match self.services.get(&key) {
            None => created,
            Some(before) => {
                let changed_pods = pods
                    .iter()
                    .filter_map(|(name, at)| Some((name, (*at)?)))
                    .filter(|(name, at)| before.pods.get(*name).is_none_or(|was| at > was))
                    .map(|(_, at)| at);
                let changed_service =
                    created.filter(|at| before.service.is_none_or(|was| *at > was));
                changed_pods.chain(changed_service).min()
            }
        };
        let observation = TriggerObservation {
            key,
            service: created,
            pods,
            every_pod,
        };
        (time.map(Time), observation)
    }

    /// Records that the sync which made `observation` succeeded (with or without a write).
    pub fn commit(&mut self, observation: TriggerObservation) {
        let seen = self.services.entry(observation.key).or_default();
        seen.service = observation.service;
        if observation.every_pod {
            seen.pods.clear();
        }
        for (name, at) in observation.pods {
            match at {
                Some(at) => seen.pods.insert(name, at),
                None => seen.pods.remove(&name),
            };
        }
    }

    /// Forgets a deleted Service.
    pub fn forget_service(&mut self, namespace: &str, name: &str) {
        self.services
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::fixtures::{service, time};

    fn svc() -> Service {
        let mut svc = service("web").build();
        svc.metadata.creation_timestamp = Some(time(1_000));
        svc
    }

    fn at(name: &str, ready_since: i64) -> PodTrigger<'_> {
        (name, Some(time(ready_since).0))
    }

    #[test]
    fn first_sync_reports_the_service_creation() {
        let tracker = TriggerTimeTracker::default();
        let (at, _) = tracker.trigger_time(&svc(), [at("a", 2_000)], true);
        assert_eq!(at, Some(time(1_000)));
    }

    #[test]
    fn later_syncs_report_the_earliest_unsynced_pod_change() {
        let mut tracker = TriggerTimeTracker::default();
        let (_, seen) = tracker.trigger_time(&svc(), [at("a", 2_000), at("b", 2_000)], true);
        tracker.commit(seen);

        let (time_of, _) = tracker.trigger_time(&svc(), [], false);
        assert_eq!(time_of, None, "nothing changed");
        let (time_of, _) = tracker.trigger_time(&svc(), [at("a", 2_000)], false);
        assert_eq!(time_of, None, "a change that is already accounted for");

        let changed = [at("a", 3_500), at("b", 3_000), at("c", 4_000)];
        let (time_of, _) = tracker.trigger_time(&svc(), changed, false);
        assert_eq!(time_of, Some(time(3_000)));
    }

    #[test]
    fn a_failed_sync_does_not_lose_its_trigger() {
        let mut tracker = TriggerTimeTracker::default();
        let (_, seen) = tracker.trigger_time(&svc(), [at("a", 2_000)], true);
        tracker.commit(seen);
        let (first, _uncommitted) = tracker.trigger_time(&svc(), [at("a", 3_000)], false);
        let (retry, seen) = tracker.trigger_time(&svc(), [at("a", 3_000)], false);
        assert_eq!(first, Some(time(3_000)));
        assert_eq!(retry, first);
        tracker.commit(seen);
        assert_eq!(
            tracker.trigger_time(&svc(), [at("a", 3_000)], false).0,
            None
        );
    }

    #[test]
    fn pods_gone_are_forgotten_and_so_are_services() {
        let mut tracker = TriggerTimeTracker::default();
        let (_, seen) = tracker.trigger_time(&svc(), [at("a", 2_000)], true);
        tracker.commit(seen);
        let (_, seen) = tracker.trigger_time(&svc(), [("a", None)], false);
        tracker.commit(seen);
        assert_eq!(
            tracker.trigger_time(&svc(), [at("a", 2_000)], false).0,
            Some(time(2_000)),
            "a pod selected again counts as a change"
        );

        let (_, seen) = tracker.trigger_time(&svc(), [at("b", 2_500)], true);
        tracker.commit(seen);
        assert_eq!(
            tracker.trigger_time(&svc(), [at("a", 2_000)], false).0,
            Some(time(2_000)),
            "every pod listed: the others are forgotten"
        );

        tracker.forget_service("default", "web");
        assert_eq!(
            tracker.trigger_time(&svc(), [at("a", 2_000)], false).0,
            Some(time(1_000))
        );
    }
}
