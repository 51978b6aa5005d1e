//! svcplane's Endpoints and EndpointSlice controllers against kube-controller-manager's, side
//! by side on the real apiserver. Run by `hack/bench-controllers.sh` (release build).
//!
//! `bench-controllers --svcplane PATH [--sides in-tree,svcplane] [--scenarios scale-up,churn]
//! [--pods 5000] [--nodes 10] [--batch 100] [--services 500] [--pods-per-service 10]
//! [--flips-per-second 20] [--churn-seconds 60] [--limit-seconds 900]`
//!
//! Every run (one scenario, one side) gets a fresh etcd + kube-apiserver and its controllers
//! at equal settings (batch periods 0, 5 concurrent syncs for each controller, 100 endpoints
//! per slice):
//! - `in-tree`: kube-controller-manager with only the endpoints, endpointslice and
//!   endpointslice-mirroring controllers, its client at its default 20 QPS / burst 30;
//! - `in-tree-qps1000`: the same with `--kube-api-qps=1000 --kube-api-burst=1000`, so that
//!   its client's rate limit is not what is measured;
//! - `svcplane`: the `svcplane controllers --leader-elect=false` process (no client rate
//!   limit), started once its `/readyz` says its caches synced.
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
//!
//! At the end of each run: the controller process's VmRSS and VmHWM (peak) from
//! `/proc/<pid>/status` and its CPU time (user + system) from `/proc/<pid>/stat`, then the
//! final slices and Endpoints are listed and checked again. Every run prints the load
//! average before it starts.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::control_plane::free_port;
use e2e::create_namespace;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::process::{Process, Resources, resources};
use e2e::svcplane::http_get;
use e2e::writes::{WriteCounter, Writes};
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::task::JoinHandle;

/// The settings both sides run with.
const CONCURRENT_SYNCS: u16 = 5;
const MAX_ENDPOINTS_PER_SLICE: u16 = 100;
const BATCH_PERIOD: &str = "0s";
/// Requests in flight while the bench creates pods or writes their status.
const CLIENT_CONCURRENCY: usize = 20;
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MIRRORING_MANAGER: &str = "endpointslicemirroring-controller.k8s.io";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// What a run waits for writes to stop: no write seen for this long.
const QUIET: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    InTree,
    InTreeQps1000,
    Svcplane,
}

impl Side {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "in-tree" => Side::InTree,
            "in-tree-qps1000" => Side::InTreeQps1000,
            "svcplane" => Side::Svcplane,
            other => anyhow::bail!("unknown side {other} (in-tree, in-tree-qps1000, svcplane)"),
        })
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::InTree => "in-tree",
            Side::InTreeQps1000 => "in-tree-qps1000",
            Side::Svcplane => "svcplane",
        })
    }
}

#[derive(Clone, Debug)]
struct Options {
    svcplane: Option<PathBuf>,
    sides: Vec<Side>,
    scale_up: bool,
    churn: bool,
    pods: usize,
    nodes: usize,
    batch: usize,
    services: usize,
    pods_per_service: usize,
    flips_per_second: f64,
    churn_seconds: u64,
    limit: Duration,
}

const USAGE: &str = "usage: bench-controllers --svcplane PATH [--sides in-tree,svcplane] \
[--scenarios scale-up,churn] [--pods N] [--nodes N] [--batch N] [--services N] \
[--pods-per-service N] [--flips-per-second R] [--churn-seconds S] [--limit-seconds S]";

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self {
            svcplane: None,
            sides: vec![Side::InTree, Side::Svcplane],
            scale_up: true,
            churn: true,
            pods: 5000,
            nodes: 10,
            batch: 100,
            services: 500,
            pods_per_service: 10,
            flips_per_second: 20.0,
            churn_seconds: 60,
            limit: Duration::from_secs(900),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
            let number = || {
                value
                    .parse::<usize>()
                    .with_context(|| format!("{flag} {value}: not a number"))
            };
            match flag.as_str() {
                "--svcplane" => options.svcplane = Some(PathBuf::from(&value)),
                "--sides" => {
                    options.sides = value.split(',').map(Side::parse).collect::<Result<_>>()?
                }
                "--scenarios" => {
                    let names: Vec<&str> = value.split(',').collect();
                    for name in &names {
                        anyhow::ensure!(
                            ["scale-up", "churn"].contains(name),
                            "unknown scenario {name}; {USAGE}"
                        );
                    }
                    options.scale_up = names.contains(&"scale-up");
                    options.churn = names.contains(&"churn");
                }
                "--pods" => options.pods = number()?,
                "--nodes" => options.nodes = number()?,
                "--batch" => options.batch = number()?,
                "--services" => options.services = number()?,
                "--pods-per-service" => options.pods_per_service = number()?,
                "--flips-per-second" => {
                    options.flips_per_second = value
                        .parse()
                        .with_context(|| format!("{flag} {value}: not a number"))?
                }
                "--churn-seconds" => options.churn_seconds = number()? as u64,
                "--limit-seconds" => options.limit = Duration::from_secs(number()? as u64),
                other => anyhow::bail!("unknown flag {other}; {USAGE}"),
            }
        }
        anyhow::ensure!(
            options.nodes > 0 && options.batch > 0 && options.flips_per_second > 0.0,
            "--nodes, --batch and --flips-per-second must be positive"
        );
        anyhow::ensure!(
            options.svcplane.is_some() || !options.sides.contains(&Side::Svcplane),
            "--svcplane PATH is needed for the svcplane side; {USAGE}"
        );
        Ok(options)
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A fresh control plane with one side's controllers running on it.
struct Run {
    side: Side,
    // Declared before `_plane`: it stops before the plane's directory (its log) goes.
    _svcplane: Option<Process>,
    pid: u32,
    client: Client,
    _plane: ControlPlane,
}

