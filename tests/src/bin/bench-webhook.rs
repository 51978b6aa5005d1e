//! What svcplane's admission webhook costs a Service create: the same burst of creates
//! against a fresh local control plane without the webhook, then against another with it,
//! side by side. Run by `hack/bench-webhook.sh` (release build).
//!
//! `bench-webhook --svcplane PATH [--services N] [--clients C] [--warmup W] [--rounds R]
//! [--node-port-every K] [--rate CREATES_PER_SECOND]` (defaults 5000, 50, 200, 3, 5, 0).
//!
//! With `--rate 0` (closed loop) each client sends its next create when its last one is
//! answered, so a faster create means more creates in flight at once. With a rate, create
//! `i` is sent `i / rate` seconds into the burst (while a client is free), so both runs see
//! the same arrivals and latency is compared at equal load.
//!
//! R rounds, each a run without the webhook then one with it, so that both see the
//! machine alike; the figures pool every round's creates. Each run: a fresh etcd +
//! kube-apiserver; W creates from the C clients to warm up (not
//! measured); then N creates (one in K a NodePort, the others ClusterIP) from C concurrent
//! clients, each with its own connections, one try each, timing every create. With the
//! webhook, one replica runs as its own process (`svcplane webhook`, the binary at PATH, as
//! it is deployed), registered at its loopback URL, and its own handling time is read from
//! its `svcplane_admission_handling_seconds` histogram (the burst's share: after minus
//! before). Last, the decision alone (decode, plan, patch,
//! encode, without the persisted write) is timed in this process on the same reviews.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use allocator::{Allocators, ClusterIpAllocator, NodePortAllocator, PortRange};
use anyhow::{Context, Result};
use e2e::load::{self, Burst, BurstReport};
use e2e::process::resources;
use e2e::svcplane::{self, BinaryReplica};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use webhook::review;
use webhook::services::mutate_service;
use webhook::state::{InMemoryAllocation, UnconfirmedConfig};

struct Options {
    svcplane: PathBuf,
    /// `--rate`: creates per second; `None` (`--rate 0`, the default): closed loop.
    rate: Option<f64>,
    services: usize,
    clients: usize,
    warmup: usize,
    rounds: usize,
}

/// One Service in this many is a NodePort (`--node-port-every`; 0: none). Read by
/// [`shape`], which the load generator takes as a plain function.
static NODE_PORT_EVERY: AtomicUsize = AtomicUsize::new(5);

impl Options {
    fn parse() -> Result<Self> {
        const USAGE: &str = "usage: bench-webhook --svcplane PATH [--services N] [--clients C] [--warmup W] [--rounds R] [--node-port-every K (0: no NodePorts)] [--rate R (creates/s; 0: closed loop)]";
        let mut svcplane = None;
        let mut options = Self {
            svcplane: PathBuf::new(),
            rate: None,
            services: 5000,
            clients: 50,
            warmup: 200,
            rounds: 3,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            let number = |value: &str| -> Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{flag} {value}: not a number"))
            };
            match flag.as_str() {
                "--svcplane" => svcplane = Some(PathBuf::from(value)),
                "--rate" => {
                    let rate: f64 = value
                        .parse()
                        .with_context(|| format!("--rate {value}: not a number"))?;
                    options.rate = (rate > 0.0).then_some(rate);
                }
                "--services" => options.services = number(&value)?,
                "--clients" => options.clients = number(&value)?,
                "--warmup" => options.warmup = number(&value)?,
                "--rounds" => options.rounds = number(&value)?,
                "--node-port-every" => NODE_PORT_EVERY.store(number(&value)?, Ordering::Relaxed),
                other => anyhow::bail!("unknown flag {other}; {USAGE}"),
            }
        }
        options.svcplane =
            svcplane.with_context(|| format!("--svcplane PATH is needed; {USAGE}"))?;
        anyhow::ensure!(options.clients > 0, "--clients must be at least 1");
        anyhow::ensure!(options.rounds > 0, "--rounds must be at least 1");
        Ok(options)
    }
}

