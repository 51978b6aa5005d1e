//! The load scenario, after clusterloader2's load test: Deployments of 250, 30 and 5 pods
//! (a quarter, a quarter and half of `--load-pods`), a Service for every other Deployment of
//! each size, on `--load-nodes` KWOK Nodes in three zones. The pods are scheduled by
//! kube-scheduler, made by kube-controller-manager's Deployment and ReplicaSet controllers
//! (deleted by its garbage collector), and run by KWOK (Running and Ready at once, an IP from
//! their Node's podCIDR): the endpoint controllers see the pod writes of a real cluster's
//! components, not the bench's. Four phases, each timed until the state converged: create,
//! rolling update, scale down by half, delete.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::control_plane::client_from_kubeconfig;
use e2e::kubelet::ZONE_LABEL;
use e2e::process::{Process, Resources};
use e2e::writes::{WriteCounter, Writes};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use serde_json::json;

use crate::audit::{self, Arrivals, Reactions};
use crate::plane::{Run, create_service};
use crate::published::is_mirrored;
use crate::restart::{ClientUpdates, QueueTotals};
use crate::write_requests::WriteRequests;
use crate::{CLIENT_CONCURRENCY, Options, QUIET, Side};

const NS: &str = "load";
/// Deployment sizes and the share of the pods each size gets (1/4, 1/4, 1/2), as in
/// clusterloader2's load test.
const GROUPS: [(&str, i32, usize); 3] = [("big", 250, 4), ("medium", 30, 4), ("small", 5, 2)];
/// The label (and value) of the Nodes KWOK manages; the pods select them, so that none goes
/// to the probe's Node, whose pods nobody runs.
const KWOK_NODE: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// The workload controllers: Deployments make ReplicaSets, ReplicaSets make pods, the garbage
/// collector deletes a deleted Deployment's ReplicaSets and their pods.
const WORKLOAD_CONTROLLERS: &str =
    "deployment-controller,replicaset-controller,garbage-collector-controller";
/// How often the bench lists the objects to see whether a phase converged.
const POLL: Duration = Duration::from_millis(500);

/// One side's load run: its phases in order.
pub struct Load {
    pub side: Side,
    pub load: String,
    pub phases: Vec<Phase>,
}

/// A phase of the load run, from its first write until its state converged.
pub struct Phase {
    pub name: &'static str,
    /// From the phase's first write to the first poll that saw it converged.
    pub converged: Duration,
    /// From the phase's start until writes stopped after it converged.
    pub writes: Writes,
    pub requests: WriteRequests,
    pub reactions: Reactions,
    /// The `endpoint` and `endpoint_slice` work queues' totals over the phase, where served.
    pub queues: [Option<QueueTotals>; 2],
    /// The controller's updates as its client timed them over the phase.
    pub client_updates: Option<ClientUpdates>,
    /// All its writes (creates, updates, deletes) as its client timed them over the phase.
    pub client_writes: Option<ClientUpdates>,
    /// The controller process's RSS and peak RSS at the phase's end, and its CPU time
    /// during the phase.
    pub resources: Resources,
}

/// The processes that stand in for a cluster's workload side, stopped when dropped (drop it
/// before the run: they log into its control plane's directory).
struct Workloads {
    processes: Vec<Process>,
}