impl Run {
    async fn start(side: Side, options: &Options) -> Result<Self> {
        let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
        let client = plane.client().await?;
        let (svcplane, pid) = match side {
            Side::InTree | Side::InTreeQps1000 => {
                let mut flags = vec![
                    format!("--concurrent-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--concurrent-service-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--endpoint-updates-batch-period={BATCH_PERIOD}"),
                    format!("--endpointslice-updates-batch-period={BATCH_PERIOD}"),
                    format!("--max-endpoints-per-slice={MAX_ENDPOINTS_PER_SLICE}"),
                ];
                if side == Side::InTreeQps1000 {
                    flags.push("--kube-api-qps=1000".into());
                    flags.push("--kube-api-burst=1000".into());
                }
                plane.start_controller_manager_with(ENDPOINT_CONTROLLERS, &flags)?;
                let pid = plane
                    .controller_manager_pid()
                    .context("kube-controller-manager is not running")?;
                (None, pid)
            }
            Side::Svcplane => {
                let binary = options.svcplane.as_ref().context("--svcplane PATH")?;
                let admin_port = free_port()?;
                let args = vec![
                    "controllers".to_string(),
                    format!("--kubeconfig={}", plane.kubeconfig().display()),
                    format!("--admin-address=127.0.0.1:{admin_port}"),
                    "--leader-elect=false".to_string(),
                    format!("--concurrent-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--concurrent-service-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--endpoint-updates-batch-period={BATCH_PERIOD}"),
                    format!("--endpointslice-updates-batch-period={BATCH_PERIOD}"),
                    format!("--max-endpoints-per-slice={MAX_ENDPOINTS_PER_SLICE}"),
                    "--log=warn".to_string(),
                ];
                let mut process =
                    Process::spawn("svcplane-controllers", binary, &args, plane.dir())?;
                wait_readyz(&mut process, admin_port).await?;
                let pid = process.pid();
                (Some(process), pid)
            }
        };
        let run = Self {
            side,
            _svcplane: svcplane,
            pid,
            client,
            _plane: plane,
        };
        run.probe().await?;
        Ok(run)
    }

    /// Waits until the controllers publish a probe Service's one ready pod, so that a
    /// measurement starts with both sides up and their caches synced.
    async fn probe(&self) -> Result<()> {
        const NS: &str = "probe";
        create_namespace(&self.client, NS).await?;
        kubelet::ensure_node(&self.client, "probe-node", None, "4").await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let template = PodTemplate::new("probe", "probe-node")
            .label("app", "probe")
            .port("http", 8080, "TCP");
        kubelet::create_pod(&pods, &template).await?;
        kubelet::set_pod_status(&pods, "probe", &PodState::running("10.99.0.1", true)).await?;
        create_service(&self.client, NS, "probe", "probe").await?;
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NS);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = slices.list(&ListParams::default()).await?;
            let published = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true));
            if published {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}: the probe Service was not published within 120 s",
                self.side
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// VmRSS, VmHWM (KiB) and CPU seconds of the controller process.
    fn resources(&self) -> Result<Resources> {
        resources(self.pid)
    }
}

async fn wait_readyz(process: &mut Process, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        process.check_running()?;
        let answer = http_get(admin, "/readyz").await.unwrap_or_default();
        if answer.trim() == "ok" {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "svcplane's /readyz did not answer ok within 120 s; last answer {answer:?}; its log:\n{}",
            process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_service(client: &Client, namespace: &str, name: &str, app: &str) -> Result<()> {
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "selector": { "app": app },
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": "http" }],
        },
    }))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &service)
        .await
        .with_context(|| format!("creating Service {name}"))?;
    Ok(())
}

fn pod_ip(i: usize) -> String {
    format!(
        "10.{}.{}.{}",
        100 + i / 62_500,
        (i / 250) % 250,
        i % 250 + 1
    )
}

/// Nodes `node-0`.. in three zones.
async fn create_nodes(client: &Client, nodes: usize) -> Result<()> {
    for n in 0..nodes {
        let zone = format!("zone-{}", n % 3);
        kubelet::ensure_node(client, &format!("node-{n}"), Some(&zone), "64").await?;
    }
    Ok(())
}

/// Creates the pods (name, app label, index for the IP) in batches: each batch is created,
/// then marked ready.
async fn start_pods_in_batches(
    client: &Client,
    namespace: &str,
    pods: &[(String, String)],
    nodes: usize,
    batch: usize,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for (b, chunk) in pods.chunks(batch).enumerate() {
        let first = b * batch;
        let indexed: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, p)| (first + k, p.clone()))
            .collect();
        futures::stream::iter(indexed.clone())
            .map(|(i, (name, app))| {
                let api = api.clone();
                async move {
                    let template = PodTemplate::new(&name, &format!("node-{}", i % nodes))
                        .label("app", &app)
                        .port("http", 8080, "TCP");
                    kubelet::create_pod(&api, &template).await.map(drop)
                }
            })
            .buffer_unordered(CLIENT_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        futures::stream::iter(indexed)
            .map(|(i, (name, _))| {
                let api = api.clone();
                async move {
                    kubelet::set_pod_status(&api, &name, &PodState::running(&pod_ip(i), true))
                        .await
                        .map(drop)
                }
            })
            .buffer_unordered(CLIENT_CONCURRENCY)
            .try_collect::<()>()
            .await?;
    }
    Ok(())
}