/// One Service in five (by default) is a NodePort: 1,000 of 5,000 fit the default port
/// range.
fn shape(name: &str, i: usize) -> Service {
    if is_node_port(i) {
        load::node_port_service(name, false)
    } else {
        load::cluster_ip_service(name)
    }
}

fn is_node_port(i: usize) -> bool {
    let every = NODE_PORT_EVERY.load(Ordering::Relaxed);
    every > 0 && i % every == every - 1
}

/// Cumulative bucket counts of a histogram (`le` in seconds, count), by `le`, with its
/// sum and count.
#[derive(Clone, Debug, Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// The `webhook="mutate-services"` series of the handling-time histogram in a
    /// `/metrics` text.
    fn parse(text: &str) -> Self {
        Self::parse_series(
            text,
            "svcplane_admission_handling_seconds",
            &["webhook=\"mutate-services\""],
        )
    }

    /// Histogram `name` of a `/metrics` text, its series carrying every label of `labels`
    /// added together.
    fn parse_series(text: &str, name: &str, labels: &[&str]) -> Self {
        let mut histogram = Self::default();
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            if !line.starts_with(name) || !labels.iter().all(|label| line.contains(label)) {
                continue;
            }
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if line.starts_with(&format!("{name}_bucket{{")) {
                let le = line
                    .split("le=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(|le| {
                        if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap_or(f64::NAN)
                        }
                    });
                if let Some(le) = le.filter(|le| !le.is_nan()) {
                    match buckets.iter_mut().find(|(other, _)| *other == le) {
                        Some(bucket) => bucket.1 += value,
                        None => buckets.push((le, value)),
                    }
                }
            } else if line.starts_with(&format!("{name}_sum{{")) {
                histogram.sum += value;
            } else if line.starts_with(&format!("{name}_count{{")) {
                histogram.count += value;
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram.buckets = buckets;
        histogram
    }

    /// What was observed between `before` and `self`.
    fn since(&self, before: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| {
                    let earlier = before
                        .buckets
                        .iter()
                        .find(|(other, _)| *other == le)
                        .map_or(0.0, |&(_, count)| count);
                    (le, count - earlier)
                })
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// `self` and `other` together (same buckets).
    fn plus(&self, other: &Histogram) -> Histogram {
        if self.buckets.is_empty() {
            return other.clone();
        }
        let mut sum = self.clone();
        for (bucket, (_, count)) in sum.buckets.iter_mut().zip(&other.buckets) {
            bucket.1 += count;
        }
        sum.sum += other.sum;
        sum.count += other.count;
        sum
    }

    /// The bucket `(lower, upper]` holding quantile `q`, and the linear interpolation
    /// inside it (as Prometheus' `histogram_quantile` computes).
    fn quantile(&self, q: f64) -> Option<(f64, f64, f64)> {
        let rank = q * self.count;
        let mut lower = 0.0;
        let mut below = 0.0;
        for &(upper, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > 0.0 {
                let inside = cumulative - below;
                let estimate = if upper.is_infinite() {
                    lower
                } else {
                    lower + (upper - lower) * ((rank - below) / inside)
                };
                return Some((lower, upper, estimate));
            }
            lower = upper;
            below = cumulative;
        }
        None
    }
}

/// The AdmissionReview the apiserver sends for creating Service `i` of the burst.
fn review_body(i: usize) -> Result<Vec<u8>> {
    let name = format!("svc-{i}");
    let mut object = serde_json::to_value(shape(&name, i))?;
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("Service");
    object["metadata"]["namespace"] = json!("bench");
    object["spec"]["sessionAffinity"] = json!("None");
    object["spec"]["internalTrafficPolicy"] = json!("Cluster");
    object["spec"]["ports"][0]["targetPort"] = json!(80);
    Ok(serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "kind": { "group": "", "version": "v1", "kind": "Service" },
            "resource": { "group": "", "version": "v1", "resource": "services" },
            "requestKind": { "group": "", "version": "v1", "kind": "Service" },
            "requestResource": { "group": "", "version": "v1", "resource": "services" },
            "name": name,
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": { "username": "system:admin", "groups": ["system:masters", "system:authenticated"] },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1" },
        }
    }))?)
}

