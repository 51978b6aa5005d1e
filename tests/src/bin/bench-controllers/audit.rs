//! Reaction times from kube-apiserver's audit log: from the response to a pod status write
//! (or a pod delete) to the apiserver receiving the controller's next write of that pod's
//! Service's EndpointSlices (or Endpoints). Both writes' own apiserver cost is left out, for every side
//! alike, so what remains is the controller's: its watch delivery, queue, sync and client.
//! The controller's write is the first one received after the pod write was: a watch event
//! leaves with the commit, before the pod write's response is logged, so a fast controller's
//! write can arrive before that response (its reaction counts as zero). Pod writes answered by
//! one controller write are all answered by it (a controller that coalesces them is not
//! charged for each). A pod's second delete (its removal once terminated) is answered by a
//! slice write only: it changes no Endpoints.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::ops::RangeBounds;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// Records pod status writes, pod deletes (the load scenario's Deployments delete pods) and
/// Endpoints/EndpointSlice writes, without their bodies but for slice creates (whose name, when
/// generated, is only in the body).
pub const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted", "Panic"]
rules:
- level: Request
  verbs: ["create"]
  resources:
  - group: "discovery.k8s.io"
    resources: ["endpointslices"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete"]
  resources:
  - group: ""
    resources: ["pods/status", "endpoints"]
  - group: "discovery.k8s.io"
    resources: ["endpointslices"]
- level: Metadata
  verbs: ["delete"]
  resources:
  - group: ""
    resources: ["pods"]
- level: None
"#;

/// kube-apiserver's flags for the log at `log` with the policy at `policy`.
pub fn apiserver_args(policy: &Path, log: &Path) -> Vec<String> {
    vec![
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log.display()),
        "--audit-log-format=json".to_string(),
        "--audit-log-maxsize=0".to_string(),
    ]
}

/// When a watcher of the namespace's pods received each pod's events, in order, by pod name.
pub type Arrivals = HashMap<String, Vec<Timestamp>>;

/// Reaction times, each sorted, and the pod writes no controller write followed.
///
/// With the pod events' [`Arrivals`] at a watcher of the same apiserver, each reaction is
/// also split where that watcher received the pod write's change (the first event of the pod
/// after the write was received): `delivery`, from the pod write's response to that arrival,
/// is the apiserver's watch delivery, the same for every side; the reactions counted from the
/// arrival are what the controller adds after it (its own watch's share of the delivery,
/// decoding, queue, sync and client). Either is zero when its end came first.
#[derive(Debug, Default)]
pub struct Reactions {
    pub slices: Vec<Duration>,
    pub endpoints: Vec<Duration>,
    pub unanswered_slices: usize,
    pub unanswered_endpoints: usize,
    pub delivery: Vec<Duration>,
    pub slices_after_delivery: Vec<Duration>,
    pub endpoints_after_delivery: Vec<Duration>,
    /// The Endpoints reactions counted from the later of the arrival and the response to the
    /// Service's previous Endpoints write: a Service's Endpoints object is written one update
    /// after another on every side (each needs the last one's resourceVersion), so a change
    /// arriving while one is in flight cannot be written before that one is answered, which
    /// is the apiserver's time.
    pub endpoints_after_turn: Vec<Duration>,
    /// Endpoints reactions whose pod change arrived while the Service's previous Endpoints
    /// write was in flight.
    pub arrived_during_write: usize,
    /// Pod writes of which the watcher saw no event.
    pub undelivered: usize,
    /// The apiserver's time of each controller update (PUT) of Endpoints and slices in the
    /// window, from receiving it to answering (audit stage timestamps): the server's part of
    /// what the controller's client times for the same requests.
    pub updates_in_apiserver: Vec<Duration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    stage: String,
    verb: String,
    object_ref: Option<ObjectRef>,
    response_status: Option<ResponseStatus>,
    request_received_timestamp: MicroTime,
    stage_timestamp: MicroTime,
    /// Recorded for slice creates only: a create by `generateName` has no name in
    /// `objectRef`, only the name's prefix in its body.
    request_object: Option<RequestObject>,
}