/// The final state a scenario waits for: every pod ready in slices, and the Endpoints.
#[derive(Clone, Copy, Debug, Default)]
struct Goal {
    /// Pods, each to be in exactly one slice, ready there.
    pods: usize,
    /// Endpoints objects.
    endpoints: usize,
    /// Ready addresses over all of them (none not ready).
    endpoints_ready: usize,
    /// Endpoints objects annotated `over-capacity: truncated`.
    truncated: usize,
}

/// What the controllers published in the namespace, as seen through watches; when it first
/// reached the goal (and stayed there); and the flips waiting to show in it.
#[derive(Default)]
struct Published {
    goal: Goal,
    /// Slice name -> pod -> ready (mirrored slices left out).
    slices: HashMap<String, HashMap<String, bool>>,
    /// Pod -> (slices holding it, of which ready).
    in_slices: HashMap<String, (u32, u32)>,
    /// Pods held by some slice.
    pods_in_slices: usize,
    /// Pods held by exactly one slice, ready there.
    pods_once_ready: usize,
    /// Endpoints name -> (pod -> ready, truncated).
    endpoints: HashMap<String, (HashMap<String, bool>, bool)>,
    endpoints_ready: usize,
    endpoints_not_ready: usize,
    truncated: usize,
    /// Since when the slices, and the Endpoints, have been at the goal.
    slices_done: Option<Instant>,
    endpoints_done: Option<Instant>,
    last_write: Option<Instant>,
    /// Pod -> its flip, until the pod, the slices and the Endpoints all showed it.
    flips: HashMap<String, Flip>,
    shown: Vec<Flip>,
}

/// A readiness flip of one pod, and when the bench's watches showed it.
#[derive(Clone, Copy, Debug)]
struct Flip {
    ready: bool,
    sent: Instant,
    pod: Option<Instant>,
    slice: Option<Instant>,
    endpoints: Option<Instant>,
}

impl Flip {
    fn new(ready: bool) -> Self {
        Self {
            ready,
            sent: Instant::now(),
            pod: None,
            slice: None,
            endpoints: None,
        }
    }
}

impl Published {
    fn new(goal: Goal) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            goal,
            ..Self::default()
        }))
    }

    /// Records that a watch showed `pod` with `ready`, if that is what its flip waits for.
    fn flip_seen(
        &mut self,
        pod: &str,
        ready: bool,
        at: Instant,
        field: fn(&mut Flip) -> &mut Option<Instant>,
    ) {
        let Some(flip) = self.flips.get_mut(pod) else {
            return;
        };
        if flip.ready != ready {
            return;
        }
        field(flip).get_or_insert(at);
        if flip.pod.is_some() && flip.slice.is_some() && flip.endpoints.is_some() {
            let flip = *flip;
            self.flips.remove(pod);
            self.shown.push(flip);
        }
    }

    fn pod_seen(&mut self, pod: &Pod, deleted: bool, at: Instant) {
        if deleted {
            return;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.flip_seen(&name, ready, at, |f| &mut f.pod);
    }

    fn count_pod(&mut self, pod: &str, slices: i32, ready: i32) {
        let entry = self.in_slices.entry(pod.to_string()).or_default();
        let before = *entry;
        entry.0 = (entry.0 as i32 + slices) as u32;
        entry.1 = (entry.1 as i32 + ready) as u32;
        let after = *entry;
        if before.0 == 0 && after.0 > 0 {
            self.pods_in_slices += 1;
        }
        if before.0 > 0 && after.0 == 0 {
            self.pods_in_slices -= 1;
        }
        if before == (1, 1) {
            self.pods_once_ready -= 1;
        }
        if after == (1, 1) {
            self.pods_once_ready += 1;
        }
    }

    fn slice_seen(&mut self, slice: &EndpointSlice, deleted: bool, at: Instant) {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let labels = slice.metadata.labels.as_ref();
        if labels
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .map(String::as_str)
            == Some(MIRRORING_MANAGER)
        {
            return;
        }
        self.last_write = Some(at);
        let new: HashMap<String, bool> = if deleted {
            HashMap::new()
        } else {
            slice
                .endpoints
                .iter()
                .flatten()
                .filter_map(|e| {
                    let pod = e.target_ref.as_ref()?.name.clone()?;
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    Some((pod, ready))
                })
                .collect()
        };
        let old = self.slices.remove(&name).unwrap_or_default();
        for (pod, ready) in &old {
            self.count_pod(pod, -1, -i32::from(*ready));
        }
        for (pod, ready) in &new {
            self.count_pod(pod, 1, i32::from(*ready));
            self.flip_seen(pod, *ready, at, |f| &mut f.slice);
        }
        if !deleted {
            self.slices.insert(name, new);
        }
        let done = self.pods_once_ready == self.goal.pods && self.pods_in_slices == self.goal.pods;
        self.slices_done = if done {
            self.slices_done.or(Some(at))
        } else {
            None
        };
    }

    fn endpoints_seen(&mut self, endpoints: &Endpoints, deleted: bool, at: Instant) {
        let name = endpoints.metadata.name.clone().unwrap_or_default();
        self.last_write = Some(at);
        let truncated = endpoints
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY))
            .is_some_and(|v| v == "truncated");
        let mut new = HashMap::new();
        if !deleted {
            for subset in endpoints.subsets.iter().flatten() {
                for (addresses, ready) in [
                    (&subset.addresses, true),
                    (&subset.not_ready_addresses, false),
                ] {
                    for address in addresses.iter().flatten() {
                        if let Some(pod) = address.target_ref.as_ref().and_then(|t| t.name.clone())
                        {
                            new.insert(pod, ready);
                        }
                    }
                }
            }
        }
        if let Some((old, truncated)) = self.endpoints.remove(&name) {
            self.truncated -= usize::from(truncated);
            for ready in old.values() {
                if *ready {
                    self.endpoints_ready -= 1;
                } else {
                    self.endpoints_not_ready -= 1;
                }
            }
        }
        for (pod, ready) in &new {
            if *ready {
                self.endpoints_ready += 1;
            } else {
                self.endpoints_not_ready += 1;
            }
            self.flip_seen(pod, *ready, at, |f| &mut f.endpoints);
        }
        if !deleted {
            self.truncated += usize::from(truncated);
            self.endpoints.insert(name, (new, truncated));
        }
        let done = self.endpoints.len() == self.goal.endpoints
            && self.endpoints_ready == self.goal.endpoints_ready
            && self.endpoints_not_ready == 0
            && self.truncated == self.goal.truncated;
        self.endpoints_done = if done {
            self.endpoints_done.or(Some(at))
        } else {
            None
        };
    }

    /// What is still missing, or nothing once both the slices and the Endpoints are done.
    fn missing(&self) -> Option<String> {
        (self.slices_done.is_none() || self.endpoints_done.is_none()).then(|| {
            format!(
                "{} of {} pods once and ready in slices ({} in slices); Endpoints: {} of {} objects, {} of {} ready addresses, {} not ready, {} of {} truncated",
                self.pods_once_ready,
                self.goal.pods,
                self.pods_in_slices,
                self.endpoints.len(),
                self.goal.endpoints,
                self.endpoints_ready,
                self.goal.endpoints_ready,
                self.endpoints_not_ready,
                self.truncated,
                self.goal.truncated
            )
        })
    }
}