/// The webhook's decision alone, per review, one after the other: decode, the mutating
/// pipeline on in-memory allocators (what the store plans, without its write), encode the
/// answer. What `mutate-services` does besides queueing for and waiting on the write that
/// persists the allocation.
async fn decision_times(count: usize) -> Result<Vec<Duration>> {
    let allocators = Allocators::new(
        vec![
            ClusterIpAllocator::new("10.96.0.0/12".parse()?),
            ClusterIpAllocator::new("fd00:10:96::/112".parse()?),
        ],
        NodePortAllocator::new(PortRange::default()),
    )?;
    // Nothing confirms values here: no per-namespace limit.
    let unconfirmed = UnconfirmedConfig {
        per_namespace: usize::MAX,
        ..UnconfirmedConfig::default()
    };
    let allocation = InMemoryAllocation::new(allocators, unconfirmed);
    let bodies = (0..count).map(review_body).collect::<Result<Vec<_>>>()?;
    let mut times = Vec::with_capacity(count);
    for body in &bodies {
        let started = Instant::now();
        let request = review::decode(body).map_err(anyhow::Error::msg)?;
        let response = mutate_service(&request, &allocation).await;
        anyhow::ensure!(
            response.allowed && response.patch.is_some(),
            "a benchmark create was not allocated: {}",
            response.result.message
        );
        let encoded = serde_json::to_vec(&response.into_review())?;
        std::hint::black_box(encoded);
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

/// The apiserver's own request and admission latencies, for the burst (after minus
/// before).
#[derive(Clone, Debug, Default)]
struct ApiserverFigures {
    /// `POST services`: the creates as the apiserver timed them.
    service_posts: Histogram,
    /// Its calls to svcplane's mutating webhook.
    webhook_calls: Histogram,
    /// Its calls to svcplane's validating webhook for Services.
    validating_calls: Histogram,
    /// `PUT rangeallocations`: svcplane's compare-and-swap writes.
    range_writes: Histogram,
    /// The etcd requests of kube-apiserver's own node-port allocator (its reads and
    /// writes of the `servicenodeportallocations` key, each under the allocator's mutex).
    node_port_etcd: Histogram,
    /// The etcd requests that store the created Services, for comparison.
    service_etcd: Histogram,
}

impl ApiserverFigures {
    fn parse(text: &str) -> Self {
        let pair = Histogram::parse_series;
        Self {
            service_posts: pair(
                text,
                "apiserver_request_duration_seconds",
                &["resource=\"services\"", "verb=\"POST\"", "dry_run=\"\""],
            ),
            webhook_calls: pair(
                text,
                "apiserver_admission_webhook_admission_duration_seconds",
                &[
                    "name=\"allocate.services.svcplane.io\"",
                    "operation=\"CREATE\"",
                ],
            ),
            validating_calls: pair(
                text,
                "apiserver_admission_webhook_admission_duration_seconds",
                &["name=\"services.svcplane.io\"", "operation=\"CREATE\""],
            ),
            range_writes: pair(
                text,
                "apiserver_request_duration_seconds",
                &["resource=\"rangeallocations\"", "verb=\"PUT\""],
            ),
            node_port_etcd: pair(
                text,
                "etcd_request_duration_seconds",
                &["resource=\"servicenodeportallocations\""],
            ),
            service_etcd: pair(
                text,
                "etcd_request_duration_seconds",
                &["resource=\"services\"", "operation=\"create\""],
            ),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            service_posts: self.service_posts.since(&before.service_posts),
            webhook_calls: self.webhook_calls.since(&before.webhook_calls),
            validating_calls: self.validating_calls.since(&before.validating_calls),
            range_writes: self.range_writes.since(&before.range_writes),
            node_port_etcd: self.node_port_etcd.since(&before.node_port_etcd),
            service_etcd: self.service_etcd.since(&before.service_etcd),
        }
    }

    fn plus(&self, other: &Self) -> Self {
        Self {
            service_posts: self.service_posts.plus(&other.service_posts),
            webhook_calls: self.webhook_calls.plus(&other.webhook_calls),
            validating_calls: self.validating_calls.plus(&other.validating_calls),
            range_writes: self.range_writes.plus(&other.range_writes),
            node_port_etcd: self.node_port_etcd.plus(&other.node_port_etcd),
            service_etcd: self.service_etcd.plus(&other.service_etcd),
        }
    }
}

async fn apiserver_figures(client: &kube::Client) -> Result<ApiserverFigures> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(ApiserverFigures::parse(
        &client.request_text(request).await?,
    ))
}

/// `mean over n` of a histogram in seconds.
fn mean_of(histogram: &Histogram) -> String {
    if histogram.count == 0.0 {
        return "none".to_string();
    }
    format!(
        "mean {} over {}",
        seconds_ms(histogram.sum / histogram.count),
        histogram.count
    )
}

/// The bucket holding the 99th percentile of a histogram in seconds.
fn p99_of(histogram: &Histogram) -> String {
    match histogram.quantile(0.99) {
        Some((lower, upper, _)) => format!(
            "p99 in ({}, {}]",
            seconds_ms(lower),
            if upper.is_infinite() {
                "+Inf".to_string()
            } else {
                seconds_ms(upper)
            }
        ),
        None => "no p99".to_string(),
    }
}

struct RunResult {
    report: BurstReport,
    handling: Option<Histogram>,
    apiserver: ApiserverFigures,
    /// CPU seconds used during the measured creates by each of [`CPU_OF`].
    cpu: Vec<f64>,
    /// `/proc/loadavg`'s 1-minute figure when the run started.
    load: String,
}

async fn handling_histogram(replica: &BinaryReplica) -> Result<Histogram> {
    Ok(Histogram::parse(
        &svcplane::http_get(replica.admin, "/metrics").await?,
    ))
}

async fn run(options: &Options, with_webhook: bool) -> Result<RunResult> {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .unwrap_or_default();
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let client = plane.client().await?;
    let replica = if with_webhook {
        let flags = ["--log=warn".to_string()];
        Some(svcplane::start_binary(&plane, &options.svcplane, "webhook", &flags).await?)
    } else {
        None
    };
    let mut clients = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        clients.push(plane.client().await?);
    }
    for namespace in ["warmup", "bench"] {
        create_namespace(&client, namespace).await?;
    }
    let burst = |namespace: &str, count: usize, rate: Option<f64>| Burst {
        namespace: namespace.to_string(),
        count,
        prefix: "svc".to_string(),
        shape,
        retry_for: None,
        rate,
    };
    let warmup = load::run(
        &clients,
        &burst("warmup", options.warmup, None),
        Arc::default(),
    )
    .await;
    anyhow::ensure!(
        warmup.error_count() == 0,
        "the warm-up failed: {}",
        warmup.summary()
    );

    let before = match &replica {
        Some(replica) => Some(handling_histogram(replica).await?),
        None => None,
    };
    let apiserver_before = apiserver_figures(&client).await?;
    let &[etcd, apiserver] = plane.pids().as_slice() else {
        anyhow::bail!("expected etcd and kube-apiserver alone: {:?}", plane.pids());
    };
    let webhook = replica.as_ref().map_or(0, |replica| replica.process.pid());
    let pids = [etcd, apiserver, webhook, std::process::id()];
    let cpu_before = cpu_seconds(&pids);
    let report = load::run(
        &clients,
        &burst("bench", options.services, options.rate),
        Arc::default(),
    )
    .await;
    let cpu: Vec<f64> = cpu_seconds(&pids)
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| after - before)
        .collect();
    let apiserver = apiserver_figures(&client).await?.since(&apiserver_before);
    let handling = match (&replica, before) {
        (Some(replica), Some(before)) => Some(handling_histogram(replica).await?.since(&before)),
        _ => None,
    };
    drop(replica);
    drop(plane);
    Ok(RunResult {
        report,
        handling,
        apiserver,
        cpu,
        load,
    })
}