impl Workloads {
    /// kube-scheduler, kube-controller-manager with only [`WORKLOAD_CONTROLLERS`] and KWOK,
    /// from the directory of the control plane's binaries (`hack/kube-bins.sh` with
    /// `SVCPLANE_LOAD_TOOLS=1`), with the admin credentials and no client rate limit worth
    /// the name: they are not what is measured.
    fn start(run: &Run) -> Result<Self> {
        let plane = run.plane();
        let bins = plane
            .bins()
            .kube_controller_manager
            .parent()
            .context("the binaries' directory")?;
        let kubeconfig = format!("--kubeconfig={}", plane.kubeconfig().display());
        let unlimited = ["--kube-api-qps=1000", "--kube-api-burst=1000"];
        let (label, value) = KWOK_NODE;
        let starts: [(&str, &str, Vec<String>); 3] = [
            (
                "kube-scheduler",
                "kube-scheduler",
                strings(&["--leader-elect=false", "--secure-port=0"]),
            ),
            (
                "kube-controller-manager-workloads",
                "kube-controller-manager",
                strings(&[
                    &format!("--controllers={WORKLOAD_CONTROLLERS}"),
                    "--leader-elect=false",
                    "--secure-port=0",
                ]),
            ),
            (
                "kwok",
                "kwok",
                strings(&[
                    &format!("--config={}", bins.join("kwok-stages.yaml").display()),
                    "--manage-all-nodes=false",
                    &format!("--manage-nodes-with-label-selector={label}={value}"),
                ]),
            ),
        ];
        let mut processes = Vec::new();
        for (name, binary, mut args) in starts {
            let binary = bins.join(binary);
            anyhow::ensure!(
                binary.is_file(),
                "{} is missing: run SVCPLANE_LOAD_TOOLS=1 hack/kube-bins.sh",
                binary.display()
            );
            args.push(kubeconfig.clone());
            if name != "kwok" {
                args.extend(strings(&unlimited));
            }
            processes.push(Process::spawn(name, &binary, &args, plane.dir())?);
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut workloads = Self { processes };
        workloads.check_running()?;
        Ok(workloads)
    }

    /// Fails with a process's log when one has exited.
    fn check_running(&mut self) -> Result<()> {
        self.processes
            .iter_mut()
            .try_for_each(Process::check_running)
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The Deployments of `pods` pods: name -> replicas, the names `<size>-<index>`.
fn deployments(pods: usize) -> BTreeMap<String, i32> {
    let mut deployments = BTreeMap::new();
    for (size, replicas, share) in GROUPS {
        for i in 0..pods / (share * replicas as usize) {
            deployments.insert(format!("{size}-{i:04}"), replicas);
        }
    }
    deployments
}

/// Whether Deployment `name` has a Service (of the same name): every other one of each size.
fn has_service(name: &str) -> bool {
    name.split('-')
        .nth(1)
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i % 2 == 0)
}

/// The Service of a pod (`small-0004-<hash>-<id>`) or slice (`small-0004-<id>`) named
/// `name`, for the audit log's reactions: the Deployment's name, if it has a Service.
fn service_of(name: &str) -> Option<String> {
    let deployment = name.splitn(3, '-').take(2).collect::<Vec<_>>().join("-");
    has_service(&deployment).then_some(deployment)
}

pub async fn load(side: Side, options: &Options) -> Result<Load> {
    let (run, load) = Run::fresh("load", NS, side, options).await?;
    create_nodes(&run.client, options.load_nodes).await?;
    let mut workloads = Workloads::start(&run)?;
    let client = &run.client;
    let arrivals = PodArrivals::start(run.plane().kubeconfig()).await?;
    let mut desired = deployments(options.load_pods);
    eprintln!(
        "load, {side}: {} Deployments ({} pods), {} Services on {} KWOK Nodes",
        desired.len(),
        desired.values().sum::<i32>(),
        desired.keys().filter(|d| has_service(d)).count(),
        options.load_nodes
    );
    let mut phases = Vec::new();

    let create = create_all(client, &desired);
    phases.push(
        phase(
            &run,
            &mut workloads,
            &arrivals,
            "create",
            &desired,
            options,
            create,
        )
        .await?,
    );

    let roll = patch_all(client, &desired, |_| {
        json!({ "spec": { "template": { "metadata": {
            "annotations": { "svcplane.bench/rollout": "1" } } } } })
    });
    phases.push(
        phase(
            &run,
            &mut workloads,
            &arrivals,
            "rolling update",
            &desired,
            options,
            roll,
        )
        .await?,
    );

    let halved: BTreeMap<String, i32> = desired.iter().map(|(d, r)| (d.clone(), r / 2)).collect();
    let scale = patch_all(client, &halved, |r| json!({ "spec": { "replicas": r } }));
    phases.push(
        phase(
            &run,
            &mut workloads,
            &arrivals,
            "scale down",
            &halved,
            options,
            scale,
        )
        .await?,
    );
    desired = halved;

    let delete = delete_all(client, &desired);
    let none = BTreeMap::new();
    phases.push(
        phase(
            &run,
            &mut workloads,
            &arrivals,
            "delete",
            &none,
            options,
            delete,
        )
        .await?,
    );
    drop(workloads);
    Ok(Load { side, load, phases })
}

/// Runs one phase: its writes (`act`), then waits until the namespace holds `desired` (the
/// Deployments rolled out, their pods ready, each Service's slices and Endpoints listing
/// exactly its ready pods), then until the Endpoints and slice writes stop; measures the
/// controllers meanwhile.
async fn phase(
    run: &Run,
    workloads: &mut Workloads,
    arrivals: &PodArrivals,
    name: &'static str,
    desired: &BTreeMap<String, i32>,
    options: &Options,
    act: impl Future<Output = Result<()>>,
) -> Result<Phase> {
    let client = &run.client;
    let before = run.resources()?;
    let (queues_before, [updates_before, writes_before]) = queue_totals(run).await?;
    let requests_before = WriteRequests::read(client).await?;
    let counter = WriteCounter::start(client, NS).await?;
    let started = Timestamp::now();
    let start = Instant::now();
    act.await.with_context(|| format!("{name}: writing"))?;
    let deadline = start + options.limit();
    let converged = loop {
        workloads.check_running()?;
        let unconverged = unconverged(client, desired).await?;
        let Some(unconverged) = unconverged else {
            break start.elapsed();
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}, {name}: not converged within {:?}: {unconverged}",
            run.side,
            options.limit()
        );
        tokio::time::sleep(POLL).await;
    };
    let writes = counter.settled(QUIET, options.limit()).await;
    let requests = WriteRequests::read(client).await?.since(requests_before);
    let after = run.resources()?;
    let (queues_after, [updates_after, writes_after]) = queue_totals(run).await?;
    let queues = [0, 1].map(|i| Some(queues_after[i]?.since(queues_before[i]?)));
    // Before a controller's first write neither client serves the histogram's samples.
    let client_updates = updates_after.map(|a| a.since(updates_before.unwrap_or_default()));
    let client_writes = writes_after.map(|a| a.since(writes_before.unwrap_or_default()));
    let reactions = audit::reactions(
        &run.audit_log(),
        NS,
        started..Timestamp::now(),
        service_of,
        Some(&arrivals.read()),
    )?;
    eprintln!(
        "load, {}: {name} converged in {}",
        run.side,
        crate::report::seconds(converged)
    );
    Ok(Phase {
        name,
        converged,
        writes,
        requests,
        reactions,
        queues,
        client_updates,
        client_writes,
        resources: Resources {
            cpu_seconds: after.cpu_seconds - before.cpu_seconds,
            ..after
        },
    })
}

/// The `endpoint` and `endpoint_slice` work queues' totals and the client's timed updates
/// and writes the controller serves now.
async fn queue_totals(run: &Run) -> Result<([Option<QueueTotals>; 2], [Option<ClientUpdates>; 2])> {
    let metrics = run.controller_metrics().await?;
    let queues = ["endpoint", "endpoint_slice"].map(|queue| QueueTotals::parse(&metrics, queue));
    let client = [
        ClientUpdates::parse(&metrics),
        ClientUpdates::parse_writes(&metrics),
    ];
    Ok((queues, client))
}

/// A watcher of the namespace's pods (their metadata), recording when each pod event reached
/// it: where a reaction's watch delivery ends (see [`Reactions`]). It runs on a thread and
/// a runtime of its own, with its own client, so that the bench's other work (its polls
/// decode every pod, slice and Endpoints object twice a second) does not delay what it
/// records. Stopped when dropped.
struct PodArrivals {
    arrivals: Arc<Mutex<Arrivals>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodArrivals {
    /// Starts the watcher and returns once it watches.
    async fn start(kubeconfig: &Path) -> Result<Self> {
        let arrivals = Arc::new(Mutex::new(Arrivals::new()));
        let (watching, started) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("pod-arrivals".into())
            .spawn({
                let arrivals = Arc::clone(&arrivals);
                let kubeconfig = kubeconfig.to_path_buf();
                move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the pod arrivals' watch");
                    runtime.block_on(async move {
                        tokio::select! {
                            result = record(&kubeconfig, &arrivals, watching) => {
                                if let Err(e) = result {
                                    eprintln!("load: the pod arrivals' watch: {e:#}");
                                }
                            }
                            _ = stopped => {}
                        }
                    });
                }
            })?;
        let this = Self {
            arrivals,
            stop: Some(stop),
            thread: Some(thread),
        };
        tokio::time::timeout(Duration::from_secs(30), started)
            .await
            .context("the pod arrivals' watch did not start within 30 s")?
            .context("the pod arrivals' watch stopped")?;
        Ok(this)
    }

