//! svcplane's `--controllers`, each case on a control plane of its own with svcplane's
//! controllers in-process: with `*,-endpoints-controller` the EndpointSlice and mirroring
//! controllers publish while no Endpoints object is written; with only
//! `endpointslice-mirroring-controller`, user-written Endpoints are mirrored while a Service
//! with a selector gets neither slices nor Endpoints. The value goes through svcplane's own
//! flag. With `--kube-api-qps`, each controller's requests wait on a client-side rate of its
//! own. Takes libtest's arguments.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use controllers::runtime::{ControllersConfig, EnabledControllers};
use e2e::controllers::InProcessControllers;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace, wait};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use plumbing::lease::LeaderElectionConfig;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use serde_json::json;
use svcplane::cli::{Cli, Command};

const NAMESPACE: &str = "selection";
/// A Service with a selector over three ready pods.
const SELECTED: &str = "web";
/// A Service without selector, with a user-written Endpoints object.
const EXTERNAL: &str = "external";
const NODE: &str = "node-a";

fn main() -> ExitCode {
    e2e::harness::run_fault_suite(
        "controllers_selection",
        e2e::cases![
            only_the_slice_controllers,
            only_the_mirroring_controller,
            each_controller_has_a_client_rate_of_its_own
        ],
    )
}

/// What `svcplane controllers --controllers=<value>` runs.
fn enabled_by_flag(value: &str) -> Result<EnabledControllers> {
    let cli = Cli::try_parse_from(["svcplane", "controllers", &format!("--controllers={value}")])?;
    let Command::Controllers(args) = cli.command else {
        anyhow::bail!("not the controllers subcommand");
    };
    Ok(args.controllers.selection.controllers.enabled())
}

/// A control plane with a Node, the namespace, both Services, the three pods and the
/// user-written Endpoints, all there before any controller starts.
struct Setup {
    client: Client,
    _plane: ControlPlane,
}

impl Setup {
    async fn start() -> Result<Self> {
        let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
        let client = plane.client().await?;
        kubelet::ensure_node(&client, NODE, Some("zone-a"), "4").await?;
        create_namespace(&client, NAMESPACE).await?;
        let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
        for manifest in [
            json!({
                "metadata": { "name": SELECTED },
                "spec": {
                    "selector": { "app": SELECTED },
                    "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
                },
            }),
            json!({
                "metadata": { "name": EXTERNAL },
                "spec": { "ports": [{ "name": "http", "port": 80 }] },
            }),
        ] {
            services
                .create(&PostParams::default(), &serde_json::from_value(manifest)?)
                .await
                .context("creating a Service")?;
        }
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": { "name": EXTERNAL },
            "subsets": [{
                "addresses": [{ "ip": "192.0.2.10" }],
                "ports": [{ "name": "http", "port": 80 }],
            }],
        }))?;
        Api::<Endpoints>::namespaced(client.clone(), NAMESPACE)
            .create(&PostParams::default(), &endpoints)
            .await
            .context("creating the user-written Endpoints")?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        for i in 0..3 {
            let name = format!("{SELECTED}-{i}");
            let template = PodTemplate::new(&name, NODE)
                .label("app", SELECTED)
                .port("http", 8080, "TCP");
            kubelet::create_pod(&pods, &template).await?;
            let state = PodState::running(&format!("10.244.0.{}", 10 + i), true);
            kubelet::set_pod_status(&pods, &name, &state).await?;
        }
        Ok(Self {
            client,
            _plane: plane,
        })
    }

    /// The addresses in the Service's EndpointSlices, sorted.
    async fn slice_addresses(&self, service: &str) -> Result<Vec<String>> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NAMESPACE);
        let selector = format!("kubernetes.io/service-name={service}");
        let mut addresses: Vec<String> = slices
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .flat_map(|slice| slice.endpoints.unwrap_or_default())
            .flat_map(|endpoint| endpoint.addresses)
            .collect();
        addresses.sort();
        Ok(addresses)
    }

    /// Waits for the selected Service's slices (its three pods) and the mirrored slice.
    async fn slices_published(&self) -> Result<()> {
        let pods: Vec<String> = (10..13).map(|i| format!("10.244.0.{i}")).collect();
        wait::until_eq("the selected Service's slices", &pods, || {
            self.slice_addresses(SELECTED)
        })
        .await?;
        wait::until_eq(
            "the mirrored slice",
            &vec!["192.0.2.10".to_string()],
            || self.slice_addresses(EXTERNAL),
        )
        .await?;
        Ok(())
    }

    async fn endpoints_exist(&self, name: &str) -> Result<bool> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), NAMESPACE);
        Ok(api.get_opt(name).await?.is_some())
    }

    /// Runs svcplane's controllers (no leader election) with `enabled` and waits until ready.
    async fn run(&self, enabled: EnabledControllers) -> Result<Running> {
        self.run_with(ControllersConfig {
            enabled,
            ..ControllersConfig::default()
        })
        .await
    }

    /// Runs svcplane's controllers as `config` says, without leader election.
    async fn run_with(&self, config: ControllersConfig) -> Result<Running> {
        let config = ControllersConfig {
            leader_election: LeaderElectionConfig {
                enabled: false,
                ..LeaderElectionConfig::default()
            },
            ..config
        };
        let mut registry = Registry::default();
        let controllers =
            InProcessControllers::start(self.client.clone(), config, &mut registry).await?;
        Ok(Running {
            registry,
            controllers,
        })
    }
}

