//! svcplane's Endpoints and EndpointSlice controllers against kube-controller-manager's, side
//! by side on the real apiserver. Run by `hack/bench-controllers.sh` (release build).
//!
//! `bench-controllers --svcplane PATH [--sides in-tree,svcplane] [--scenarios scale-up,churn]
//! [--pods 5000] [--nodes 10] [--batch 100] [--services 500] [--pods-per-service 10]
//! [--flips-per-second 20] [--churn-seconds 60] [--load-pods 2000] [--load-nodes 20]
//! [--controller-cpu CPU] [--limit-seconds 900]` (`--help` says what each is).
//!
//! Every run (one scenario, one side) gets a fresh etcd + kube-apiserver and its controllers
//! at equal settings (batch periods 0, 5 concurrent syncs for each controller, 100 endpoints
//! per slice):
//! - `in-tree`: kube-controller-manager with only the endpoints, endpointslice and
//!   endpointslice-mirroring controllers, its client at its default 20 QPS / burst 30;
//! - `in-tree-qps1000`: the same with `--kube-api-qps=1000 --kube-api-burst=1000`, so that
//!   its client's rate limit is not what is measured;
//! - `svcplane`: the `svcplane controllers --leader-elect=false` process (no client rate
//!   limit), started once its `/readyz` says its caches synced;
//! - `svcplane-qps20`: the same with kube-controller-manager's default client rate,
//!   `--kube-api-qps=20 --kube-api-burst=30` (each controller its own).
//!
//! Before measuring, a probe Service with one ready pod must be published on each side.
//!
//! Scenarios:
//! - `scale-up`: one Service, then `--pods` pods over `--nodes` Nodes in batches of `--batch`
//!   (a batch is created, then marked ready). Times, from the first pod create: the last pod
//!   status written; the slices holding every pod, ready, exactly once; the Endpoints holding
//!   1000 ready addresses and `over-capacity: truncated`; the last Endpoints or slice write
//!   seen. Writes are counted from watch events (as the e2e suite does) until 3 s pass
//!   without one, and as write requests (POST, PUT, PATCH, DELETE of endpoints and
//!   endpointslices) in the apiserver's `apiserver_request_total`: an update that changes
//!   nothing is a request but makes no event.
//! - `churn`: `--services` Services of `--pods-per-service` ready pods each (set-up time
//!   reported), then `--flips-per-second` readiness flips of random pods (a pod whose last
//!   flip is not published yet is not picked) for `--churn-seconds`. The delay of a flip is
//!   from sending the pod status write to receiving the watch event of the slice (and of the
//!   Endpoints) that shows the pod in its new state; writes are counted from the first flip.
//! - `restart`: the churn's Services and pods, published; then the controller process is
//!   stopped (SIGTERM, and its exit awaited) and started again with the same flags, nothing
//!   having changed. Times, from the new process's start, until its `/metrics` (read every
//!   100 ms) shows every Service verified: as many slice syncs as Services, the endpoints of
//!   all of them desired (`endpoint_slice_controller_syncs`, `_endpoints_desired`, which both
//!   sides serve) and, where the process serves its work queues' metrics
//!   (kube-controller-manager: `workqueue_work_duration_seconds_count` and `workqueue_depth`
//!   of the `endpoint` and `endpoint_slice` queues), as many keys processed from each queue
//!   and both queues empty. Writes after the restart (watch events and write requests) are
//!   counted from the new start until they stop; the new process's VmHWM and CPU time are
//!   read when it has verified every Service.
//! - `load`: after clusterloader2's load test, `--load-pods` pods in Deployments of 250, 30
//!   and 5 replicas (a quarter, a quarter and half of the pods), a Service for every other
//!   Deployment of each size, on `--load-nodes` KWOK Nodes in three zones. kube-scheduler,
//!   a second kube-controller-manager with only the Deployment, ReplicaSet and garbage
//!   collector controllers, and KWOK (pods Running and Ready at once, their IPs from their
//!   Node's podCIDR) run beside the controllers measured, so the pod writes are a cluster's.
//!   Phases: create (Services, then Deployments), rolling update (a pod template
//!   annotation), scale down by half, delete (the Deployments). Each is timed from its first
//!   write until a poll (every 500 ms) sees every Deployment rolled out, its pods ready and
//!   each Service's slices and Endpoints listing exactly its ready pods; its writes, CPU
//!   time and reactions (pod status writes and pod deletes) are counted until the writes
//!   stop, each reaction also split where a watcher of the pods in the bench received the
//!   pod's change (and each Endpoints reaction counted from the later of that and the answer
//!   to the Service's previous Endpoints write), with both sides' work-queue waits and syncs
//!   from their metrics, their Endpoints and slice updates' mean time in the apiserver
//!   (audit log) beside the mean their own client timed, and the syncs' time outside the
//!   writes their client timed (what the controller's own work added to its syncs); RSS and
//!   peak RSS are the controller process's at the phase's end.
//!
//! At the end of each run: the controller process's VmRSS and VmHWM (peak) from
//! `/proc/<pid>/status` and its CPU time (user + system) from `/proc/<pid>/stat`, then the
//! final slices and Endpoints are listed and checked again. Every run prints the load
//! average before it starts.
//!
//! Reaction times are also read from kube-apiserver's audit log (`audit`): from the response
//! to a pod status write (or delete) to the apiserver receiving the controller's next write of that
//! Service's slices (or Endpoints), which leaves out both writes' own apiserver cost.
//!
//! Modules: `plane` starts a run's control plane and controllers and writes its objects;
//! `published` follows what the controllers publish through watches; `scale_up`, `churn`,
//! `restart` and `load` are the scenarios; `write_requests` reads the apiserver's write counts; `report` prints.