    /// What it recorded so far.
    fn read(&self) -> Arrivals {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Watches the namespace's pods, recording each event's arrival; says when it watches.
async fn record(
    kubeconfig: &Path,
    arrivals: &Mutex<Arrivals>,
    watching: tokio::sync::oneshot::Sender<()>,
) -> Result<()> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let api: Api<PartialObjectMeta<Pod>> = Api::namespaced(client, NS);
    let mut watching = Some(watching);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let at = Timestamp::now();
        let pod = match event {
            Ok(Event::Apply(pod) | Event::Delete(pod)) => pod,
            Ok(Event::InitDone) => {
                if let Some(watching) = watching.take() {
                    let _ = watching.send(());
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("load: the pod arrivals' watch: {e}");
                continue;
            }
        };
        if let Some(name) = pod.metadata.name {
            let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            arrivals.entry(name).or_default().push(at);
        }
    }
    Ok(())
}

impl Drop for PodArrivals {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// KWOK's Nodes `kwok-node-0`.. in three zones, each with its own /24 podCIDR (KWOK gives
/// its pods their IPs from it), room for the pods and no taint.
async fn create_nodes(client: &Client, nodes: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let (label, value) = KWOK_NODE;
    for n in 0..nodes {
        let name = format!("kwok-node-{n}");
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {
                    label: value,
                    ZONE_LABEL: format!("zone-{}", n % 3),
                    "kubernetes.io/hostname": name,
                },
            },
            "spec": { "podCIDR": format!("10.{}.{}.0/24", 128 + n / 256, n % 256) },
            "status": {
                "capacity": { "cpu": "64", "memory": "256Gi", "pods": "250" },
                "allocatable": { "cpu": "64", "memory": "256Gi", "pods": "250" },
            },
        }))?;
        api.create(&PostParams::default(), &node)
            .await
            .with_context(|| format!("creating Node {name}"))?;
        // The apiserver taints a new Node not-ready; the node lifecycle controller, which
        // would lift the taint once KWOK marks it Ready, does not run here.
        let untainted = json!({ "spec": { "taints": null } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&untainted))
            .await
            .with_context(|| format!("untainting Node {name}"))?;
    }
    Ok(())
}