#[derive(Deserialize)]
struct RequestObject {
    metadata: RequestMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata {
    generate_name: Option<String>,
}

#[derive(Deserialize)]
struct ObjectRef {
    resource: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    code: Option<u16>,
}

/// A completed, successful write in `namespace` received within a window.
struct Write {
    kind: Kind,
    name: String,
    received: Timestamp,
    answered: Timestamp,
    /// A PUT.
    update: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    PodStatus,
    PodDelete,
    Endpoints,
    Slice,
}

impl Kind {
    /// A pod write a controller answers.
    fn is_pod(self) -> bool {
        matches!(self, Kind::PodStatus | Kind::PodDelete)
    }
}

fn writes(log: &Path, namespace: &str, window: &impl RangeBounds<Timestamp>) -> Result<Vec<Write>> {
    let file = std::fs::File::open(log).with_context(|| format!("opening {}", log.display()))?;
    let mut writes = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let event: Event = serde_json::from_str(&line?).context("an audit event")?;
        let Some(object) = event.object_ref else {
            continue;
        };
        let ok = event
            .response_status
            .and_then(|s| s.code)
            .is_some_and(|code| code < 300);
        if event.stage != "ResponseComplete"
            || !ok
            || object.namespace.as_deref() != Some(namespace)
            || !window.contains(&event.request_received_timestamp.0)
        {
            continue;
        }
        let kind = match (object.resource.as_deref(), object.subresource.as_deref()) {
            (Some("pods"), Some("status")) => Kind::PodStatus,
            // The policy records pods only when deleted.
            (Some("pods"), None) => Kind::PodDelete,
            (Some("endpoints"), None) => Kind::Endpoints,
            (Some("endpointslices"), None) => Kind::Slice,
            _ => continue,
        };
        // A create by generateName is named by its prefix (`svc-001-`), which names the
        // Service as a full name would.
        let generate_name = event.request_object.and_then(|o| o.metadata.generate_name);
        writes.push(Write {
            kind,
            name: object.name.or(generate_name).unwrap_or_default(),
            received: event.request_received_timestamp.0,
            answered: event.stage_timestamp.0,
            update: event.verb == "update",
        });
    }
    Ok(writes)
}

/// The reaction times to the pod status writes and deletes in `namespace` received within
/// `window` (e.g. `since..`), the Service of a pod or a slice named by `service_of` (an
/// Endpoints object is named after its Service), split at the pod events' `arrivals` when
/// given. Controller writes outside the window are not answers.
pub fn reactions(
    log: &Path,
    namespace: &str,
    window: impl RangeBounds<Timestamp>,
    service_of: impl Fn(&str) -> Option<String>,
    arrivals: Option<&Arrivals>,
) -> Result<Reactions> {
    let writes = writes(log, namespace, &window)?;
    // When each Service's slices, and its Endpoints, were written (received, answered), in order.
    let mut controller: HashMap<(Kind, String), Vec<(Timestamp, Timestamp)>> = HashMap::new();
    for write in writes.iter().filter(|w| !w.kind.is_pod()) {
        let service = match write.kind {
            Kind::Endpoints => Some(write.name.clone()),
            _ => service_of(&write.name),
        };
        if let Some(service) = service {
            controller
                .entry((write.kind, service))
                .or_default()
                .push((write.received, write.answered));
        }
    }
    for times in controller.values_mut() {
        times.sort();
    }
    let mut reactions = Reactions {
        updates_in_apiserver: writes
            .iter()
            .filter(|w| w.update && !w.kind.is_pod())
            .map(|w| between(w.received, w.answered))
            .collect(),
        ..Reactions::default()
    };
    let mut deleted = HashSet::new();
    for pod in writes.iter().filter(|w| w.kind.is_pod()) {
        let Some(service) = service_of(&pod.name) else {
            continue;
        };
        // A second delete of a pod (its removal once it terminated) needs no Endpoints write:
        // the pod left its Endpoints when it began terminating. Only a slice answers it.
        let again = pod.kind == Kind::PodDelete && !deleted.insert(pod.name.as_str());
        let arrival = arrivals.and_then(|arrivals| {
            let times = arrivals.get(&pod.name)?;
            times
                .get(times.partition_point(|t| *t < pod.received))
                .copied()
        });
        match arrival {
            Some(arrival) => reactions.delivery.push(between(pod.answered, arrival)),
            None if arrivals.is_some() => reactions.undelivered += 1,
            None => {}
        }
        let kinds: &[Kind] = if again {
            &[Kind::Slice]
        } else {
            &[Kind::Slice, Kind::Endpoints]
        };
        for &kind in kinds {
            let (previous, next) = controller
                .get(&(kind, service.clone()))
                .map(|times| {
                    let i = times.partition_point(|(received, _)| *received < pod.received);
                    (i.checked_sub(1).map(|i| times[i]), times.get(i).copied())
                })
                .unwrap_or_default();
            let (times, after_delivery, unanswered) = match kind {
                Kind::Slice => (
                    &mut reactions.slices,
                    &mut reactions.slices_after_delivery,
                    &mut reactions.unanswered_slices,
                ),
                _ => (
                    &mut reactions.endpoints,
                    &mut reactions.endpoints_after_delivery,
                    &mut reactions.unanswered_endpoints,
                ),
            };
            let Some((next, _)) = next else {
                *unanswered += 1;
                continue;
            };
            times.push(between(pod.answered, next));
            let Some(arrival) = arrival else {
                continue;
            };
            after_delivery.push(between(arrival, next));
            if kind == Kind::Endpoints {
                let turn = match previous {
                    Some((_, answered)) if answered > arrival => {
                        reactions.arrived_during_write += 1;
                        answered
                    }
                    _ => arrival,
                };
                reactions.endpoints_after_turn.push(between(turn, next));
            }
        }
    }
    for times in [
        &mut reactions.slices,
        &mut reactions.endpoints,
        &mut reactions.delivery,
        &mut reactions.slices_after_delivery,
        &mut reactions.endpoints_after_delivery,
        &mut reactions.endpoints_after_turn,
    ] {
        times.sort();
    }
    Ok(reactions)
}

