//! The restart scenario: the churn's Services and pods published, then the controller process
//! stopped (SIGTERM) and started again with the same flags, with nothing changed meanwhile.
//! Measures how long the restarted process takes to verify every Service, what it writes, and
//! its CPU time and peak RSS until it has verified them.

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::process::Resources;
use e2e::writes::{WriteCounter, Writes};

use crate::churn::{SetUp, set_up};
use crate::plane::Run;
use crate::scale_up::check_final;
use crate::write_requests::WriteRequests;
use crate::{Options, QUIET, Side};

/// How often the restarted process's `/metrics` is read.
const POLL: Duration = Duration::from_millis(100);

pub struct Restart {
    pub side: Side,
    pub load: String,
    pub setup: Duration,
    /// From SIGTERM to the process's exit.
    pub stop: Duration,
    /// From the new process's start to the first `/metrics` read that shows every Service
    /// verified ([`Progress::verified`]).
    pub verified: Duration,
    /// What the last `/metrics` read showed.
    pub progress: Progress,
    /// From the new process's start until writes stop ([`QUIET`] after verification).
    pub writes: Writes,
    pub requests: WriteRequests,
    /// The new process's, when it had verified every Service.
    pub resources: Resources,
    pub correct: String,
}

/// What a controller process's `/metrics` says of its work since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// `endpoint_slice_controller_syncs` (`_total` on svcplane), every result.
    pub slice_syncs: f64,
    /// `endpoint_slice_controller_endpoints_desired`: the endpoints of the Services the slice
    /// controller has synced.
    pub endpoints_desired: f64,
    /// The work queues' metrics (client-go's names, served by both sides).
    pub queues: Option<Queues>,
}

/// `workqueue_work_duration_seconds_count` (keys processed) and `workqueue_depth` of the
/// `endpoint` and `endpoint_slice` queues.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Queues {
    pub endpoints_processed: f64,
    pub endpoints_depth: f64,
    pub slices_processed: f64,
    pub slices_depth: f64,
}

impl Progress {
    pub fn parse(metrics: &str) -> Self {
        let queue = |metric: &str, queue: &str| {
            sample_sum(metrics, metric, Some(&format!("name=\"{queue}\"")))
        };
        let queues = (|| {
            Some(Queues {
                endpoints_processed: queue("workqueue_work_duration_seconds_count", "endpoint")?,
                endpoints_depth: queue("workqueue_depth", "endpoint")?,
                slices_processed: queue("workqueue_work_duration_seconds_count", "endpoint_slice")?,
                slices_depth: queue("workqueue_depth", "endpoint_slice")?,
            })
        })();
        Self {
            slice_syncs: sample_sum(metrics, "endpoint_slice_controller_syncs", None)
                .or_else(|| sample_sum(metrics, "endpoint_slice_controller_syncs_total", None))
                .unwrap_or(0.0),
            endpoints_desired: sample_sum(
                metrics,
                "endpoint_slice_controller_endpoints_desired",
                None,
            )
            .unwrap_or(0.0),
            queues,
        }
    }

    /// Whether every one of `services` Services (with a selector) holding `endpoints`
    /// endpoints in all has been verified: as many slice syncs as Services at least, the
    /// endpoints of all synced, and, where the queues' metrics are served, as many keys
    /// processed from each queue as Services, and both queues empty.
    pub fn verified(&self, services: usize, endpoints: usize) -> bool {
        let (services, endpoints) = (services as f64, endpoints as f64);
        self.slice_syncs >= services
            && self.endpoints_desired >= endpoints
            && self.queues.is_none_or(|q| {
                q.endpoints_processed >= services
                    && q.slices_processed >= services
                    && q.endpoints_depth == 0.0
                    && q.slices_depth == 0.0
            })
    }
}

/// A work queue's totals from client-go's metrics: keys taken, seconds they waited in the
/// queue, seconds their syncs took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueTotals {
    pub taken: f64,
    pub waited: f64,
    pub worked: f64,
}

impl QueueTotals {
    /// The totals of the queue `queue` (`endpoint`, `endpoint_slice`) in `metrics`.
    pub fn parse(metrics: &str, queue: &str) -> Option<Self> {
        let label = format!("name=\"{queue}\"");
        let sum = |metric: &str| sample_sum(metrics, metric, Some(&label));
        Some(Self {
            taken: sum("workqueue_queue_duration_seconds_count")?,
            waited: sum("workqueue_queue_duration_seconds_sum")?,
            worked: sum("workqueue_work_duration_seconds_sum")?,
        })
    }

    /// What was added since `before`.
    pub fn since(self, before: Self) -> Self {
        Self {
            taken: self.taken - before.taken,
            waited: self.waited - before.waited,
            worked: self.worked - before.worked,
        }
    }
}