/// Creates the Services, then the Deployments.
async fn create_all(client: &Client, desired: &BTreeMap<String, i32>) -> Result<()> {
    for name in desired.keys().filter(|d| has_service(d)) {
        create_service(client, NS, name, name).await?;
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for_each(desired, |name, replicas| {
        let api = api.clone();
        async move {
            let deployment = deployment(&name, replicas)?;
            api.create(&PostParams::default(), &deployment)
                .await
                .with_context(|| format!("creating Deployment {name}"))
                .map(drop)
        }
    })
    .await
}

/// Merge-patches every Deployment with what `patch` makes of its replicas.
async fn patch_all(
    client: &Client,
    desired: &BTreeMap<String, i32>,
    patch: impl Fn(i32) -> serde_json::Value,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for_each(desired, |name, replicas| {
        let (api, body) = (api.clone(), patch(replicas));
        async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
                .with_context(|| format!("patching Deployment {name}"))
                .map(drop)
        }
    })
    .await
}

/// Deletes every Deployment; the garbage collector deletes their ReplicaSets and pods.
async fn delete_all(client: &Client, desired: &BTreeMap<String, i32>) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for_each(desired, |name, _| {
        let (api, params) = (api.clone(), background.clone());
        async move {
            api.delete(&name, &params)
                .await
                .with_context(|| format!("deleting Deployment {name}"))
                .map(drop)
        }
    })
    .await
}