/// User + system seconds each process has used so far (0 for pid 0, or one gone).
fn cpu_seconds(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|&pid| match pid {
            0 => 0.0,
            pid => resources(pid).map_or(0.0, |r| r.cpu_seconds),
        })
        .collect()
}

/// Whose CPU time `RunResult::cpu` holds, in order.
const CPU_OF: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "svcplane webhook",
    "driver (its clients)",
];

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn seconds_ms(seconds: f64) -> String {
    if seconds.is_infinite() {
        "+Inf".to_string()
    } else {
        format!("{:.3} ms", seconds * 1e3)
    }
}

/// The first-try latencies of the creates whose index `keep` accepts.
fn latencies<'a>(
    runs: impl IntoIterator<Item = &'a RunResult>,
    keep: impl Fn(usize) -> bool,
) -> impl Iterator<Item = Duration> {
    runs.into_iter()
        .flat_map(|run| run.report.first_try_latencies.iter())
        .filter(move |(i, _)| keep(*i))
        .map(|(_, latency)| *latency)
}

/// The same, sorted.
fn sorted_latencies<'a>(
    runs: impl IntoIterator<Item = &'a RunResult>,
    keep: impl Fn(usize) -> bool,
) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = latencies(runs, keep).collect();
    latencies.sort();
    latencies
}