/// A controller's writes of Endpoints and EndpointSlices as its own client timed them: how
/// many, and their seconds in all. svcplane serves
/// `svcplane_controller_api_write_duration_seconds` (by operation; from serializing the
/// object to reading the answer), kube-controller-manager client-go's
/// `rest_client_request_duration_seconds` (by verb; its endpoint controllers write nothing
/// else but Events, which its recorder sends outside the syncs; the time includes the wait
/// for the client's rate limiter).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientUpdates {
    pub count: f64,
    pub seconds: f64,
}

impl ClientUpdates {
    /// The updates (PUT).
    pub fn parse(metrics: &str) -> Option<Self> {
        Self::read(metrics, &["update"], &["PUT"])
    }

    /// Every write: creates, updates and deletes (POST, PUT, PATCH, DELETE).
    pub fn parse_writes(metrics: &str) -> Option<Self> {
        Self::read(
            metrics,
            &["create", "update", "delete"],
            &["POST", "PUT", "PATCH", "DELETE"],
        )
    }

    /// svcplane's samples of any of the operations `ours`, or else kube-controller-manager's
    /// of any of the verbs `theirs`.
    fn read(metrics: &str, ours: &[&str], theirs: &[&str]) -> Option<Self> {
        let read = |name: &str, key: &str, values: &[&str]| {
            let mut total: Option<Self> = None;
            for value in values {
                let label = format!("{key}=\"{value}\"");
                let sum =
                    |suffix: &str| sample_sum(metrics, &format!("{name}_{suffix}"), Some(&label));
                if let (Some(count), Some(seconds)) = (sum("count"), sum("sum")) {
                    let total = total.get_or_insert_default();
                    total.count += count;
                    total.seconds += seconds;
                }
            }
            total
        };
        read(
            "svcplane_controller_api_write_duration_seconds",
            "operation",
            ours,
        )
        .or_else(|| read("rest_client_request_duration_seconds", "verb", theirs))
    }

    /// What was added since `before`.
    pub fn since(self, before: Self) -> Self {
        Self {
            count: self.count - before.count,
            seconds: self.seconds - before.seconds,
        }
    }
}

/// The sum of the samples of metric `name` (Prometheus text), of those whose labels include
/// `label` (`key="value"`) if given; `None` if there is none.
fn sample_sum(metrics: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let mut sum: Option<f64> = None;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some(split) => split,
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if label.is_some_and(|label| !labels.split(',').any(|l| l == label)) {
            continue;
        }
        let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        *sum.get_or_insert(0.0) += value;
    }
    sum
}

