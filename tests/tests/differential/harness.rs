//! Two local control planes, one with the in-tree endpoint controllers and one with svcplane's,
//! and scenarios that do the same to both and compare what the controllers published.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use controllers::runtime::{ControllersConfig, Readiness};
use controllers::well_known::SVCPLANE_MIRRORING_MANAGER;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::view::{PublishedView, ServiceSlicesView};
use e2e::writes::{WriteCounter, Writes};
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS, create_namespace, wait};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use plumbing::lease::LeaderElectionConfig;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The in-tree controllers' `managed-by` value on slices.
pub const IN_TREE_MANAGER: &str = "endpointslice-controller.k8s.io";
/// The in-tree mirroring controller's `managed-by` value. Mirrored slices (this one's or
/// svcplane's) are left out of [`Side::published`] and compared on their own by
/// [`Scenario::converge_mirrored`].
pub const MIRRORING_MANAGER: &str = "endpointslicemirroring-controller.k8s.io";
/// The most endpoints a slice may hold with the default `--max-endpoints-per-slice`.
pub const MAX_PER_SLICE: usize = 100;

/// One control plane and who maintains its Endpoints and slices.
pub struct Plane {
    pub label: &'static str,
    pub slice_manager: &'static str,
    pub client: Client,
    _plane: ControlPlane,
}

/// The two control planes, and svcplane's controllers running in-process on the second.
pub struct Planes {
    pub in_tree: Plane,
    pub svcplane: Plane,
    pub registry: Registry,
    /// svcplane's controllers' readiness.
    pub readiness: Readiness,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    controllers: Mutex<Option<JoinHandle<controllers::runtime::Result<()>>>>,
    reports: Mutex<Vec<String>>,
    svcplane_writes_seen: Mutex<u64>,
}

impl Planes {
    pub async fn start() -> Result<Self> {
        let (reference, ours) = tokio::try_join!(
            ControlPlane::start(ControlPlaneConfig::default()),
            ControlPlane::start(ControlPlaneConfig::default()),
        )?;
        reference.start_controller_manager(ENDPOINT_CONTROLLERS)?;
        let client = ours.client().await?;
        let config = ControllersConfig {
            leader_election: LeaderElectionConfig {
                identity: "differential-e2e".into(),
                ..LeaderElectionConfig::default()
            },
            ..ControllersConfig::default()
        };
        let mut registry = Registry::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let run = controllers::runtime::run(client.clone(), config, &mut registry, async {
            let _ = stopped.await;
        });
        let mut readiness = run.readiness();
        let controllers = tokio::spawn(run);
        // Scenarios start on synced caches, holding the Lease.
        let ready = tokio::time::timeout(wait::wait_limit(), readiness.ready()).await;
        anyhow::ensure!(
            matches!(ready, Ok(true)),
            "svcplane's controllers are not ready: {ready:?}"
        );
        Ok(Self {
            in_tree: Plane {
                label: "in-tree",
                slice_manager: IN_TREE_MANAGER,
                client: reference.client().await?,
                _plane: reference,
            },
            svcplane: Plane {
                label: "svcplane",
                slice_manager: controllers::well_known::SVCPLANE_SLICE_MANAGER,
                client,
                _plane: ours,
            },
            registry,
            readiness,
            stop: Mutex::new(Some(stop)),
            controllers: Mutex::new(Some(controllers)),
            reports: Mutex::new(Vec::new()),
            svcplane_writes_seen: Mutex::new(0),
        })
    }

    /// Stops svcplane's controllers and reports how they ended.
    pub async fn stop(&self) -> Result<()> {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        let controllers = self.controllers.lock().unwrap().take();
        if let Some(controllers) = controllers {
            controllers
                .await
                .context("svcplane's controllers panicked")?
                .context("svcplane's controllers failed")?;
        }
        Ok(())
    }