mod audit;
mod churn;
mod load;
mod plane;
mod published;
mod report;
mod restart;
mod scale_up;
mod write_requests;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, ValueEnum};
use e2e::bench::{check_own_cpu, init_tracing, load_average, other_cpus, pin};

/// The settings both sides run with.
const CONCURRENT_SYNCS: u16 = 5;
const MAX_ENDPOINTS_PER_SLICE: u16 = 100;
/// Requests in flight while the bench creates pods or writes their status.
const CLIENT_CONCURRENCY: usize = 20;
/// What a run waits for writes to stop: no write seen for this long.
const QUIET: Duration = Duration::from_secs(3);

/// Whose controllers a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Side {
    /// kube-controller-manager, its client at its default 20 QPS / burst 30.
    #[value(name = "in-tree")]
    InTree,
    /// kube-controller-manager with `--kube-api-qps=1000 --kube-api-burst=1000`.
    #[value(name = "in-tree-qps1000")]
    InTreeQps1000,
    /// `svcplane controllers --leader-elect=false`.
    #[value(name = "svcplane")]
    Svcplane,
    /// The same with `--kube-api-qps=20 --kube-api-burst=30`, in-tree's default rate.
    #[value(name = "svcplane-qps20")]
    SvcplaneQps20,
}

impl Side {
    /// Whether the side runs svcplane's controllers (against which the in-tree sides are
    /// compared).
    fn is_svcplane(self) -> bool {
        matches!(self, Side::Svcplane | Side::SvcplaneQps20)
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::InTree => "in-tree",
            Side::InTreeQps1000 => "in-tree-qps1000",
            Side::Svcplane => "svcplane",
            Side::SvcplaneQps20 => "svcplane-qps20",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// One Service, then `--pods` pods over `--nodes` Nodes in batches of `--batch`.
    #[value(name = "scale-up")]
    ScaleUp,
    /// `--services` Services of `--pods-per-service` ready pods, then readiness flips.
    #[value(name = "churn")]
    Churn,
    /// The churn's Services and pods, then the controller process restarted.
    #[value(name = "restart")]
    Restart,
    /// Deployments on KWOK Nodes, after clusterloader2's load test: create, roll, scale
    /// down, delete.
    #[value(name = "load")]
    Load,
}

/// svcplane's Endpoints and EndpointSlice controllers against kube-controller-manager's.
#[derive(Clone, Debug, Parser)]
#[command(name = "bench-controllers")]
struct Options {
    /// The svcplane binary (needed for the svcplane side).
    #[arg(long, value_name = "PATH")]
    svcplane: Option<PathBuf>,
    /// Sides to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "in-tree,svcplane"
    )]
    sides: Vec<Side>,
    /// Scenarios to run, each on every side.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "scale-up,churn"
    )]
    scenarios: Vec<Scenario>,
    /// scale-up: pods of the one Service.
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Nodes the pods are spread over (both scenarios).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Pods created, then marked ready, at a time (both scenarios).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// churn and restart: Services.
    #[arg(long, default_value_t = 500)]
    services: usize,
    /// churn and restart: ready pods of each Service.
    #[arg(long, default_value_t = 10)]
    pods_per_service: usize,
    /// churn: readiness flips per second.
    #[arg(long, default_value_t = 20.0)]
    flips_per_second: f64,
    /// churn: how long the flips go on.
    #[arg(long, default_value_t = 60)]
    churn_seconds: u64,
    /// `--endpoint-updates-batch-period` and `--endpointslice-updates-batch-period` of every
    /// side (kube-controller-manager's syntax): how long a pod change waits to be synced, so
    /// that a burst is written once. Write counts depend on it as much as on the controller.
    #[arg(long, default_value = "0s")]
    batch_period: String,
    /// load: pods over all Deployments (a quarter in Deployments of 250, a quarter in
    /// Deployments of 30, half in Deployments of 5).
    #[arg(long, default_value_t = 2000)]
    load_pods: usize,
    /// load: KWOK Nodes.
    #[arg(long, default_value_t = 20)]
    load_nodes: usize,
    /// Pins the controller process measured (svcplane's, or kube-controller-manager running
    /// the endpoint controllers) to this CPU, and everything else the bench starts (etcd,
    /// kube-apiserver, the load's tools, the bench itself) to the others, with `taskset`:
    /// each side's controllers as on a node of their own, their reactions not waiting for a
    /// core the apiserver holds. Unset: nothing is pinned.
    #[arg(long, value_name = "CPU")]
    controller_cpu: Option<usize>,
    /// The longest a run waits for the controllers to reach a state.
    #[arg(long, default_value_t = 900)]
    limit_seconds: u64,
}

