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

use std::borrow::Borrow;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::pods::PodInfo;
use crate::service;

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
    seen: Seen,
}

/// Per Service, the change times already accounted for by a successful sync.
#[derive(Debug, Clone, Default)]
pub struct TriggerTimeTracker {
    services: HashMap<ServiceKey, Seen>,
}

impl TriggerTimeTracker {
    /// The trigger time for a sync of `service` with these pods (pods it does not select are
    /// ignored), and the observation to commit after the sync succeeded. `None` means no change
    /// since the last successful sync: the annotation is left off.
    pub fn trigger_time<P: Borrow<PodInfo>>(
        &self,
        service: &Service,
        pods: &[P],
    ) -> (Option<Time>, TriggerObservation) {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let mut seen = Seen {
            service: created,
            pods: HashMap::new(),
        };
        for pod in pods.iter().map(Borrow::borrow) {
            if !service::selects(service, pod) {
                continue;
            }
            if let Some(at) = pod.ready_since {
                seen.pods.insert(pod.name.clone(), at);
            }
        }

        let time = match self.services.get(&key) {
            None => created,
            Some(before) => {
                let changed_pods = seen
                    .pods
                    .iter()
                    .filter(|(name, at)| before.pods.get(*name).is_none_or(|was| *at > was))
                    .map(|(_, at)| *at);
                let changed_service =
                    created.filter(|at| before.service.is_none_or(|was| *at > was));
                changed_pods.chain(changed_service).min()
            }
        };
        (time.map(Time), TriggerObservation { key, seen })
    }

    /// Records that the sync which made `observation` succeeded (with or without a write).
    pub fn commit(&mut self, observation: TriggerObservation) {
        self.services.insert(observation.key, observation.seen);
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
    use crate::fixtures::{pod, service, time};

    fn svc() -> Service {
        let mut svc = service("web").build();
        svc.metadata.creation_timestamp = Some(time(1_000));
        svc
    }

    fn web_pod(name: &str, ready_since: i64) -> PodInfo {
        let mut p = pod(name, "10.0.0.1").label("app", "web").build();
        p.ready_since = Some(time(ready_since).0);
        p
    }

    #[test]
    fn first_sync_reports_the_service_creation() {
        let tracker = TriggerTimeTracker::default();
        let (at, _) = tracker.trigger_time(&svc(), &[web_pod("a", 2_000)]);
        assert_eq!(at, Some(time(1_000)));
    }

    #[test]
    fn later_syncs_report_the_earliest_unsynced_pod_change() {
        let mut tracker = TriggerTimeTracker::default();
        let (_, seen) = tracker.trigger_time(&svc(), &[web_pod("a", 2_000), web_pod("b", 2_000)]);
        tracker.commit(seen);

        let (at, _) = tracker.trigger_time(&svc(), &[web_pod("a", 2_000), web_pod("b", 2_000)]);
        assert_eq!(at, None, "nothing changed");

        let pods = [
            web_pod("a", 3_500),
            web_pod("b", 3_000),
            web_pod("c", 4_000),
        ];
        let (at, _) = tracker.trigger_time(&svc(), &pods);
        assert_eq!(at, Some(time(3_000)));
    }

    #[test]
    fn a_failed_sync_does_not_lose_its_trigger() {
        let mut tracker = TriggerTimeTracker::default();
        let (_, seen) = tracker.trigger_time(&svc(), &[web_pod("a", 2_000)]);
        tracker.commit(seen);
        let changed = [web_pod("a", 3_000)];
        let (first, _uncommitted) = tracker.trigger_time(&svc(), &changed);
        let (retry, seen) = tracker.trigger_time(&svc(), &changed);
        assert_eq!(first, Some(time(3_000)));
        assert_eq!(retry, first);
        tracker.commit(seen);
        assert_eq!(tracker.trigger_time(&svc(), &changed).0, None);
    }

    #[test]
    fn unselected_pods_and_forgotten_services() {
        let mut tracker = TriggerTimeTracker::default();
        let (_, seen) = tracker.trigger_time(&svc(), &[web_pod("a", 2_000)]);
        tracker.commit(seen);
        let mut stranger = web_pod("z", 5_000);
        stranger.labels.clear();
        assert_eq!(
            tracker
                .trigger_time(&svc(), &[web_pod("a", 2_000), stranger])
                .0,
            None
        );

        tracker.forget_service("default", "web");
        assert_eq!(
            tracker.trigger_time(&svc(), &[web_pod("a", 2_000)]).0,
            Some(time(1_000))
        );
    }
}