/// Watches the namespace's slices and Endpoints into `published`.
fn watch_published(
    client: &Client,
    namespace: &str,
    published: &Arc<Mutex<Published>>,
) -> [JoinHandle<()>; 2] {
    [
        watch::<EndpointSlice>(
            Api::namespaced(client.clone(), namespace),
            published.clone(),
            Published::slice_seen,
        ),
        watch::<Endpoints>(
            Api::namespaced(client.clone(), namespace),
            published.clone(),
            Published::endpoints_seen,
        ),
    ]
}

/// Lists then watches `api`, applying every object seen; lists again after a watch error
/// (objects deleted meanwhile are missed, which the scenarios never do).
fn watch<K>(
    api: Api<K>,
    published: Arc<Mutex<Published>>,
    apply: fn(&mut Published, &K, bool, Instant),
) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut version = String::new();
        loop {
            if version.is_empty() {
                match api.list(&ListParams::default()).await {
                    Ok(list) => {
                        let now = Instant::now();
                        let mut published = published.lock().unwrap();
                        for item in &list.items {
                            apply(&mut published, item, false, now);
                        }
                        version = list.metadata.resource_version.unwrap_or_default();
                    }
                    Err(error) => {
                        eprintln!("bench: listing {}: {error}; retrying", K::kind(&()));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let params = WatchParams::default().timeout(290);
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(error) => {
                    eprintln!("bench: watching {}: {error}; retrying", K::kind(&()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                let now = Instant::now();
                let (object, deleted) = match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(status) => {
                        eprintln!(
                            "bench: watch of {}: {status:?}; listing again",
                            K::kind(&())
                        );
                        version.clear();
                        break;
                    }
                };
                if let Some(v) = object.meta().resource_version.clone() {
                    version = v;
                }
                apply(&mut published.lock().unwrap(), &object, deleted, now);
            }
        }
    })
}

async fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> Option<String>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let Some(seen) = done() else {
            return Ok(());
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Write requests (POST, PUT, PATCH, DELETE, any answer) the apiserver counted for Endpoints
/// and EndpointSlices, from its `apiserver_request_total`.
#[derive(Debug, Clone, Copy, Default)]
struct WriteRequests {
    endpoints: u64,
    slices: u64,
}

impl WriteRequests {
    fn parse(metrics: &str) -> Self {
        let mut requests = Self::default();
        for line in metrics.lines() {
            let Some(labels) = line
                .strip_prefix("apiserver_request_total{")
                .and_then(|rest| rest.split_once('}'))
            else {
                continue;
            };
            let (labels, value) = labels;
            let has = |label: &str| labels.split(',').any(|l| l == label);
            let write = ["POST", "PUT", "PATCH", "DELETE"]
                .iter()
                .any(|verb| has(&format!("verb=\"{verb}\"")));
            let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            if write && has("dry_run=\"\"") && has("subresource=\"\"") {
                if has("resource=\"endpoints\"") && has("group=\"\"") {
                    requests.endpoints += count;
                } else if has("resource=\"endpointslices\"") {
                    requests.slices += count;
                }
            }
        }
        requests
    }

    async fn read(client: &Client) -> Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        Ok(Self::parse(&client.request_text(request).await?))
    }

    fn since(self, before: Self) -> Self {
        Self {
            endpoints: self.endpoints.saturating_sub(before.endpoints),
            slices: self.slices.saturating_sub(before.slices),
        }
    }

    fn total(self) -> u64 {
        self.endpoints + self.slices
    }
}

/// `total (Endpoints/slices)`.
fn requests(r: WriteRequests) -> String {
    format!("{} ({}/{})", r.total(), r.endpoints, r.slices)
}

fn mib(kib: u64) -> String {
    format!("{:.0}MiB", kib as f64 / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct ScaleUp {
    side: Side,
    load: String,
    pods_written: Duration,
    slices_complete: Duration,
    endpoints_complete: Duration,
    last_write: Duration,
    writes: Writes,
    requests: WriteRequests,
    slices: usize,
    correct: String,
    resources: Resources,
}

async fn scale_up(side: Side, options: &Options) -> Result<ScaleUp> {
    const NS: &str = "scale";
    let load = load_average();
    eprintln!("scale-up, {side}: starting (load average {load})");
    let run = Run::start(side, options).await?;
    let client = &run.client;
    create_namespace(client, NS).await?;
    create_nodes(client, options.nodes).await?;
    let counter = WriteCounter::start(client, NS).await?;
    let published = Published::new(Goal {
        pods: options.pods,
        endpoints: 1,
        endpoints_ready: options.pods.min(1000),
        truncated: usize::from(options.pods > 1000),
    });
    let watches = watch_published(client, NS, &published);
    let requests_before = WriteRequests::read(client).await?;
    create_service(client, NS, "big", "big").await?;
    let pods: Vec<(String, String)> = (0..options.pods)
        .map(|i| (format!("big-{i:05}"), "big".to_string()))
        .collect();

    let start = Instant::now();
    start_pods_in_batches(client, NS, &pods, options.nodes, options.batch).await?;
    let pods_written = start.elapsed();
    eprintln!(
        "scale-up, {side}: {} pods written in {}",
        options.pods,
        seconds(pods_written)
    );

    wait_for("the slices and the Endpoints", options.limit, || {
        published.lock().unwrap().missing()
    })
    .await?;
    let (slices_done, endpoints_done) = {
        let p = published.lock().unwrap();
        (p.slices_done, p.endpoints_done)
    };
    let since_start =
        |t: Option<Instant>| t.map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    let writes = counter.settled(QUIET, options.limit).await;
    let requests = WriteRequests::read(client).await?.since(requests_before);
    let last_write = published
        .lock()
        .unwrap()
        .last_write
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    let resources = run.resources()?;
    let (correct, slices) = check_final(client, NS, &pods).await?;
    for watch in watches {
        watch.abort();
    }
    Ok(ScaleUp {
        side,
        load,
        pods_written,
        slices_complete: since_start(slices_done),
        endpoints_complete: since_start(endpoints_done),
        last_write,
        writes,
        requests,
        slices,
        correct,
        resources,
    })
}

/// Lists the slices and Endpoints again and checks them against the pods (all ready, each
/// once, with its IP; slices within the maximum; Endpoints truncated to 1000 with the
/// annotation when over). Returns "yes" or what is wrong, and the number of slices.
async fn check_final(
    client: &Client,
    namespace: &str,
    pods: &[(String, String)],
) -> Result<(String, usize)> {
    let ips: HashMap<&str, String> = pods
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), pod_ip(i)))
        .collect();
    let mut problems = Vec::new();
    let slices: Vec<EndpointSlice> = Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str)
                != Some(MIRRORING_MANAGER)
        })
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for slice in &slices {
        let endpoints = slice.endpoints.as_deref().unwrap_or_default();
        if endpoints.len() > MAX_ENDPOINTS_PER_SLICE as usize {
            problems.push(format!(
                "slice {:?} holds {}",
                slice.metadata.name,
                endpoints.len()
            ));
        }
        for endpoint in endpoints {
            let pod = endpoint
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_default();
            *seen.entry(pod.clone()).or_default() += 1;
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            let ip_right = ips.get(pod.as_str()) == endpoint.addresses.first();
            if !ready || !ip_right {
                problems.push(format!(
                    "slice endpoint of {pod}: ready {ready}, IP right {ip_right}"
                ));
            }
        }
    }
    let once = seen.values().filter(|n| **n == 1).count();
    if once != pods.len() || seen.len() != pods.len() {
        problems.push(format!(
            "{} of {} pods in exactly one slice, {} pods in slices",
            once,
            pods.len(),
            seen.len()
        ));
    }
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let mut per_service: HashMap<&str, usize> = HashMap::new();
    for (_, service) in pods {
        *per_service.entry(service.as_str()).or_default() += 1;
    }
    for object in &endpoints {
        let name = object.metadata.name.clone().unwrap_or_default();
        let Some(&selected) = per_service.get(name.as_str()) else {
            continue;
        };
        let mut ready = 0;
        for subset in object.subsets.iter().flatten() {
            if subset
                .not_ready_addresses
                .as_ref()
                .is_some_and(|a| !a.is_empty())
            {
                problems.push(format!("Endpoints {name} has not-ready addresses"));
            }
            for address in subset.addresses.iter().flatten() {
                let pod = address
                    .target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_default();
                if ips.get(pod.as_str()) != Some(&address.ip) {
                    problems.push(format!("Endpoints {name}: {pod} with IP {}", address.ip));
                }
                ready += 1;
            }
        }
        let truncated = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY))
            .is_some_and(|v| v == "truncated");
        if ready != selected.min(1000) || truncated != (selected > 1000) {
            problems.push(format!(
                "Endpoints {name}: {ready} ready addresses, truncated {truncated}"
            ));
        }
    }
    if endpoints
        .iter()
        .filter(|e| per_service.contains_key(e.metadata.name.as_deref().unwrap_or("")))
        .count()
        != per_service.len()
    {
        problems.push("Endpoints missing".into());
    }
    let verdict = if problems.is_empty() {
        "yes".to_string()
    } else {
        problems.truncate(3);
        format!("NO: {}", problems.join("; "))
    };
    Ok((verdict, slices.len()))
}