fn every(_: usize) -> bool {
    true
}

/// How many creates of one kind were in flight on average over a run (Little's law: the
/// time they spent unanswered, summed, over the run's length), pooled over runs.
fn mean_in_flight(runs: &[RunResult], keep: impl Fn(usize) -> bool) -> f64 {
    let waited: f64 = latencies(runs, keep).map(|l| l.as_secs_f64()).sum();
    let elapsed: f64 = runs
        .iter()
        .map(|run| run.report.elapsed.as_secs_f64())
        .sum();
    waited / elapsed
}

fn ratio(with: Duration, without: Duration) -> f64 {
    with.as_secs_f64() / without.as_secs_f64()
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = Options::parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let node_ports = match NODE_PORT_EVERY.load(Ordering::Relaxed) {
        0 => "no NodePorts".to_string(),
        every => format!("one in {every} a NodePort"),
    };
    let pacing = match options.rate {
        None => "each client sending its next create when the last is answered".to_string(),
        Some(rate) => format!("paced at {rate} creates/s (open loop while the clients keep up)"),
    };
    println!(
        "{} Service creates ({node_ports}) from {} concurrent clients per run, {pacing} ({} warm-up creates first, not measured); {} rounds of a run without then a run with the webhook",
        options.services, options.clients, options.warmup, options.rounds
    );

    let mut without = Vec::new();
    let mut with = Vec::new();
    println!();
    for round in 1..=options.rounds {
        eprintln!("round {round}/{}: without the webhook", options.rounds);
        let a = runtime.block_on(run(&options, false))?;
        eprintln!("round {round}/{}: with the webhook", options.rounds);
        let b = runtime.block_on(run(&options, true))?;
        let (la, lb) = (sorted_latencies([&a], every), sorted_latencies([&b], every));
        println!(
            "round {round}: without p50 {} p99 {} total {:.2} s (load {}) | with p50 {} p99 {} total {:.2} s (load {}) | p99 ratio {:.2}x",
            ms(load::percentile(&la, 50.0)),
            ms(load::percentile(&la, 99.0)),
            a.report.elapsed.as_secs_f64(),
            a.load,
            ms(load::percentile(&lb, 50.0)),
            ms(load::percentile(&lb, 99.0)),
            b.report.elapsed.as_secs_f64(),
            b.load,
            ratio(load::percentile(&lb, 99.0), load::percentile(&la, 99.0)),
        );
        without.push(a);
        with.push(b);
    }

    let (a, b) = (
        sorted_latencies(&without, every),
        sorted_latencies(&with, every),
    );
    let mut rows: Vec<(&str, String, String, String)> = Vec::new();
    for (label, p) in [
        ("create p50", 50.0),
        ("create p99", 99.0),
        ("create max", 100.0),
    ] {
        let (x, y) = (load::percentile(&a, p), load::percentile(&b, p));
        rows.push((label, ms(x), ms(y), format!("{:.2}x", ratio(y, x))));
    }
    let total = |runs: &[RunResult]| -> Duration {
        runs.iter().map(|run| run.report.elapsed).sum::<Duration>() / runs.len() as u32
    };
    let (ta, tb) = (total(&without), total(&with));
    rows.push((
        "total time",
        format!("{:.2} s", ta.as_secs_f64()),
        format!("{:.2} s", tb.as_secs_f64()),
        format!("{:.2}x", ratio(tb, ta)),
    ));
    let created = |runs: &[RunResult]| runs.iter().map(|run| run.report.created).sum::<usize>();
    let failed = |runs: &[RunResult]| {
        runs.iter()
            .map(|run| run.report.error_count())
            .sum::<usize>()
    };
    rows.push((
        "failed creates",
        failed(&without).to_string(),
        failed(&with).to_string(),
        String::new(),
    ));
    println!();
    println!(
        "all rounds ({} and {} creates; total time: mean per run)",
        created(&without),
        created(&with)
    );
    println!(
        "{:<16}{:>18}{:>18}{:>10}",
        "", "without webhook", "with webhook", "ratio"
    );
    for (label, x, y, ratio) in &rows {
        println!("{label:<16}{x:>18}{y:>18}{ratio:>10}");
    }
    if NODE_PORT_EVERY.load(Ordering::Relaxed) > 0 {
        println!();
        println!(
            "by kind (first tries; in flight: mean number of such creates unanswered at once)"
        );
        println!(
            "{:<22}{:>18}{:>18}{:>10}",
            "", "without webhook", "with webhook", "ratio"
        );
        let not_node_port = |i| !is_node_port(i);
        for (kind, keep) in [
            ("NodePort", &is_node_port as &dyn Fn(usize) -> bool),
            ("ClusterIP", &not_node_port),
        ] {
            let (x, y) = (
                sorted_latencies(&without, keep),
                sorted_latencies(&with, keep),
            );
            for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
                let (px, py) = (load::percentile(&x, p), load::percentile(&y, p));
                println!(
                    "{:<22}{:>18}{:>18}{:>10}",
                    format!("{kind} {label}"),
                    ms(px),
                    ms(py),
                    format!("{:.2}x", ratio(py, px))
                );
            }
            let (fx, fy) = (mean_in_flight(&without, keep), mean_in_flight(&with, keep));
            println!(
                "{:<22}{:>18.1}{:>18.1}{:>10}",
                format!("{kind} in flight"),
                fx,
                fy,
                format!("{:.2}x", fy / fx)
            );
        }
    }
    for (name, runs) in [("without", &without), ("with", &with)] {
        for run in runs.iter().filter(|run| run.report.error_count() > 0) {
            println!("errors {name} the webhook: {}", run.report.summary());
        }
    }

    let apiserver = |runs: &[RunResult]| {
        runs.iter().fold(ApiserverFigures::default(), |sum, run| {
            sum.plus(&run.apiserver)
        })
    };
    let (sa, sb) = (apiserver(&without), apiserver(&with));
    println!();
    println!("as kube-apiserver timed them (its /metrics, the measured creates):");
    println!(
        "  POST services without the webhook: {}, {}",
        mean_of(&sa.service_posts),
        p99_of(&sa.service_posts)
    );
    println!(
        "  POST services with the webhook:    {}, {}; of it, the call to the mutating webhook: {}, {}, and to the validating one: {}, {}; svcplane's PUT rangeallocations: {}",
        mean_of(&sb.service_posts),
        p99_of(&sb.service_posts),
        mean_of(&sb.webhook_calls),
        p99_of(&sb.webhook_calls),
        mean_of(&sb.validating_calls),
        p99_of(&sb.validating_calls),
        mean_of(&sb.range_writes)
    );
    let elapsed = |runs: &[RunResult]| -> f64 {
        runs.iter()
            .map(|run| run.report.elapsed.as_secs_f64())
            .sum()
    };
    for (name, figures, runs) in [("without", &sa, &without), ("with", &sb, &with)] {
        println!(
            "  {name} the webhook, its node-port allocator's etcd requests (made holding the allocator's one mutex): {}, {}, busy {:.0}% of the runs' time; its etcd requests creating the Services: {}, {}",
            mean_of(&figures.node_port_etcd),
            p99_of(&figures.node_port_etcd),
            100.0 * figures.node_port_etcd.sum / elapsed(runs),
            mean_of(&figures.service_etcd),
            p99_of(&figures.service_etcd),
        );
    }

    println!();
    println!(
        "CPU time during the measured creates (user + system, all rounds; per create in brackets):"
    );
    for (i, name) in CPU_OF.iter().enumerate() {
        let total = |runs: &[RunResult]| runs.iter().map(|run| run.cpu[i]).sum::<f64>();
        let (x, y) = (total(&without), total(&with));
        let per = |seconds: f64, runs: &[RunResult]| 1e3 * seconds / created(runs).max(1) as f64;
        println!(
            "  {name:<20} without {x:>6.2} s ({:.2} ms)   with {y:>6.2} s ({:.2} ms)",
            per(x, &without),
            per(y, &with)
        );
    }

    let handling = with
        .iter()
        .filter_map(|run| run.handling.as_ref())
        .fold(Histogram::default(), |sum, h| sum.plus(h));
    println!();
    println!(
        "webhook handling time (mutate-services, from its histogram, {} reviews of the measured creates):",
        handling.count
    );
    println!(
        "  mean {} (histogram sum / count)",
        seconds_ms(handling.sum / handling.count)
    );
    let mut handling_p99 = None;
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        if let Some((lower, upper, estimate)) = handling.quantile(q) {
            println!(
                "  {label}  in bucket ({}, {}], {} interpolated",
                seconds_ms(lower),
                seconds_ms(upper),
                seconds_ms(estimate)
            );
            if q == 0.99 {
                handling_p99 = Some((lower, upper));
            }
        }
    }
    let decisions = runtime.block_on(decision_times(options.services))?;
    println!(
        "  the decision alone (decode, plan on in-memory allocators, patch, encode; in this process, one at a time, {} reviews): p50 {}, p99 {}, max {}",
        decisions.len(),
        ms(load::percentile(&decisions, 50.0)),
        ms(load::percentile(&decisions, 99.0)),
        ms(load::percentile(&decisions, 100.0)),
    );

    let p99_ratio = ratio(load::percentile(&b, 99.0), load::percentile(&a, 99.0));
    println!();
    let verdict = if p99_ratio <= 1.25 { "met" } else { "not met" };
    match options.rate {
        None => println!(
            "goal: create p99 with the webhook <= 1.25x without: {p99_ratio:.2}x, {verdict}"
        ),
        // The goal is set for clients that send as fast as they are answered.
        Some(rate) => println!(
            "create p99 with the webhook against without, both at {rate} creates/s: {p99_ratio:.2}x (<= 1.25x: {verdict}; the goal itself is for the closed loop)"
        ),
    }
    let verdict = match handling_p99 {
        Some((_, upper)) if upper <= 1e-3 => "met".to_string(),
        Some((lower, _)) if lower >= 1e-3 => "not met".to_string(),
        Some((lower, upper)) => format!(
            "not decided by the buckets (p99 in ({}, {}])",
            seconds_ms(lower),
            seconds_ms(upper)
        ),
        None => "no data".to_string(),
    };
    println!("goal: webhook handling p99 < 1 ms: {verdict}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let text = "\
# TYPE svcplane_admission_handling_seconds histogram
svcplane_admission_handling_seconds_sum{webhook=\"mutate-services\"} 0.5
svcplane_admission_handling_seconds_count{webhook=\"mutate-services\"} 100
svcplane_admission_handling_seconds_bucket{le=\"0.001\",webhook=\"mutate-services\"} 50
svcplane_admission_handling_seconds_bucket{le=\"0.002\",webhook=\"mutate-services\"} 90
svcplane_admission_handling_seconds_bucket{le=\"+Inf\",webhook=\"mutate-services\"} 100
svcplane_admission_handling_seconds_bucket{le=\"0.001\",webhook=\"validate-endpoints\"} 7
";
        let histogram = Histogram::parse(text);
        assert_eq!(histogram.count, 100.0);
        assert_eq!(histogram.quantile(0.5), Some((0.0, 0.001, 0.001)));
        let (lower, upper, estimate) = histogram.quantile(0.7).unwrap();
        assert_eq!((lower, upper), (0.001, 0.002));
        assert!((estimate - 0.0015).abs() < 1e-12);
        assert_eq!(
            histogram.quantile(0.99),
            Some((0.002, f64::INFINITY, 0.002))
        );
        let empty = histogram.since(&histogram);
        assert_eq!(empty.quantile(0.5), None);
        assert_eq!(empty.count, 0.0);
    }

    #[test]
    fn apiserver_figures_pick_their_series() {
        let text = "\
apiserver_request_duration_seconds_sum{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 4
apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 20
apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"0.2\"} 15
apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"0.5\"} 20
apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"+Inf\"} 20
apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"All\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1
apiserver_request_duration_seconds_sum{component=\"apiserver\",dry_run=\"\",group=\"svcplane.io\",resource=\"rangeallocations\",scope=\"resource\",subresource=\"\",verb=\"PUT\",version=\"v1alpha1\"} 1
apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"svcplane.io\",resource=\"rangeallocations\",scope=\"resource\",subresource=\"\",verb=\"PUT\",version=\"v1alpha1\"} 5
etcd_request_duration_seconds_sum{group=\"\",operation=\"get\",resource=\"servicenodeportallocations\"} 0.5
etcd_request_duration_seconds_count{group=\"\",operation=\"get\",resource=\"servicenodeportallocations\"} 10
etcd_request_duration_seconds_sum{group=\"\",operation=\"update\",resource=\"servicenodeportallocations\"} 1.5
etcd_request_duration_seconds_count{group=\"\",operation=\"update\",resource=\"servicenodeportallocations\"} 10
etcd_request_duration_seconds_sum{group=\"\",operation=\"update\",resource=\"services\"} 9
";
        let figures = ApiserverFigures::parse(text);
        let pair = |h: &Histogram| (h.sum, h.count);
        assert_eq!(pair(&figures.service_posts), (4.0, 20.0));
        assert_eq!(figures.service_posts.quantile(0.99).map(|q| q.1), Some(0.5));
        assert_eq!(pair(&figures.range_writes), (1.0, 5.0));
        assert_eq!(pair(&figures.webhook_calls), (0.0, 0.0));
        assert_eq!(pair(&figures.node_port_etcd), (2.0, 20.0));
        assert_eq!(mean_of(&figures.service_posts), "mean 200.000 ms over 20");
        assert_eq!(
            p99_of(&figures.service_posts),
            "p99 in (200.000 ms, 500.000 ms]"
        );
    }
}
