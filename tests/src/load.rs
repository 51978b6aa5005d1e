//! Bursts of Service creates from many concurrent clients: what the webhook's fault tests
//! and its benchmark drive the apiserver with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;

/// How long a create may go unanswered before it counts as hung.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// The error kind of a create that got no answer within [`ANSWER_LIMIT`].
pub const NO_ANSWER: &str = "no answer within 30s";

/// One burst of creates.
#[derive(Clone)]
pub struct Burst {
    /// The namespace the Services go to.
    pub namespace: String,
    /// How many Services, named `<prefix>-<i>`.
    pub count: usize,
    /// Name prefix.
    pub prefix: String,
    /// The Service `i` is.
    pub shape: fn(&str, usize) -> Service,
    /// Retry a failed create for this long (a client that keeps trying); `None`: one try.
    pub retry_for: Option<Duration>,
    /// Creates per second: create `i` is not sent before `i / rate` seconds into the burst
    /// (an open-loop arrival rate, as long as the clients keep up); `None`: each client sends
    /// its next create as soon as its last one is answered.
    pub rate: Option<f64>,
}

/// What a burst saw.
#[derive(Debug, Default)]
pub struct BurstReport {
    /// Creates that succeeded.
    pub created: usize,
    /// A retry found the Service already there: an earlier try had landed although its
    /// client saw an error.
    pub landed_unseen: usize,
    /// Latency of each create that succeeded on its first try, with the Service's index
    /// (`i` of `<prefix>-<i>`).
    pub first_try_latencies: Vec<(usize, Duration)>,
    /// The same creates timed from when they were due (`i / rate` into the burst) instead
    /// of sent: with a rate, a create waiting for a free client waits in this figure too, so
    /// that a side that cannot keep the rate shows it (no coordinated omission). Without a
    /// rate, the latencies again.
    pub first_try_from_due: Vec<(usize, Duration)>,
    /// Failed tries, by kind (see [`error_kind`]).
    pub errors: BTreeMap<String, usize>,
    /// Services never created.
    pub given_up: Vec<String>,
    /// From the first create sent to the last answer.
    pub elapsed: Duration,
}

impl BurstReport {
    /// Failed tries in all.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// A few lines for a test's output.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} created ({} had landed although their client saw an error), {} given up, {} failed tries, in {:.1?}",
            self.created,
            self.landed_unseen,
            self.given_up.len(),
            self.error_count(),
            self.elapsed
        );
        for (kind, count) in &self.errors {
            text.push_str(&format!("\n  {count:>5} x {kind}"));
        }
        text
    }
}

/// Creates `burst.count` Services with one worker per client, all at once. `done` counts
/// the Services finished (created or given up), for a test to act in the middle of it.
pub async fn run(clients: &[Client], burst: &Burst, done: Arc<AtomicUsize>) -> BurstReport {
    let next = Arc::new(AtomicUsize::new(0));
    let report = Arc::new(Mutex::new(BurstReport::default()));
    let started = Instant::now();
    let workers: Vec<_> = clients
        .iter()
        .map(|client| {
            let api: Api<Service> = Api::namespaced(client.clone(), &burst.namespace);
            let (burst, next, done, report) = (
                burst.clone(),
                Arc::clone(&next),
                Arc::clone(&done),
                Arc::clone(&report),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= burst.count {
                        break;
                    }
                    let due = burst
                        .rate
                        .map(|rate| started + Duration::from_secs_f64(i as f64 / rate));
                    if let Some(due) = due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let name = format!("{}-{i}", burst.prefix);
                    let service = (burst.shape)(&name, i);
                    create(&api, &burst, (i, &name, due), &service, &report).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a burst worker panicked");
    }
    let mut report = std::mem::take(&mut *report.lock().await);
    report.elapsed = started.elapsed();
    report
}

async fn create(
    api: &Api<Service>,
    burst: &Burst,
    (i, name, due): (usize, &str, Option<Instant>),
    service: &Service,
    report: &Mutex<BurstReport>,
) {
    let first = Instant::now();
    let deadline = burst.retry_for.map(|limit| first + limit);
    let mut tries = 0;
    loop {
        tries += 1;
        let sent = Instant::now();
        let result =
            tokio::time::timeout(ANSWER_LIMIT, api.create(&PostParams::default(), service)).await;
        let latency = sent.elapsed();
        let mut report = report.lock().await;
        let result = match result {
            Ok(result) => result,
            Err(_) => {
                *report.errors.entry(NO_ANSWER.to_string()).or_default() += 1;
                report.given_up.push(name.to_string());
                return;
            }
        };
        match result {
            Ok(_) => {
                report.created += 1;
                if tries == 1 {
                    report.first_try_latencies.push((i, latency));
                    let from_due = due.map_or(latency, |due| sent.duration_since(due) + latency);
                    report.first_try_from_due.push((i, from_due));
                }
                return;
            }
            Err(kube::Error::Api(status)) if tries > 1 && status.code == 409 => {
                report.created += 1;
                report.landed_unseen += 1;
                return;
            }
            Err(error) => {
                *report.errors.entry(error_kind(&error, name)).or_default() += 1;
                match deadline {
                    Some(deadline) if Instant::now() < deadline => {}
                    _ => {
                        report.given_up.push(name.to_string());
                        return;
                    }
                }
            }
        }
        drop(report);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An error with what varies from one Service to the next (its name, numbers) masked, so
/// that errors of one kind count together.
pub fn error_kind(error: &kube::Error, name: &str) -> String {
    let text = match error {
        kube::Error::Api(status) => {
            format!("HTTP {} {}: {}", status.code, status.reason, status.message)
        }
        other => format!("{other}: {}", source_chain(other)),
    };
    let masked: String = text
        .replace(name, "<name>")
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    let mut kind: String = masked.chars().take(220).collect();
    if masked.len() > kind.len() {
        kind.push('…');
    }
    kind
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.last().cloned().unwrap_or_default()
}

/// Nearest-rank percentile of sorted durations (`p` in 0..=100).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A ClusterIP Service with a selector and one port.
pub fn cluster_ip_service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "selector": { "app": name }, "ports": [{ "name": "http", "port": 80 }] },
    }))
    .expect("a valid Service")
}

/// A NodePort Service; with `tcp_and_udp`, port 53 over both protocols (one shared
/// nodePort).
pub fn node_port_service(name: &str, tcp_and_udp: bool) -> Service {
    let ports = if tcp_and_udp {
        json!([{ "name": "dns-tcp", "port": 53, "protocol": "TCP" },
               { "name": "dns-udp", "port": 53, "protocol": "UDP" }])
    } else {
        json!([{ "name": "http", "port": 80, "protocol": "TCP" }])
    };
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "type": "NodePort", "selector": { "app": name }, "ports": ports },
    }))
    .expect("a valid Service")
}

/// A dual-stack ClusterIP Service (PreferDualStack).
pub fn dual_stack_service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "ipFamilyPolicy": "PreferDualStack", "selector": { "app": name },
                  "ports": [{ "name": "http", "port": 80 }] },
    }))
    .expect("a valid Service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