    /// Whether svcplane's controllers are still running (they only stop on error).
    pub fn controllers_running(&self) -> bool {
        self.controllers
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|c| !c.is_finished())
    }

    /// svcplane's own count of its writes and syncs, from its metrics.
    pub fn svcplane_metrics(&self) -> Vec<String> {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return Vec::new();
        }
        text.lines()
            .filter(|l| {
                l.starts_with("svcplane_controller_api_writes_total")
                    || l.starts_with("endpoint_slice_controller_syncs_total")
            })
            .map(str::to_string)
            .collect()
    }

    /// svcplane's writes as its metric counts them, and as the scenarios' watches saw them
    /// (less the scenarios' own writes).
    pub fn svcplane_write_totals(&self) -> (u64, u64) {
        let metric = self
            .svcplane_metrics()
            .iter()
            .filter(|l| l.starts_with("svcplane_controller_api_writes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        (metric, *self.svcplane_writes_seen.lock().unwrap())
    }

    pub fn reports(&self) -> Vec<String> {
        self.reports.lock().unwrap().clone()
    }

    /// Adds the reports of scenarios that ran on planes of their own to this run's.
    pub fn adopt_reports(&self, other: &Planes) {
        self.reports.lock().unwrap().extend(other.reports());
    }
}

/// One side of a scenario: a plane and the scenario's namespace on it.
#[derive(Clone)]
pub struct Side {
    pub label: &'static str,
    pub slice_manager: &'static str,
    pub client: Client,
    pub namespace: String,
}

impl Side {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn node(&self, name: &str, zone: Option<&str>) -> Result<()> {
        kubelet::ensure_node(&self.client, name, zone, "4").await?;
        Ok(())
    }

    /// Creates pods and writes their status, a few at a time.
    pub async fn start_pods(&self, pods: &[(PodTemplate, PodState)]) -> Result<()> {
        let api: Api<Pod> = self.api();
        futures::stream::iter(pods.to_vec())
            .map(|(template, state)| {
                let api = api.clone();
                async move {
                    kubelet::create_pod(&api, &template).await?;
                    kubelet::set_pod_status(&api, &template.name, &state).await?;
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
    }

    /// Creates a pod from a manifest (for shapes `PodTemplate` does not cover) and writes its
    /// status.
    pub async fn start_pod_manifest(&self, manifest: Value, state: &PodState) -> Result<()> {
        let pod: Pod = serde_json::from_value(manifest)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating pod {name} on {}", self.label))?;
        self.set_pod(&name, state).await
    }

    pub async fn set_pod(&self, name: &str, state: &PodState) -> Result<()> {
        kubelet::set_pod_status(&self.api(), name, state).await?;
        Ok(())
    }

    pub async fn create_service(&self, manifest: Value) -> Result<Service> {
        let service: Service = serde_json::from_value(manifest)?;
        self.api()
            .create(&PostParams::default(), &service)
            .await
            .with_context(|| format!("creating Service on {}", self.label))
    }

    pub async fn merge_patch<K>(&self, name: &str, patch: Value) -> Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("patching {name} on {}", self.label))?;
        Ok(())
    }

    /// What the pod-driven controllers published for `service` (mirrored slices left out).
    pub async fn published(&self, service: &str) -> Result<(PublishedView, Vec<EndpointSlice>)> {
        let endpoints = self.api::<Endpoints>().get_opt(service).await?;
        let (slices, _) = self.slices(service).await?;
        Ok((PublishedView::of(endpoints.as_ref(), &slices), slices))
    }

    /// The slices labelled with `service`: those of the pod-driven controllers, and how many
    /// the mirroring controller made.
    pub async fn slices(&self, service: &str) -> Result<(Vec<EndpointSlice>, usize)> {
        let selector = format!("kubernetes.io/service-name={service}");
        let all = self
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let (mirrored, slices): (Vec<_>, Vec<_>) = all.into_iter().partition(is_mirrored);
        Ok((slices, mirrored.len()))
    }

    /// The mirrored slices of `service` (the in-tree mirroring controller's or svcplane's).
    pub async fn mirrored(&self, service: &str) -> Result<(MirroredView, Vec<EndpointSlice>)> {
        let selector = format!("kubernetes.io/service-name={service}");
        let slices: Vec<EndpointSlice> = self
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(is_mirrored)
            .collect();
        Ok((MirroredView::of(&slices), slices))
    }

    /// The `managed-by` value this side's mirroring controller writes.
    fn mirroring_manager(&self) -> &'static str {
        if self.slice_manager == IN_TREE_MANAGER {
            MIRRORING_MANAGER
        } else {
            SVCPLANE_MIRRORING_MANAGER
        }
    }

    /// What is wrong with mirrored slices' metadata: another manager, a name not derived from
    /// the Endpoints', no controller reference to the Endpoints object.
    async fn mirrored_problems(&self, name: &str, slices: &[EndpointSlice]) -> Result<Vec<String>> {
        let uid = self
            .api::<Endpoints>()
            .get_opt(name)
            .await?
            .and_then(|e| e.metadata.uid);
        let mut problems = Vec::new();
        for slice in slices {
            let slice_name = slice.metadata.name.clone().unwrap_or_default();
            // The in-tree controller names mirrored slices itself; svcplane uses generateName.
            if !slice_name.starts_with(&format!("{name}-")) {
                problems.push(format!("{slice_name} is not named after {name}"));
            }
            let manager = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"));
            if manager.map(String::as_str) != Some(self.mirroring_manager()) {
                problems.push(format!("{slice_name} is managed by {manager:?}"));
            }
            let owned = slice.metadata.owner_references.iter().flatten().any(|o| {
                o.kind == "Endpoints"
                    && o.name == name
                    && Some(&o.uid) == uid.as_ref()
                    && o.controller == Some(true)
            });
            if !owned {
                problems.push(format!(
                    "{slice_name} has no controller reference to the Endpoints"
                ));
            }
        }
        Ok(problems)
    }

    /// What is wrong with the slices' metadata: too many endpoints, a missing controller
    /// reference to the Service, a name not generated from the Service's, another manager.
    async fn slice_problems(&self, service: &str, slices: &[EndpointSlice]) -> Result<Vec<String>> {
        let uid = self
            .api::<Service>()
            .get_opt(service)
            .await?
            .and_then(|s| s.metadata.uid);
        let mut problems = Vec::new();
        for slice in slices {
            let name = slice.metadata.name.clone().unwrap_or_default();
            let count = slice.endpoints.as_ref().map_or(0, Vec::len);
            if count > MAX_PER_SLICE {
                problems.push(format!("{name} holds {count} endpoints"));
            }
            if slice.metadata.generate_name.as_deref() != Some(&format!("{service}-")) {
                problems.push(format!(
                    "{name} has generateName {:?}",
                    slice.metadata.generate_name
                ));
            }
            let manager = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"));
            if manager.map(String::as_str) != Some(self.slice_manager) {
                problems.push(format!("{name} is managed by {manager:?}"));
            }
            if let Some(uid) = &uid {
                let owned = slice.metadata.owner_references.iter().flatten().any(|o| {
                    o.kind == "Service"
                        && o.name == service
                        && &o.uid == uid
                        && o.controller == Some(true)
                });
                if !owned {
                    problems.push(format!("{name} has no controller reference to the Service"));
                }
            }
        }
        Ok(problems)
    }
}

/// Whether the slice is a mirrored one, the in-tree mirroring controller's or svcplane's.
pub fn is_mirrored(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
        .is_some_and(|m| m == MIRRORING_MANAGER || m == SVCPLANE_MIRRORING_MANAGER)
}

/// One scenario: the same namespace on both planes, and write counters on each.
pub struct Scenario {
    name: &'static str,
    /// Writes the scenario itself made to Endpoints or slices on each plane (tampering).
    user_writes: Mutex<u64>,
    planes: Arc<Planes>,
    sides: [Side; 2],
    counters: [WriteCounter; 2],
}

impl Scenario {
    pub async fn start(planes: &Arc<Planes>, name: &'static str) -> Result<Self> {
        let namespace = format!("diff-{name}").replace('_', "-");
        let side = |plane: &Plane| Side {
            label: plane.label,
            slice_manager: plane.slice_manager,
            client: plane.client.clone(),
            namespace: namespace.clone(),
        };
        let sides = [side(&planes.in_tree), side(&planes.svcplane)];
        for side in &sides {
            create_namespace(&side.client, &namespace)
                .await
                .with_context(|| format!("on {}", side.label))?;
        }
        let counters = [
            WriteCounter::start(&sides[0].client, &namespace).await?,
            WriteCounter::start(&sides[1].client, &namespace).await?,
        ];
        Ok(Self {
            name,
            user_writes: Mutex::new(0),
            planes: planes.clone(),
            sides,
            counters,
        })
    }

    /// Runs a step on both planes at once.
    pub async fn each<F, Fut, T>(&self, step: F) -> Result<(T, T)>
    where
        F: Fn(Side) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let [a, b] = &self.sides;
        tokio::try_join!(step(a.clone()), step(b.clone()))
    }

    /// The in-tree side and svcplane's side.
    pub fn sides(&self) -> [Side; 2] {
        self.sides.clone()
    }

    /// Records that the scenario itself wrote `n` Endpoints or slices on each plane, so that
    /// they are not taken for the controllers' writes in the cross-check with svcplane's
    /// metrics.
    pub fn user_wrote(&self, n: u64) {
        *self.user_writes.lock().unwrap() += n;
    }

    /// Waits until both planes publish the same for `service`, and, when given, what the
    /// scenario expects; then checks the slices' metadata on both.
    pub async fn converge(&self, service: &str, expected: Option<&PublishedView>) -> Result<()> {
        self.converge_as(service, expected, false).await
    }

    /// Like [`Scenario::converge`] without expectation, for Auto topology hints: which
    /// endpoints of a zone giving some away carry another zone's hint is the in-tree
    /// controller's iteration order, so hints are compared as counts per (endpoint zone,
    /// hinted zones) instead of per endpoint.
    pub async fn converge_hints_by_zone(&self, service: &str) -> Result<()> {
        self.converge_as(service, None, true).await
    }

    async fn converge_as(
        &self,
        service: &str,
        expected: Option<&PublishedView>,
        hints_by_zone: bool,
    ) -> Result<()> {
        let what = format!("{}: {service} on both planes", self.name);
        let (planes, sides) = (self.planes.clone(), self.sides.clone());
        let (service_name, expected) = (service.to_string(), expected.cloned());
        wait::until(what, move || {
            let (planes, sides) = (planes.clone(), sides.clone());
            let (service, expected) = (service_name.clone(), expected.clone());
            async move {
                anyhow::ensure!(
                    planes.controllers_running(),
                    "svcplane's controllers stopped"
                );
                let (mut reference, _) = sides[0].published(&service).await?;
                let (mut ours, _) = sides[1].published(&service).await?;
                let mut seen = String::new();
                if hints_by_zone {
                    let (a, b) = (hints_per_zone(&mut reference), hints_per_zone(&mut ours));
                    if a != b {
                        seen += &format!("hints per zone differ: {a:?} vs {b:?}\n");
                    }
                }
                if reference != ours {
                    seen += &format!("the planes differ:\n{}", difference(&reference, &ours));
                }
                if let Some(expected) = &expected {
                    for (side, view) in [(&sides[0], &reference), (&sides[1], &ours)] {
                        if view != expected {
                            seen += &format!(
                                "{} differs from the expectation:\n{}",
                                side.label,
                                difference(expected, view)
                            );
                        }
                    }
                }
                Ok(if seen.is_empty() { Ok(()) } else { Err(seen) })
            }
        })
        .await?;

        for side in &self.sides {
            let (view, slices) = side.published(service).await?;
            anyhow::ensure!(
                view.slice_endpoints == view.distinct_slice_endpoints(),
                "{}: {} has an endpoint in two slices",
                side.label,
                service
            );
            let problems = side.slice_problems(service, &slices).await?;
            anyhow::ensure!(
                problems.is_empty(),
                "{}: slices of {service}: {}",
                side.label,
                problems.join("; ")
            );
        }
        Ok(())
    }

    /// Waits until both planes mirror the same for `name` (and, when given, what the scenario
    /// expects); then checks the mirrored slices' metadata on both.
    pub async fn converge_mirrored(
        &self,
        name: &str,
        expected: Option<&MirroredView>,
    ) -> Result<()> {
        let what = format!("{}: mirrored slices of {name} on both planes", self.name);
        let (planes, sides) = (self.planes.clone(), self.sides.clone());
        let (name_owned, expected) = (name.to_string(), expected.cloned());
        wait::until(what, move || {
            let (planes, sides) = (planes.clone(), sides.clone());
            let (name, expected) = (name_owned.clone(), expected.clone());
            async move {
                anyhow::ensure!(
                    planes.controllers_running(),
                    "svcplane's controllers stopped"
                );
                let (reference, _) = sides[0].mirrored(&name).await?;
                let (ours, _) = sides[1].mirrored(&name).await?;
                let mut seen = String::new();
                if reference != ours {
                    seen += &format!(
                        "the planes differ:\n{}",
                        mirrored_difference(&reference, &ours)
                    );
                }
                if let Some(expected) = &expected {
                    for (side, view) in [(&sides[0], &reference), (&sides[1], &ours)] {
                        if view != expected {
                            seen += &format!(
                                "{} differs from the expectation:\n{}",
                                side.label,
                                mirrored_difference(expected, view)
                            );
                        }
                    }
                }
                Ok(if seen.is_empty() { Ok(()) } else { Err(seen) })
            }
        })
        .await?;
        for side in &self.sides {
            let (_, slices) = side.mirrored(name).await?;
            let problems = side.mirrored_problems(name, &slices).await?;
            anyhow::ensure!(
                problems.is_empty(),
                "{}: mirrored slices of {name}: {}",
                side.label,
                problems.join("; ")
            );
        }
        Ok(())
    }

    /// Counts slices per plane for `service` (reported, not compared: packing may differ).
    pub async fn slice_counts(&self, service: &str) -> Result<(usize, usize)> {
        self.each(|side| {
            let service = service.to_string();
            async move { Ok(side.published(&service).await?.1.len()) }
        })
        .await
    }

    /// Waits for the writes to settle, prints them and adds them to the report.
    pub async fn finish(self, services: &[&str]) -> Result<()> {
        let quiet = Duration::from_secs(2);
        let [a, b] = &self.counters;
        let (reference, ours) = tokio::join!(
            a.settled(quiet, wait::wait_limit()),
            b.settled(quiet, wait::wait_limit())
        );
        let mut slices = String::new();
        for service in services {
            let (r, o) = self.slice_counts(service).await?;
            let _ = write!(slices, " {service}: {r}/{o} slices;");
        }
        let user_writes = *self.user_writes.lock().unwrap();
        let by_scenario = if user_writes > 0 {
            format!(" (each side includes {user_writes} by the scenario itself)")
        } else {
            String::new()
        };
        let report = format!(
            "{:<24} in-tree {:>4} writes [{}] | svcplane {:>4} writes [{}] |{slices}{by_scenario}",
            self.name,
            reference.total(),
            reference,
            ours.total(),
            ours
        );
        println!("{report}");
        self.planes.reports.lock().unwrap().push(report);
        let user_writes = *self.user_writes.lock().unwrap();
        *self.planes.svcplane_writes_seen.lock().unwrap() += ours.total() - user_writes;
        note_more_writes(self.name, &reference, &ours);
        Ok(())
    }
}