struct Churn {
    side: Side,
    load: String,
    setup: Duration,
    flips: usize,
    failed_flips: usize,
    delays: Delays,
    /// Flips the pod's, the slices' and the Endpoints' watches had not shown at the end.
    unshown: (usize, usize, usize),
    writes: Writes,
    requests: WriteRequests,
    correct: String,
    resources: Resources,
}

/// Delays of the flips the watches showed in full, each sorted.
struct Delays {
    /// From sending the status write to the pod's own watch event: the apiserver's write and
    /// watch delivery, before any controller acts.
    pod: Vec<Duration>,
    /// From sending the status write to the slice's, and the Endpoints', watch event.
    slice: Vec<Duration>,
    endpoints: Vec<Duration>,
    /// From the pod's watch event to the slice's: the controller's share, with its write.
    slice_after_pod: Vec<Duration>,
}

impl Delays {
    fn of(flips: &[Flip]) -> Self {
        let sorted = |f: &dyn Fn(&Flip) -> Option<Duration>| {
            let mut v: Vec<Duration> = flips.iter().filter_map(f).collect();
            v.sort();
            v
        };
        Self {
            pod: sorted(&|f| Some(f.pod?.saturating_duration_since(f.sent))),
            slice: sorted(&|f| Some(f.slice?.saturating_duration_since(f.sent))),
            endpoints: sorted(&|f| Some(f.endpoints?.saturating_duration_since(f.sent))),
            slice_after_pod: sorted(&|f| Some(f.slice?.saturating_duration_since(f.pod?))),
        }
    }
}