/// Runs `write` for every Deployment, [`CLIENT_CONCURRENCY`] at a time.
async fn for_each<F: Future<Output = Result<()>>>(
    desired: &BTreeMap<String, i32>,
    write: impl Fn(String, i32) -> F,
) -> Result<()> {
    futures::stream::iter(desired.iter().map(|(name, r)| write(name.clone(), *r)))
        .buffer_unordered(CLIENT_CONCURRENCY)
        .try_collect()
        .await
}

/// Deployment `name` of `replicas` pods labelled `app: <name>`, one container with the port
/// the Services target, on KWOK's Nodes, no service account token (no controller makes
/// them here).
fn deployment(name: &str, replicas: i32) -> Result<Deployment> {
    let (label, value) = KWOK_NODE;
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "automountServiceAccountToken": false,
                    "nodeSelector": { label: value },
                    "containers": [{
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                    }],
                },
            },
        },
    }))?)
}

/// What keeps the namespace from `desired`, or `None` when it holds it: every Deployment
/// rolled out (its status observed, all replicas updated and ready, no old ones), its pods
/// ready with an IP and none terminating, and each Service's slices (and Endpoints) listing
/// exactly its ready pods, each once, ready, with its IP.
async fn unconverged(client: &Client, desired: &BTreeMap<String, i32>) -> Result<Option<String>> {
    let list = ListParams::default();
    let deployments = Api::<Deployment>::namespaced(client.clone(), NS)
        .list(&list)
        .await?
        .items;
    if let Some(problem) = deployments_unconverged(&deployments, desired) {
        return Ok(Some(problem));
    }
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&list)
        .await?
        .items;
    // App -> (pod, IP) of its ready pods.
    let mut ready: HashMap<String, BTreeSet<(String, String)>> = HashMap::new();
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let ip = status.and_then(|s| s.pod_ip.clone());
        let is_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let (Some(ip), true, None) = (ip, is_ready, &pod.metadata.deletion_timestamp) else {
            return Ok(Some(format!("pod {name} not ready or terminating")));
        };
        let app = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .cloned()
            .unwrap_or_default();
        ready.entry(app).or_default().insert((name, ip));
    }
    let wanted: i32 = desired.values().sum();
    if pods.len() != wanted as usize {
        return Ok(Some(format!("{} pods, {wanted} wanted", pods.len())));
    }
    for (name, replicas) in desired {
        let have = ready.get(name).map_or(0, BTreeSet::len);
        if have != *replicas as usize {
            return Ok(Some(format!(
                "Deployment {name}: {have} of {replicas} pods"
            )));
        }
    }
    let published = published(client).await?;
    let empty = BTreeSet::new();
    let services = desired.keys().filter(|d| has_service(d));
    // A deleted Deployment's Service must list nothing.
    for service in services.chain(published.keys().filter(|s| !desired.contains_key(*s))) {
        let want = ready.get(service).unwrap_or(&empty);
        let (slices, endpoints) = published.get(service).cloned().unwrap_or_default();
        if slices != *want || endpoints != *want {
            return Ok(Some(format!(
                "Service {service}: {} ready pods, {} ready in slices, {} in Endpoints",
                want.len(),
                slices.len(),
                endpoints.len()
            )));
        }
    }
    Ok(None)
}

