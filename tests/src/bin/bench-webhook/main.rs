//! What svcplane's admission webhook costs a Service create: the same burst of creates
//! against a fresh local control plane without the webhook, then against another with it,
//! side by side. Run by `hack/bench-webhook.sh` (release build).
//!
//! `bench-webhook --svcplane PATH [--services N] [--clients C] [--warmup W] [--rounds R]
//! [--node-port-every K] [--rate CREATES_PER_SECOND]` (defaults 5000, 50, 200, 3, 5, 0;
//! `--help` says what each is).
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
//!
//! Modules: `run` is one run on its fresh control plane; `histogram` reads the webhook's and
//! the apiserver's histograms; `decision` times the decision alone; `report` prints.

mod decision;
mod histogram;
mod report;
mod run;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use clap::Parser;
use e2e::bench::init_tracing;
use e2e::load;
use k8s_openapi::api::core::v1::Service;

use crate::report::{every, ms, ratio, sorted_latencies};

/// What svcplane's admission webhook costs a Service create.
#[derive(Debug, Parser)]
#[command(name = "bench-webhook")]
struct Options {
    /// The svcplane binary, run as `svcplane webhook`.
    #[arg(long, value_name = "PATH")]
    svcplane: PathBuf,
    /// Creates per second, the same for both runs; 0: closed loop, each client sending its
    /// next create when its last one is answered.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Measured creates per run.
    #[arg(long, default_value_t = 5000)]
    services: usize,
    /// Concurrent clients, each with its own connections.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Unmeasured creates before each run's measured ones.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Rounds of a run without then a run with the webhook.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// One Service in this many is a NodePort; 0: none.
    #[arg(long, default_value_t = 5)]
    node_port_every: usize,
    /// Gives the webhook this CPU to itself, as a replica on a node of its own would have
    /// it: svcplane's threads are pinned to it and those of etcd, kube-apiserver and this
    /// driver to the other CPUs, in both runs (with `taskset`). Unset: nothing is pinned.
    #[arg(long, value_name = "CPU")]
    webhook_cpu: Option<usize>,
}

/// One Service in this many is a NodePort (`--node-port-every`; 0: none). Read by
/// [`shape`], which the load generator takes as a plain function.
static NODE_PORT_EVERY: AtomicUsize = AtomicUsize::new(5);

impl Options {
    fn parse_and_check() -> Result<Self> {
        let options = Self::parse();
        anyhow::ensure!(options.clients > 0, "--clients must be at least 1");
        anyhow::ensure!(options.rounds > 0, "--rounds must be at least 1");
        if let Some(cpu) = options.webhook_cpu {
            e2e::bench::check_own_cpu("--webhook-cpu", cpu)?;
        }
        NODE_PORT_EVERY.store(options.node_port_every, Ordering::Relaxed);
        Ok(options)
    }

    /// `--rate`: creates per second; `None` (`--rate 0`): closed loop.
    fn rate(&self) -> Option<f64> {
        (self.rate > 0.0).then_some(self.rate)
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

fn main() -> Result<()> {
    init_tracing("error,kube_client::client::builder=off");
    let options = Options::parse_and_check()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let node_ports = match NODE_PORT_EVERY.load(Ordering::Relaxed) {
        0 => "no NodePorts".to_string(),
        every => format!("one in {every} a NodePort"),
    };
    let pacing = match options.rate() {
        None => "each client sending its next create when the last is answered".to_string(),
        Some(rate) => format!("paced at {rate} creates/s (open loop while the clients keep up)"),
    };
    println!(
        "{} Service creates ({node_ports}) from {} concurrent clients per run, {pacing} ({} warm-up creates first, not measured); {} rounds of a run without then a run with the webhook",
        options.services, options.clients, options.warmup, options.rounds
    );
    if let Some(cpu) = options.webhook_cpu {
        println!(
            "svcplane pinned to CPU {cpu}; etcd, kube-apiserver and this driver to the others"
        );
    }

    let mut without = Vec::new();
    let mut with = Vec::new();
    println!();
    for round in 1..=options.rounds {
        eprintln!("round {round}/{}: without the webhook", options.rounds);
        let a = runtime.block_on(run::run(&options, false))?;
        eprintln!("round {round}/{}: with the webhook", options.rounds);
        let b = runtime.block_on(run::run(&options, true))?;
        let (la, lb) = (sorted_latencies([&a], every), sorted_latencies([&b], every));
        println!(
            "round {round}: without p50 {} p99 {} (from due {}) total {:.2} s (load {}) | with p50 {} p99 {} (from due {}) total {:.2} s (load {}) | p99 ratio {:.2}x",
            ms(load::percentile(&la, 50.0)),
            ms(load::percentile(&la, 99.0)),
            ms(load::percentile(&report::sorted_from_due([&a]), 99.0)),
            a.report.elapsed.as_secs_f64(),
            a.load,
            ms(load::percentile(&lb, 50.0)),
            ms(load::percentile(&lb, 99.0)),
            ms(load::percentile(&report::sorted_from_due([&b]), 99.0)),
            b.report.elapsed.as_secs_f64(),
            b.load,
            ratio(load::percentile(&lb, 99.0), load::percentile(&la, 99.0)),
        );
        without.push(a);
        with.push(b);
    }
    report::print_creates(options.rate(), &without, &with);
    report::print_apiserver(&without, &with);
    let decisions = runtime.block_on(decision::decision_times(options.services))?;
    let handling_p99 = report::print_handling(&with, &decisions);
    report::print_goals(options.rate(), &without, &with, handling_p99);
    Ok(())
}