/// The mirrored slices of one Endpoints object, normalised: merged as [`ServiceSlicesView`]
/// (labels without managed-by), each slice's annotations, and how many slices and endpoints
/// there are (mirroring writes one slice per address type and port list, so the count is
/// compared too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirroredView {
    pub slices: ServiceSlicesView,
    pub annotations: BTreeSet<Vec<(String, String)>>,
    pub count: usize,
    pub slice_endpoints: usize,
}

impl MirroredView {
    pub fn of(slices: &[EndpointSlice]) -> Self {
        Self {
            slices: ServiceSlicesView::of(slices),
            annotations: slices
                .iter()
                .map(|s| {
                    s.metadata
                        .annotations
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .collect(),
            count: slices.len(),
            slice_endpoints: slices
                .iter()
                .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
                .sum(),
        }
    }
}

fn mirrored_difference(a: &MirroredView, b: &MirroredView) -> String {
    let mut out = slices_difference(&a.slices, &b.slices);
    if a.annotations != b.annotations {
        let _ = writeln!(
            out,
            "  annotations: {:?} vs {:?}",
            a.annotations, b.annotations
        );
    }
    if (a.count, a.slice_endpoints) != (b.count, b.slice_endpoints) {
        let _ = writeln!(
            out,
            "  slices/endpoints: {}/{} vs {}/{}",
            a.count, a.slice_endpoints, b.count, b.slice_endpoints
        );
    }
    out
}

/// Takes the hints out of the view's endpoints and counts them per (endpoint zone, hints).
fn hints_per_zone(view: &mut PublishedView) -> BTreeMap<(Option<String>, Vec<String>), usize> {
    let mut counts = BTreeMap::new();
    for endpoints in view.slices.groups.values_mut() {
        *endpoints = std::mem::take(endpoints)
            .into_iter()
            .map(|mut e| {
                *counts
                    .entry((e.zone.clone(), std::mem::take(&mut e.hints)))
                    .or_default() += 1;
                e
            })
            .collect();
    }
    counts
}

fn note_more_writes(name: &str, reference: &Writes, ours: &Writes) {
    if ours.total() > reference.total() {
        println!(
            "  note: {name}: svcplane made {} more writes than in-tree",
            ours.total() - reference.total()
        );
    }
}

fn list_difference<T: Ord + std::fmt::Debug>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> String {
    let mut out = String::new();
    for item in a.difference(b).take(5) {
        let _ = writeln!(out, "    - {item:?}");
    }
    for item in b.difference(a).take(5) {
        let _ = writeln!(out, "    + {item:?}");
    }
    out
}

fn slices_difference(a: &ServiceSlicesView, b: &ServiceSlicesView) -> String {
    let mut out = String::new();
    let keys: BTreeSet<_> = a.groups.keys().chain(b.groups.keys()).collect();
    let empty = BTreeSet::new();
    for key in keys {
        let (x, y) = (
            a.groups.get(key).unwrap_or(&empty),
            b.groups.get(key).unwrap_or(&empty),
        );
        if x != y {
            let _ = write!(
                out,
                "  slices {key:?}: {} vs {} endpoints\n{}",
                x.len(),
                y.len(),
                list_difference(x, y)
            );
        }
    }
    if a.labels != b.labels {
        let _ = writeln!(out, "  slice labels: {:?} vs {:?}", a.labels, b.labels);
    }
    out
}

/// A short description of how two views differ (`-` only in the first, `+` only in the
/// second).
pub fn difference(a: &PublishedView, b: &PublishedView) -> String {
    let mut out = String::new();
    match (&a.endpoints, &b.endpoints) {
        (Some(x), Some(y)) if x != y => {
            let _ = write!(
                out,
                "  Endpoints subsets:\n{}",
                list_difference(&x.subsets, &y.subsets)
            );
            if x.labels != y.labels {
                let _ = writeln!(out, "  Endpoints labels: {:?} vs {:?}", x.labels, y.labels);
            }
        }
        (x, y) if x.is_some() != y.is_some() => {
            let _ = writeln!(
                out,
                "  Endpoints: {} vs {}",
                if x.is_some() { "present" } else { "absent" },
                if y.is_some() { "present" } else { "absent" }
            );
        }
        _ => {}
    }
    if a.over_capacity != b.over_capacity {
        let _ = writeln!(
            out,
            "  over-capacity: {:?} vs {:?}",
            a.over_capacity, b.over_capacity
        );
    }
    out += &slices_difference(&a.slices, &b.slices);
    if a.slice_endpoints != b.slice_endpoints {
        let _ = writeln!(
            out,
            "  endpoints over all slices: {} vs {}",
            a.slice_endpoints, b.slice_endpoints
        );
    }
    out
}