/// svcplane's controllers and their metrics.
struct Running {
    registry: Registry,
    controllers: InProcessControllers,
}

impl Running {
    /// The metric lines (no comments) whose name starts with `prefix`.
    fn metrics(&self, prefix: &str) -> Result<Vec<String>> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }

    async fn stop(self) -> Result<()> {
        self.controllers.stop().await
    }
}

/// `--controllers=*,-endpoints-controller` (kube-controller-manager's syntax, as on clusters
/// that retired the Endpoints API): the selected Service's slices are published and the
/// user-written Endpoints mirrored, but no Endpoints object is created for the selected
/// Service and no Endpoints write is counted.
async fn only_the_slice_controllers(_: Arc<()>) -> Result<()> {
    let enabled = enabled_by_flag("*,-endpoints-controller")?;
    anyhow::ensure!(!enabled.endpoints && enabled.endpointslice && enabled.mirroring);
    let setup = Setup::start().await?;
    let running = setup.run(enabled).await?;
    setup.slices_published().await?;
    anyhow::ensure!(
        !setup.endpoints_exist(SELECTED).await?,
        "an Endpoints object was written for {SELECTED}"
    );
    let writes = running.metrics("svcplane_controller_api_writes_total")?;
    anyhow::ensure!(
        writes
            .iter()
            .all(|line| !line.contains("kind=\"Endpoints\"")),
        "Endpoints writes counted: {writes:?}"
    );
    anyhow::ensure!(
        !running
            .metrics("endpoint_slice_controller_syncs_total")?
            .is_empty(),
        "the EndpointSlice controller's metrics are missing"
    );
    running.stop().await
}

/// `--controllers=endpointslice-mirroring-controller`: the user-written Endpoints are
/// mirrored; the selected Service, created before, gets neither slices nor an Endpoints
/// object, and only the mirroring controller's metrics are shown.
async fn only_the_mirroring_controller(_: Arc<()>) -> Result<()> {
    let enabled = enabled_by_flag("endpointslice-mirroring-controller")?;
    anyhow::ensure!(!enabled.endpoints && !enabled.endpointslice && enabled.mirroring);
    let setup = Setup::start().await?;
    let running = setup.run(enabled).await?;
    wait::until_eq(
        "the mirrored slice",
        &vec!["192.0.2.10".to_string()],
        || setup.slice_addresses(EXTERNAL),
    )
    .await?;
    let slices = setup.slice_addresses(SELECTED).await?;
    anyhow::ensure!(slices.is_empty(), "slices for {SELECTED}: {slices:?}");
    anyhow::ensure!(
        !setup.endpoints_exist(SELECTED).await?,
        "an Endpoints object was written for {SELECTED}"
    );
    anyhow::ensure!(
        running.metrics("endpoint_slice_controller_")?.is_empty(),
        "the EndpointSlice controller's metrics are shown"
    );
    let mirroring = running.metrics("endpoint_slice_mirroring_controller_changes_total")?;
    anyhow::ensure!(
        mirroring.iter().any(|line| line.contains("create")),
        "no mirrored slice create counted: {mirroring:?}"
    );
    running.stop().await
}

/// `--kube-api-qps=2 --kube-api-burst=1`: every controller still publishes, and each one's
/// requests went through a token bucket of its own (its waits are counted under its name).
async fn each_controller_has_a_client_rate_of_its_own(_: Arc<()>) -> Result<()> {
    let cli = Cli::try_parse_from([
        "svcplane",
        "controllers",
        "--kube-api-qps=2",
        "--kube-api-burst=1",
    ])?;
    let Command::Controllers(args) = cli.command else {
        anyhow::bail!("not the controllers subcommand");
    };
    let config = svcplane::run::controllers_config(&args.controllers)?;
    anyhow::ensure!(config.client_rate.is_some(), "--kube-api-qps=2 set no rate");
    let setup = Setup::start().await?;
    let running = setup.run_with(config).await?;
    setup.slices_published().await?;
    wait::until_eq("the selected Service's Endpoints", &true, || {
        setup.endpoints_exist(SELECTED)
    })
    .await?;
    let waits =
        running.metrics("svcplane_controller_client_rate_limiter_duration_seconds_count")?;
    for controller in ["endpoints", "endpointslice", "endpointslice-mirroring"] {
        let label = format!("controller=\"{controller}\"");
        anyhow::ensure!(
            waits
                .iter()
                .any(|line| line.contains(&label) && !line.ends_with(" 0")),
            "no request of the {controller} controller waited on its rate: {waits:?}"
        );
    }
    running.stop().await
}