impl Options {
    fn parse_and_check() -> Result<Self> {
        let options = Self::parse();
        anyhow::ensure!(
            options.nodes > 0
                && options.batch > 0
                && options.flips_per_second > 0.0
                && options.load_nodes > 0,
            "--nodes, --batch, --flips-per-second and --load-nodes must be positive"
        );
        anyhow::ensure!(
            options.svcplane.is_some() || !options.sides.iter().any(|side| side.is_svcplane()),
            "--svcplane PATH is needed for the svcplane side"
        );
        if let Some(cpu) = options.controller_cpu {
            check_own_cpu("--controller-cpu", cpu)?;
        }
        Ok(options)
    }

    fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.limit_seconds)
    }
}

/// Runs `scenario` on every side, one after the other, and prints its report; runs and
/// prints nothing when the scenario is not asked for.
fn each_side<'a, T, F>(
    runtime: &tokio::runtime::Runtime,
    options: &'a Options,
    scenario: Scenario,
    run: impl Fn(Side, &'a Options) -> F,
    print: fn(&Options, &[T]),
) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>> + 'a,
{
    if !options.runs(scenario) {
        return Ok(Vec::new());
    }
    // A signal ends the side's run: dropping it stops the processes it started (apiserver,
    // etcd, controllers, KWOK), which would otherwise outlive the benchmark.
    let runs = options
        .sides
        .iter()
        .map(|&side| {
            runtime.block_on(async {
                tokio::select! {
                    run = run(side, options) => run,
                    signal = stopped() => anyhow::bail!("stopped by {signal}"),
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    print(options, &runs);
    Ok(runs)
}

/// Resolves on SIGINT or SIGTERM, with its name.
async fn stopped() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

fn main() -> Result<()> {
    init_tracing("warn,kube_client::client::builder=off");
    let options = Options::parse_and_check()?;
    if let Some(cpu) = options.controller_cpu {
        // Before any thread or process starts: they inherit it.
        pin(std::process::id(), &other_cpus(cpu)?)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "settings on every side: --concurrent-endpoint-syncs={CONCURRENT_SYNCS} --concurrent-service-endpoint-syncs={CONCURRENT_SYNCS} --endpoint-updates-batch-period={period} --endpointslice-updates-batch-period={period} --max-endpoints-per-slice={MAX_ENDPOINTS_PER_SLICE}",
        period = options.batch_period
    );
    if let Some(cpu) = options.controller_cpu {
        println!(
            "the controller process pinned to CPU {cpu}; etcd, kube-apiserver, the load's tools and this bench to the others"
        );
    }
    println!(
        "each run on a fresh etcd + kube-apiserver; load: 1-minute load average when the run started; RSS, peak: VmRSS, VmHWM of the controller process at the end of the run; CPU: its user + system time over the whole run"
    );
    let started = Instant::now();
    let (o, rt) = (&options, &runtime);
    let scale_runs = each_side(
        rt,
        o,
        Scenario::ScaleUp,
        scale_up::scale_up,
        report::print_scale_up,
    )?;
    let churn_runs = each_side(rt, o, Scenario::Churn, churn::churn, report::print_churn)?;
    let restart_runs = each_side(
        rt,
        o,
        Scenario::Restart,
        restart::restart,
        report::print_restart,
    )?;
    let load_runs = each_side(rt, o, Scenario::Load, load::load, report::print_load)?;
    report::print_goals(&scale_runs, &churn_runs, &restart_runs, &load_runs);
    println!(
        "\ntotal time {}; load average at the end {}",
        report::seconds(started.elapsed()),
        load_average()
    );
    Ok(())
}