/// xorshift64*: the same flips on both sides, without a dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

async fn churn(side: Side, options: &Options) -> Result<Churn> {
    const NS: &str = "churn";
    let load = load_average();
    eprintln!("churn, {side}: starting (load average {load})");
    let run = Run::start(side, options).await?;
    let client = &run.client;
    create_namespace(client, NS).await?;
    create_nodes(client, options.nodes).await?;
    let total = options.services * options.pods_per_service;
    let published = Published::new(Goal {
        pods: total,
        endpoints: options.services,
        endpoints_ready: total,
        truncated: options.services * usize::from(options.pods_per_service > 1000),
    });
    let mut watches = Vec::from(watch_published(client, NS, &published));
    watches.push(watch::<Pod>(
        Api::namespaced(client.clone(), NS),
        published.clone(),
        Published::pod_seen,
    ));
    let setup_start = Instant::now();
    for s in 0..options.services {
        let name = format!("svc-{s:03}");
        create_service(client, NS, &name, &name).await?;
    }
    let pods: Vec<(String, String)> = (0..options.services)
        .flat_map(|s| {
            (0..options.pods_per_service)
                .map(move |k| (format!("svc-{s:03}-{k}"), format!("svc-{s:03}")))
        })
        .collect();
    start_pods_in_batches(client, NS, &pods, options.nodes, options.batch).await?;
    wait_for("the set-up to be published", options.limit, || {
        published.lock().unwrap().missing()
    })
    .await?;
    let setup = {
        let p = published.lock().unwrap();
        let done = p.slices_done.max(p.endpoints_done).unwrap_or(setup_start);
        done.saturating_duration_since(setup_start)
    };
    eprintln!(
        "churn, {side}: {} Services x {} pods published in {}",
        options.services,
        options.pods_per_service,
        seconds(setup)
    );
    // Writes still trailing the set-up are not the churn's.
    let quiet = WriteCounter::start(client, NS).await?;
    quiet.settled(QUIET, options.limit).await;
    drop(quiet);

    let counter = WriteCounter::start(client, NS).await?;
    let requests_before = WriteRequests::read(client).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut ready = vec![true; total];
    let mut random = Random(0x5eed_0fc0_ffee);
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / options.flips_per_second));
    let end = Instant::now() + Duration::from_secs(options.churn_seconds);
    let mut writes = tokio::task::JoinSet::new();
    let mut flips = 0;
    while Instant::now() < end {
        every.tick().await;
        let pick = {
            let mut published = published.lock().unwrap();
            let pick = (0..100)
                .map(|_| random.below(total))
                .find(|&i| !published.flips.contains_key(&pods[i].0));
            if let Some(i) = pick {
                ready[i] = !ready[i];
                published
                    .flips
                    .insert(pods[i].0.clone(), Flip::new(ready[i]));
            }
            pick
        };
        let Some(i) = pick else { continue };
        flips += 1;
        let (api, name, state) = (
            api.clone(),
            pods[i].0.clone(),
            PodState::running(&pod_ip(i), ready[i]),
        );
        writes.spawn(async move {
            kubelet::set_pod_status(&api, &name, &state)
                .await
                .map(drop)
                .map_err(|e| (name, e))
        });
        while let Some(done) = writes.try_join_next() {
            note_failed_flip(done, &published);
        }
    }
    let mut failed_flips = 0;
    while let Some(done) = writes.join_next().await {
        failed_flips += usize::from(note_failed_flip(done, &published));
    }
    let _ = wait_for(
        "every flip to be published",
        Duration::from_secs(60),
        || {
            let p = published.lock().unwrap();
            (!p.flips.is_empty()).then(|| format!("{} flips not shown yet", p.flips.len()))
        },
    )
    .await;
    let writes_seen = counter.settled(QUIET, options.limit).await;
    let requests = WriteRequests::read(client).await?.since(requests_before);
    let resources = run.resources()?;
    // The final state: every pod as last flipped; check_final expects all ready, so flip the
    // not-ready ones back first and let that settle (uncounted).
    for (i, _) in ready.iter().enumerate().filter(|(_, r)| !**r) {
        kubelet::set_pod_status(&api, &pods[i].0, &PodState::running(&pod_ip(i), true)).await?;
    }
    wait_for("all pods ready again", options.limit, || {
        published.lock().unwrap().missing()
    })
    .await?;
    let (correct, _) = check_final(client, NS, &pods).await?;
    for watch in watches {
        watch.abort();
    }
    let p = published.lock().unwrap();
    let unshown =
        |f: fn(&Flip) -> Option<Instant>| p.flips.values().filter(|x| f(x).is_none()).count();
    let unshown = (
        unshown(|f| f.pod),
        unshown(|f| f.slice),
        unshown(|f| f.endpoints),
    );
    Ok(Churn {
        side,
        load,
        setup,
        flips,
        failed_flips,
        delays: Delays::of(&p.shown),
        unshown,
        writes: writes_seen,
        requests,
        correct,
        resources,
    })
}