fn deployments_unconverged(
    deployments: &[Deployment],
    desired: &BTreeMap<String, i32>,
) -> Option<String> {
    if deployments.len() != desired.len() {
        return Some(format!(
            "{} Deployments, {} wanted",
            deployments.len(),
            desired.len()
        ));
    }
    deployments.iter().find_map(|d| {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let want = desired.get(name).copied();
        let status = d.status.clone().unwrap_or_default();
        let rolled = d.spec.replicas == want
            && status.observed_generation >= d.metadata.generation
            && [
                status.replicas,
                status.updated_replicas,
                status.ready_replicas,
            ]
            .iter()
            .all(|n| n.unwrap_or(0) == want.unwrap_or(-1));
        (!rolled).then(|| format!("Deployment {name} not rolled out"))
    })
}

/// Service -> (its slices' endpoints, its Endpoints' addresses) as (pod, IP) sets; a
/// not-ready endpoint, or one listed twice, is listed with a `!` to differ from any pod.
async fn published(
    client: &Client,
) -> Result<HashMap<String, (BTreeSet<(String, String)>, BTreeSet<(String, String)>)>> {
    let list = ListParams::default();
    let mut published: HashMap<String, (BTreeSet<_>, BTreeSet<_>)> = HashMap::new();
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), NS)
        .list(&list)
        .await?;
    for slice in slices.items.iter().filter(|s| !is_mirrored(s)) {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let set = &mut published.entry(service.clone()).or_default().0;
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            let pod = target_name(endpoint.target_ref.as_ref());
            let ip = endpoint.addresses.first().cloned().unwrap_or_default();
            let entry = (pod, ip);
            if !ready || set.contains(&entry) {
                set.insert((format!("!{}", entry.0), entry.1));
            } else {
                set.insert(entry);
            }
        }
    }
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), NS)
        .list(&list)
        .await?;
    for object in &endpoints.items {
        let service = object.metadata.name.clone().unwrap_or_default();
        let set = &mut published.entry(service).or_default().1;
        for subset in object.subsets.iter().flatten() {
            for address in subset.addresses.iter().flatten() {
                set.insert((target_name(address.target_ref.as_ref()), address.ip.clone()));
            }
            for address in subset.not_ready_addresses.iter().flatten() {
                let pod = target_name(address.target_ref.as_ref());
                set.insert((format!("!{pod}"), address.ip.clone()));
            }
        }
    }
    Ok(published)
}

fn target_name(target: Option<&k8s_openapi::api::core::v1::ObjectReference>) -> String {
    target.and_then(|t| t.name.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_in_clusterloader2s_proportions_a_service_for_every_other() {
        let d = deployments(2000);
        let count = |size: &str| d.keys().filter(|n| n.starts_with(size)).count();
        assert_eq!(
            (count("big"), count("medium"), count("small")),
            (2, 16, 200)
        );
        assert_eq!(d.values().sum::<i32>(), 500 + 480 + 1000);
        assert_eq!(d.keys().filter(|n| has_service(n)).count(), 1 + 8 + 100);
        // A pod, a slice, an Endpoints object; a Deployment without a Service.
        let small = Some("small-0004".to_string());
        assert_eq!(service_of("small-0004-6d5f7c9b8-x2x7q"), small);
        assert_eq!(service_of("small-0004-abcde"), small);
        assert_eq!(service_of("small-0004"), small);
        assert_eq!(service_of("small-0005-6d5f7c9b8-x2x7q"), None);
    }
}
