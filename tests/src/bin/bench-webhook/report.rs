//! What a benchmark prints: the creates' latencies, the apiserver's and the webhook's own
//! figures, CPU time, and the goals.

use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::load;

use crate::histogram::{ApiserverFigures, Histogram};
use crate::run::{CPU_OF, RunResult};
use crate::{NODE_PORT_EVERY, is_node_port};

/// The creates of both sides, pooled over the rounds: latencies, total time, failures, and
/// by kind.
pub fn print_creates(rate: Option<f64>, without: &[RunResult], with: &[RunResult]) {
    let (a, b) = (
        sorted_latencies(without, every),
        sorted_latencies(with, every),
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
    if rate.is_some() {
        let (a, b) = (sorted_from_due(without), sorted_from_due(with));
        for (label, p) in [("from due p50", 50.0), ("from due p99", 99.0)] {
            let (x, y) = (load::percentile(&a, p), load::percentile(&b, p));
            rows.push((label, ms(x), ms(y), format!("{:.2}x", ratio(y, x))));
        }
        let kept = |runs: &[RunResult]| {
            let seconds: f64 = runs
                .iter()
                .map(|run| run.report.elapsed.as_secs_f64())
                .sum();
            created(runs) as f64 / seconds
        };
        rows.push((
            "kept rate",
            format!("{:.1}/s", kept(without)),
            format!("{:.1}/s", kept(with)),
            format!("{:.2}x", kept(with) / kept(without)),
        ));
    }
    let total = |runs: &[RunResult]| -> Duration {
        runs.iter().map(|run| run.report.elapsed).sum::<Duration>() / runs.len() as u32
    };
    let (ta, tb) = (total(without), total(with));
    rows.push((
        "total time",
        format!("{:.2} s", ta.as_secs_f64()),
        format!("{:.2} s", tb.as_secs_f64()),
        format!("{:.2}x", ratio(tb, ta)),
    ));
    let failed = |runs: &[RunResult]| {
        runs.iter()
            .map(|run| run.report.error_count())
            .sum::<usize>()
    };
    rows.push((
        "failed creates",
        failed(without).to_string(),
        failed(with).to_string(),
        String::new(),
    ));
    println!();
    println!(
        "all rounds ({} and {} creates; total time: mean per run)",
        created(without),
        created(with)
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
                sorted_latencies(without, keep),
                sorted_latencies(with, keep),
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
            let (fx, fy) = (mean_in_flight(without, keep), mean_in_flight(with, keep));
            println!(
                "{:<22}{:>18.1}{:>18.1}{:>10}",
                format!("{kind} in flight"),
                fx,
                fy,
                format!("{:.2}x", fy / fx)
            );
        }
    }
    for (name, runs) in [("without", without), ("with", with)] {
        for run in runs.iter().filter(|run| run.report.error_count() > 0) {
            println!("errors {name} the webhook: {}", run.report.summary());
        }
    }
}

/// The apiserver's own figures, and the CPU time of each process.
pub fn print_apiserver(without: &[RunResult], with: &[RunResult]) {
    let apiserver = |runs: &[RunResult]| {
        runs.iter().fold(ApiserverFigures::default(), |sum, run| {
            sum.plus(&run.apiserver)
        })
    };
    let (sa, sb) = (apiserver(without), apiserver(with));
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
    for (name, figures, runs) in [("without", &sa, without), ("with", &sb, with)] {
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
        let (x, y) = (total(without), total(with));
        let per = |seconds: f64, runs: &[RunResult]| 1e3 * seconds / created(runs).max(1) as f64;
        println!(
            "  {name:<20} without {x:>6.2} s ({:.2} ms)   with {y:>6.2} s ({:.2} ms)",
            per(x, without),
            per(y, with)
        );
    }
}

/// The webhook's handling time from its histogram, and the decision alone; returns the
/// bucket holding the handling time's p99.
pub fn print_handling(with: &[RunResult], decisions: &[Duration]) -> Option<(f64, f64)> {
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
    println!(
        "  the decision alone (decode, plan on in-memory allocators, patch, encode; in this process, one at a time, {} reviews): p50 {}, p99 {}, max {}",
        decisions.len(),
        ms(load::percentile(decisions, 50.0)),
        ms(load::percentile(decisions, 99.0)),
        ms(load::percentile(decisions, 100.0)),
    );
    handling_p99
}

/// The goals: create p99 with the webhook against without, and the handling time's p99.
pub fn print_goals(
    rate: Option<f64>,
    without: &[RunResult],
    with: &[RunResult],
    handling_p99: Option<(f64, f64)>,
) {
    let (a, b) = (
        sorted_latencies(without, every),
        sorted_latencies(with, every),
    );
    let p99_ratio = ratio(load::percentile(&b, 99.0), load::percentile(&a, 99.0));
    println!();
    let verdict = if p99_ratio <= 1.25 { "met" } else { "not met" };
    match rate {
        None => println!(
            "goal: create p99 with the webhook <= 1.25x without: {p99_ratio:.2}x, {verdict}"
        ),
        // At an arrival rate, each create counts from when it was due: a side that falls
        // behind the rate shows its backlog instead of hiding it in its clients.
        Some(rate) => {
            let (a, b) = (sorted_from_due(without), sorted_from_due(with));
            let due_ratio = ratio(load::percentile(&b, 99.0), load::percentile(&a, 99.0));
            let verdict = if due_ratio <= 1.0 { "met" } else { "not met" };
            println!(
                "goal: create p99 from its due time with the webhook <= 1.0x without, both offered {rate} creates/s: {due_ratio:.2}x, {verdict} (from the time sent: {p99_ratio:.2}x)"
            );
        }
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
}

/// Measured creates over the runs.
fn created(runs: &[RunResult]) -> usize {
    runs.iter().map(|run| run.report.created).sum::<usize>()
}

/// `mean over n` of a histogram in seconds.
pub fn mean_of(histogram: &Histogram) -> String {
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
pub fn p99_of(histogram: &Histogram) -> String {
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

pub fn ms(duration: Duration) -> String {
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

/// The first tries' times from when each create was due (see
/// `BurstReport::first_try_from_due`), sorted.
pub fn sorted_from_due<'a>(runs: impl IntoIterator<Item = &'a RunResult>) -> Vec<Duration> {
    let mut times: Vec<Duration> = runs
        .into_iter()
        .flat_map(|run| run.report.first_try_from_due.iter())
        .map(|(_, time)| *time)
        .collect();
    times.sort();
    times
}

/// The same, sorted.
pub fn sorted_latencies<'a>(
    runs: impl IntoIterator<Item = &'a RunResult>,
    keep: impl Fn(usize) -> bool,
) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = latencies(runs, keep).collect();
    latencies.sort();
    latencies
}

pub fn every(_: usize) -> bool {
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

pub fn ratio(with: Duration, without: Duration) -> f64 {
    with.as_secs_f64() / without.as_secs_f64()
}