pub async fn restart(side: Side, options: &Options) -> Result<Restart> {
    const NS: &str = "restart";
    let (mut run, load) = Run::for_scenario("restart", NS, side, options).await?;
    let SetUp {
        watches,
        pods,
        time: setup,
        ..
    } = set_up(&run, "restart", NS, options).await?;
    let client = run.client.clone();

    let stopping = Instant::now();
    run.stop_controllers()?;
    let stop = stopping.elapsed();
    let counter = WriteCounter::start(&client, NS).await?;
    let requests_before = WriteRequests::read(&client).await?;
    let started = run.start_controllers_again()?;
    // The scenario's Services and the probe, with one endpoint per pod.
    let services = options.services + 1;
    let endpoints = options.services * options.pods_per_service + 1;
    let (verified, progress) = loop {
        let progress = run
            .controller_metrics()
            .await
            .map(|m| Progress::parse(&m))
            .unwrap_or_default();
        let at = started.elapsed();
        if progress.verified(services, endpoints) {
            break (at, progress);
        }
        anyhow::ensure!(
            at < options.limit(),
            "{side}: the restarted controllers had not verified every Service after {:?}; last seen {progress:?}",
            options.limit()
        );
        tokio::time::sleep(POLL).await;
    };
    let resources = run.resources()?;
    eprintln!(
        "restart, {side}: every Service verified {} after the start",
        crate::report::seconds(verified)
    );
    let writes = counter.settled(QUIET, options.limit()).await;
    let requests = WriteRequests::read(&client).await?.since(requests_before);
    let (correct, _) = check_final(&client, NS, &pods).await?;
    for watch in watches {
        watch.abort();
    }
    Ok(Restart {
        side,
        load,
        setup,
        stop,
        verified,
        progress,
        writes,
        requests,
        resources,
        correct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_of_kube_controller_manager_and_of_svcplane() {
        let in_tree = r#"
# TYPE endpoint_slice_controller_syncs counter
endpoint_slice_controller_syncs{result="success"} 499
endpoint_slice_controller_syncs{result="error"} 2
endpoint_slice_controller_endpoints_desired 5001
workqueue_depth{name="endpoint"} 0
workqueue_depth{name="endpoint_slice"} 1
workqueue_depth{name="endpoint_slice_mirroring"} 7
workqueue_work_duration_seconds_count{name="endpoint"} 502
workqueue_work_duration_seconds_count{name="endpoint_slice"} 501
workqueue_work_duration_seconds_sum{name="endpoint"} 3.5
"#;
        let progress = Progress::parse(in_tree);
        assert_eq!(progress.slice_syncs, 501.0);
        assert_eq!(progress.endpoints_desired, 5001.0);
        assert_eq!(
            progress.queues,
            Some(Queues {
                endpoints_processed: 502.0,
                endpoints_depth: 0.0,
                slices_processed: 501.0,
                slices_depth: 1.0,
            })
        );
        assert!(!progress.verified(501, 5001), "a key still queued");
        assert!(
            Progress::parse(&in_tree.replace("slice\"} 1\n", "slice\"} 0\n")).verified(501, 5001)
        );

        let svcplane = "endpoint_slice_controller_syncs_total{result=\"success\"} 501\n\
                        endpoint_slice_controller_endpoints_desired 5000\n# EOF\n";
        let progress = Progress::parse(svcplane);
        assert_eq!(progress.queues, None);
        assert!(
            !progress.verified(501, 5001),
            "a Service's endpoints not synced yet"
        );
        assert!(progress.verified(501, 5000));
    }

    #[test]
    fn a_queues_totals_and_their_difference() {
        let before = "workqueue_queue_duration_seconds_sum{name=\"endpoint\"} 0.5\n\
                      workqueue_queue_duration_seconds_count{name=\"endpoint\"} 10\n\
                      workqueue_work_duration_seconds_sum{name=\"endpoint\"} 0.25\n\
                      workqueue_queue_duration_seconds_count{name=\"endpoint_slice\"} 99\n";
        let after = before
            .replace(
                "seconds_sum{name=\"endpoint\"} 0.5",
                "seconds_sum{name=\"endpoint\"} 1.5",
            )
            .replace("count{name=\"endpoint\"} 10", "count{name=\"endpoint\"} 30");
        let totals = |text: &str| QueueTotals::parse(text, "endpoint").unwrap();
        assert_eq!(
            totals(&after).since(totals(before)),
            QueueTotals {
                taken: 20.0,
                waited: 1.0,
                worked: 0.0,
            }
        );
        // The slice queue serves no durations here.
        assert_eq!(QueueTotals::parse(before, "endpoint_slice"), None);
    }

    #[test]
    fn updates_as_either_client_timed_them() {
        let svcplane = "svcplane_controller_api_write_duration_seconds_sum{kind=\"Endpoints\",operation=\"create\"} 0.1\n\
             svcplane_controller_api_write_duration_seconds_count{kind=\"Endpoints\",operation=\"create\"} 4\n\
             svcplane_controller_api_write_duration_seconds_sum{kind=\"Endpoints\",operation=\"update\"} 0.25\n\
             svcplane_controller_api_write_duration_seconds_count{kind=\"Endpoints\",operation=\"update\"} 6\n\
             svcplane_controller_api_write_duration_seconds_sum{kind=\"EndpointSlice\",operation=\"update\"} 0.5\n\
             svcplane_controller_api_write_duration_seconds_count{kind=\"EndpointSlice\",operation=\"update\"} 10\n";
        let updates = ClientUpdates::parse(svcplane).unwrap();
        assert_eq!(
            updates,
            ClientUpdates {
                count: 16.0,
                seconds: 0.75
            }
        );
        let in_tree = "rest_client_request_duration_seconds_sum{host=\"127.0.0.1:6443\",verb=\"POST\"} 9\n\
             rest_client_request_duration_seconds_count{host=\"127.0.0.1:6443\",verb=\"POST\"} 9\n\
             rest_client_request_duration_seconds_sum{host=\"127.0.0.1:6443\",verb=\"PUT\"} 0.5\n\
             rest_client_request_duration_seconds_count{host=\"127.0.0.1:6443\",verb=\"PUT\"} 20\n";
        let before = ClientUpdates::parse(in_tree).unwrap();
        let after =
            ClientUpdates::parse(&in_tree.replace("} 20", "} 30").replace("} 0.5", "} 1.5"));
        assert_eq!(
            after.unwrap().since(before),
            ClientUpdates {
                count: 10.0,
                seconds: 1.0
            }
        );
        assert_eq!(
            ClientUpdates::parse("workqueue_depth{name=\"endpoint\"} 0\n"),
            None
        );
        assert_eq!(
            ClientUpdates::parse_writes(svcplane),
            Some(ClientUpdates {
                count: 20.0,
                seconds: 0.85
            })
        );
        assert_eq!(
            ClientUpdates::parse_writes(in_tree),
            Some(ClientUpdates {
                count: 29.0,
                seconds: 9.5
            })
        );
    }
}