/// Forgets a flip whose write failed; true if it did.
fn note_failed_flip(
    done: Result<Result<(), (String, anyhow::Error)>, tokio::task::JoinError>,
    published: &Mutex<Published>,
) -> bool {
    match done {
        Ok(Ok(())) => false,
        Ok(Err((pod, error))) => {
            eprintln!("bench: flip of {pod} failed: {error:#}");
            published.lock().unwrap().flips.remove(&pod);
            true
        }
        Err(error) => {
            eprintln!("bench: a flip task failed: {error}");
            true
        }
    }
}

fn print_scale_up(options: &Options, runs: &[ScaleUp]) {
    println!(
        "\nscale-up: 1 Service, 0 -> {} ready pods over {} Nodes, batches of {} (created, then marked ready)",
        options.pods, options.nodes, options.batch
    );
    println!(
        "times from the first pod create: all pod status written; slices hold every pod once, ready (and the lag after the last pod write); Endpoints hold {} ready addresses{}; last Endpoints/slice write seen",
        options.pods.min(1000),
        if options.pods > 1000 {
            " and over-capacity: truncated"
        } else {
            ""
        }
    );
    println!(
        "{:<16} {:>5} {:>8} {:>8} {:>7} {:>9} {:>8} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} {:>6} correct",
        "side",
        "load",
        "pods",
        "slices",
        "lag",
        "Endpoints",
        "last",
        "writes",
        "Endpoints",
        "EndpointSlices",
        "requests (E/S)",
        "slices",
        "RSS",
        "peak",
        "CPU",
    );
    for r in runs {
        println!(
            "{:<16} {:>5} {:>8} {:>8} {:>7} {:>9} {:>8} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} {:>6} {}",
            r.side.to_string(),
            r.load.split(' ').next().unwrap_or(""),
            seconds(r.pods_written),
            seconds(r.slices_complete),
            seconds(r.slices_complete.saturating_sub(r.pods_written)),
            seconds(r.endpoints_complete),
            seconds(r.last_write),
            r.writes.total(),
            r.writes.endpoints.to_string(),
            r.writes.slices.to_string(),
            requests(r.requests),
            r.slices,
            mib(r.resources.rss_kib),
            mib(r.resources.hwm_kib),
            format!("{:.1}s", r.resources.cpu_seconds),
            r.correct
        );
    }
}

fn print_churn(options: &Options, runs: &[Churn]) {
    println!(
        "\nchurn: {} Services x {} pods, then {} readiness flips/s on random pods for {} s",
        options.services, options.pods_per_service, options.flips_per_second, options.churn_seconds
    );
    println!(
        "set-up: from the first Service create until every pod is published ready; delays of a flip from sending the pod status write to the watch event that shows it: of the pod itself (no controller involved), of its slice, of its Endpoints, and from the pod's event to the slice's; unshown: flips the pod/slices/Endpoints watches had not shown 60 s after the last; writes: during the flips only"
    );
    println!(
        "{:<16} {:>5} {:>7} {:>5} {:>11} {:>20} {:>20} {:>14} {:>7} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} correct",
        "side",
        "load",
        "set-up",
        "flips",
        "pod p50/p99",
        "slices p50/p99/max",
        "Endpoints p50/p99/max",
        "pod->slice p50/p99",
        "unshown",
        "writes",
        "Endpoints",
        "EndpointSlices",
        "requests (E/S)",
        "RSS",
        "peak",
        "CPU",
    );
    let p50_p99 = |d: &[Duration]| {
        format!(
            "{}/{}",
            millis(percentile(d, 50.0)),
            millis(percentile(d, 99.0))
        )
    };
    let with_max = |d: &[Duration]| {
        format!(
            "{}/{}",
            p50_p99(d),
            millis(d.last().copied().unwrap_or_default())
        )
    };
    for r in runs {
        println!(
            "{:<16} {:>5} {:>7} {:>5} {:>11} {:>20} {:>20} {:>14} {:>7} {:>6} {:>18} {:>20} {:>15} {:>6} {:>6} {:>6} {}",
            r.side.to_string(),
            r.load.split(' ').next().unwrap_or(""),
            seconds(r.setup),
            if r.failed_flips == 0 {
                r.flips.to_string()
            } else {
                format!("{}({}!)", r.flips, r.failed_flips)
            },
            p50_p99(&r.delays.pod),
            with_max(&r.delays.slice),
            with_max(&r.delays.endpoints),
            p50_p99(&r.delays.slice_after_pod),
            format!("{}/{}/{}", r.unshown.0, r.unshown.1, r.unshown.2),
            r.writes.total(),
            r.writes.endpoints.to_string(),
            r.writes.slices.to_string(),
            requests(r.requests),
            mib(r.resources.rss_kib),
            mib(r.resources.hwm_kib),
            format!("{:.1}s", r.resources.cpu_seconds),
            r.correct
        );
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = Options::parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "settings on every side: --concurrent-endpoint-syncs={CONCURRENT_SYNCS} --concurrent-service-endpoint-syncs={CONCURRENT_SYNCS} --endpoint-updates-batch-period={BATCH_PERIOD} --endpointslice-updates-batch-period={BATCH_PERIOD} --max-endpoints-per-slice={MAX_ENDPOINTS_PER_SLICE}"
    );
    println!(
        "each run on a fresh etcd + kube-apiserver; load: 1-minute load average when the run started; RSS, peak: VmRSS, VmHWM of the controller process at the end of the run; CPU: its user + system time over the whole run"
    );
    let started = Instant::now();
    let mut scale_runs = Vec::new();
    if options.scale_up {
        for &side in &options.sides {
            scale_runs.push(runtime.block_on(scale_up(side, &options))?);
        }
        print_scale_up(&options, &scale_runs);
    }
    let mut churn_runs = Vec::new();
    if options.churn {
        for &side in &options.sides {
            churn_runs.push(runtime.block_on(churn(side, &options))?);
        }
        print_churn(&options, &churn_runs);
    }
    print_goals(&scale_runs, &churn_runs);
    println!(
        "\ntotal time {}; load average at the end {}",
        seconds(started.elapsed()),
        load_average()
    );
    Ok(())
}