/// From `from` to `to`, zero when `to` came first.
fn between(from: Timestamp, to: Timestamp) -> Duration {
    let us = to.as_microsecond() - from.as_microsecond();
    Duration::from_micros(u64::try_from(us).unwrap_or_default())
}

/// `svc-001-7` or `svc-001-x7k2p` -> `svc-001`: the pods and slices of the scenarios are
/// named after their Service.
pub fn strip_last_part(name: &str) -> Option<String> {
    name.rsplit_once('-')
        .map(|(service, _)| service.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        resource: &str,
        sub: Option<&str>,
        name: &str,
        received: &str,
        answered: &str,
    ) -> String {
        // KWOK patches pods' status; the controllers update their objects.
        let verb = if resource == "pods" {
            "patch"
        } else {
            "update"
        };
        serde_json::json!({
            "kind": "Event", "stage": "ResponseComplete", "verb": verb,
            "objectRef": { "resource": resource, "subresource": sub, "namespace": "churn", "name": name },
            "responseStatus": { "code": 200 },
            "requestReceivedTimestamp": received, "stageTimestamp": answered,
        })
        .to_string()
    }

    fn delete_line(name: &str, received: &str, answered: &str) -> String {
        serde_json::json!({
            "kind": "Event", "stage": "ResponseComplete", "verb": "delete",
            "objectRef": { "resource": "pods", "namespace": "churn", "name": name },
            "responseStatus": { "code": 200 },
            "requestReceivedTimestamp": received, "stageTimestamp": answered,
        })
        .to_string()
    }

    #[test]
    fn a_pod_write_is_answered_by_the_next_write_of_its_services_objects() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let t = |ms: u32| format!("2026-12-03T10:00:00.{ms:03}000Z");
        let lines = [
            line("pods", Some("status"), "svc-001-1", &t(100), &t(110)),
            line("pods", Some("status"), "svc-001-2", &t(105), &t(115)),
            // Another Service's slice: not an answer.
            line("endpointslices", None, "svc-002-abcde", &t(120), &t(125)),
            line("endpointslices", None, "svc-001-abcde", &t(130), &t(140)),
            line("endpoints", None, "svc-001", &t(150), &t(160)),
            // No answer follows this one.
            line("pods", Some("status"), "svc-002-3", &t(200), &t(210)),
            // Answered before its own response was logged: a reaction of zero.
            line("pods", Some("status"), "svc-003-1", &t(300), &t(320)),
            line("endpointslices", None, "svc-003-fghij", &t(315), &t(330)),
        ];
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let since: Timestamp = t(0).parse().unwrap();
        let r = reactions(&log, "churn", since.., strip_last_part, None).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(r.slices, [ms(0), ms(15), ms(20)]);
        assert_eq!(r.endpoints, [ms(35), ms(40)]);
        assert_eq!((r.unanswered_slices, r.unanswered_endpoints), (1, 2));
        // The apiserver's time of every controller update, whichever Service's (the pod
        // writes are patches, the slice create is not one).
        assert_eq!(r.updates_in_apiserver, [ms(5), ms(10), ms(10), ms(15)]);

        // A pod deleted twice (terminating, then removed): the second delete is answered by
        // a slice write only.
        let deletes = [
            delete_line("svc-004-1", &t(400), &t(405)),
            line("endpointslices", None, "svc-004-abcde", &t(410), &t(415)),
            line("endpoints", None, "svc-004", &t(412), &t(418)),
            delete_line("svc-004-1", &t(500), &t(505)),
            line("endpointslices", None, "svc-004-abcde", &t(520), &t(525)),
        ];
        std::fs::write(&log, deletes.join("\n") + "\n").unwrap();
        let r = reactions(&log, "churn", since.., strip_last_part, None).unwrap();
        assert_eq!(r.slices, [ms(5), ms(15)]);
        assert_eq!(r.endpoints, [ms(7)]);
        assert_eq!((r.unanswered_slices, r.unanswered_endpoints), (0, 0));

        // A slice created by generateName has no name in objectRef: its prefix names it.
        let create = serde_json::json!({
            "kind": "Event", "stage": "ResponseComplete", "verb": "create",
            "objectRef": { "resource": "endpointslices", "namespace": "churn" },
            "responseStatus": { "code": 201 },
            "requestReceivedTimestamp": t(620), "stageTimestamp": t(630),
            "requestObject": { "metadata": { "generateName": "svc-005-" } },
        });
        let created = [
            line("pods", Some("status"), "svc-005-1", &t(600), &t(610)),
            create.to_string(),
        ];
        std::fs::write(&log, created.join("\n") + "\n").unwrap();
        let r = reactions(&log, "churn", since.., strip_last_part, None).unwrap();
        assert_eq!(r.slices, [ms(10)]);
        assert_eq!(r.unanswered_slices, 0);
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();

        let later: Timestamp = t(150).parse().unwrap();
        let r = reactions(&log, "churn", later.., strip_last_part, None).unwrap();
        assert_eq!(r.slices, [ms(0)]);
        assert_eq!(r.unanswered_slices, 1);

        // A window that ends before the answers: none.
        let r = reactions(
            &log,
            "churn",
            since..t(120).parse().unwrap(),
            strip_last_part,
            None,
        );
        let r = r.unwrap();
        assert!(r.slices.is_empty());
        assert_eq!(r.unanswered_slices, 2);
    }

    #[test]
    fn a_reaction_splits_where_a_watcher_received_the_pod_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let t = |ms: u32| format!("2026-12-03T10:00:00.{ms:03}000Z");
        let at = |ms: u32| t(ms).parse::<Timestamp>().unwrap();
        let lines = [
            line("pods", Some("status"), "svc-001-1", &t(100), &t(110)),
            line("endpointslices", None, "svc-001-abcde", &t(130), &t(140)),
            line("endpoints", None, "svc-001", &t(150), &t(160)),
            // Its event reached the watcher before its response was logged; the slice
            // write came before the event reached the watcher.
            line("pods", Some("status"), "svc-002-1", &t(200), &t(220)),
            line("endpointslices", None, "svc-002-abcde", &t(212), &t(230)),
            line("endpoints", None, "svc-002", &t(240), &t(250)),
            // No event of it reached the watcher.
            line("pods", Some("status"), "svc-003-1", &t(300), &t(310)),
            line("endpointslices", None, "svc-003-abcde", &t(320), &t(330)),
            // Its change arrived while the Service's previous Endpoints write was in flight.
            line("endpoints", None, "svc-004", &t(390), &t(430)),
            line("pods", Some("status"), "svc-004-1", &t(400), &t(410)),
            line("endpoints", None, "svc-004", &t(440), &t(450)),
        ];
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let arrivals = Arrivals::from([
            // An earlier event of the same pod (its scheduling) is not the write's.
            ("svc-001-1".to_string(), vec![at(50), at(118)]),
            ("svc-002-1".to_string(), vec![at(215)]),
            ("svc-004-1".to_string(), vec![at(412)]),
        ]);
        let since = at(0);
        let r = reactions(&log, "churn", since.., strip_last_part, Some(&arrivals)).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(r.slices, [ms(0), ms(10), ms(20)]);
        assert_eq!(r.unanswered_slices, 1);
        assert_eq!(r.endpoints, [ms(20), ms(30), ms(40)]);
        assert_eq!(r.delivery, [ms(0), ms(2), ms(8)]);
        assert_eq!(r.slices_after_delivery, [ms(0), ms(12)]);
        assert_eq!(r.endpoints_after_delivery, [ms(25), ms(28), ms(32)]);
        // svc-004's from the answer at 430; svc-001's previous write is not the Service's.
        assert_eq!(r.endpoints_after_turn, [ms(10), ms(25), ms(32)]);
        assert_eq!(r.arrived_during_write, 1);
        assert_eq!(r.undelivered, 1);

        let r = reactions(&log, "churn", since.., strip_last_part, None).unwrap();
        assert!(r.delivery.is_empty() && r.slices_after_delivery.is_empty());
        assert_eq!(r.undelivered, 0);
    }
}