/// svcplane's figures against each in-tree side's: writes no more, times and RSS at most
/// half.
fn print_goals(scale_runs: &[ScaleUp], churn_runs: &[Churn]) {
    let verdict = |ok: bool| if ok { "yes" } else { "NO" };
    let half = |ours: f64, theirs: f64| {
        format!("{:.2}x ({})", ours / theirs, verdict(ours <= theirs / 2.0))
    };
    println!(
        "\ngoals (svcplane / in-tree; writes, as watch events and as write requests, at most 1x; times and RSS at most 0.5x):"
    );
    let ours = scale_runs.iter().find(|r| r.side == Side::Svcplane);
    for theirs in scale_runs.iter().filter(|r| r.side != Side::Svcplane) {
        let Some(ours) = ours else { break };
        let after_pods = |r: &ScaleUp| {
            r.slices_complete
                .saturating_sub(r.pods_written)
                .as_secs_f64()
        };
        println!(
            "  scale-up vs {}: writes {} vs {} ({}); write requests {} vs {} ({}); slices complete {}; after the last pod write {}; Endpoints complete {}; RSS {}; peak RSS {}",
            theirs.side,
            ours.writes.total(),
            theirs.writes.total(),
            verdict(ours.writes.total() <= theirs.writes.total()),
            ours.requests.total(),
            theirs.requests.total(),
            verdict(ours.requests.total() <= theirs.requests.total()),
            half(
                ours.slices_complete.as_secs_f64(),
                theirs.slices_complete.as_secs_f64()
            ),
            half(after_pods(ours), after_pods(theirs)),
            half(
                ours.endpoints_complete.as_secs_f64(),
                theirs.endpoints_complete.as_secs_f64()
            ),
            half(
                ours.resources.rss_kib as f64,
                theirs.resources.rss_kib as f64
            ),
            half(
                ours.resources.hwm_kib as f64,
                theirs.resources.hwm_kib as f64
            ),
        );
    }
    let ours = churn_runs.iter().find(|r| r.side == Side::Svcplane);
    for theirs in churn_runs.iter().filter(|r| r.side != Side::Svcplane) {
        let Some(ours) = ours else { break };
        let p = |d: &[Duration], q: f64| percentile(d, q).as_secs_f64();
        let (o, t) = (&ours.delays, &theirs.delays);
        println!(
            "  churn vs {}: writes {} vs {} ({}); write requests {} vs {} ({}); slice delay p50 {}; p99 {}; pod->slice p50 {}; p99 {}; set-up {}; RSS {}; peak RSS {}",
            theirs.side,
            ours.writes.total(),
            theirs.writes.total(),
            verdict(ours.writes.total() <= theirs.writes.total()),
            ours.requests.total(),
            theirs.requests.total(),
            verdict(ours.requests.total() <= theirs.requests.total()),
            half(p(&o.slice, 50.0), p(&t.slice, 50.0)),
            half(p(&o.slice, 99.0), p(&t.slice, 99.0)),
            half(p(&o.slice_after_pod, 50.0), p(&t.slice_after_pod, 50.0)),
            half(p(&o.slice_after_pod, 99.0), p(&t.slice_after_pod, 99.0)),
            half(ours.setup.as_secs_f64(), theirs.setup.as_secs_f64()),
            half(
                ours.resources.rss_kib as f64,
                theirs.resources.rss_kib as f64
            ),
            half(
                ours.resources.hwm_kib as f64,
                theirs.resources.hwm_kib as f64
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requests_count_endpoint_writes_only() {
        let metrics = r#"
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="PUT",version="v1"} 52
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="PUT",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="endpoints",scope="resource",subresource="",verb="GET",version="v1"} 900
apiserver_request_total{code="201",component="apiserver",dry_run="",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="POST",version="v1"} 50
apiserver_request_total{code="200",component="apiserver",dry_run="",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="DELETE",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PUT",version="v1"} 5000
apiserver_request_total{code="201",component="apiserver",dry_run="All",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="POST",version="v1"} 7
"#;
        let before = WriteRequests::parse(metrics);
        assert_eq!((before.endpoints, before.slices), (56, 52));
        let after = WriteRequests::parse(&metrics.replace("} 52\n", "} 60\n"));
        assert_eq!(after.since(before).total(), 8);
    }
}
