//! The cases: one Service over a few pods, svcplane's controllers running in-process with
//! leader election on, and the apiserver stopped under them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use controllers::runtime::{ControllersConfig, Error};
use e2e::controllers::InProcessControllers;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace, wait};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use plumbing::lease::LeaderElectionConfig;
use prometheus_client::registry::Registry;
use serde_json::json;

const NAMESPACE: &str = "faults";
const SERVICE: &str = "web";
const NODE: &str = "node-a";
const LEASE: &str = "svcplane-controllers";

/// Pod `i`'s IP.
fn ip(i: usize) -> String {
    format!("10.244.0.{}", 10 + i)
}

fn say(case: &str, line: impl std::fmt::Display) {
    eprintln!("[{case}] {line}");
}

/// What the controllers published for the Service: each slice endpoint's address and
/// readiness (duplicates kept, sorted), and the Endpoints' ready and not-ready addresses.
#[derive(Debug, PartialEq, Eq)]
struct Published {
    slice_endpoints: Vec<(String, bool)>,
    ready: Vec<String>,
    not_ready: Vec<String>,
}

impl Published {
    /// What pods `(i, ready)` should give.
    fn of_pods(pods: &[(usize, bool)]) -> Self {
        let mut slice_endpoints: Vec<_> = pods.iter().map(|&(i, ready)| (ip(i), ready)).collect();
        slice_endpoints.sort();
        let pick = |want: bool| {
            let mut ips: Vec<_> = pods
                .iter()
                .filter(|&&(_, ready)| ready == want)
                .map(|&(i, _)| ip(i))
                .collect();
            ips.sort();
            ips
        };
        Self {
            slice_endpoints,
            ready: pick(true),
            not_ready: pick(false),
        }
    }

    async fn read(client: &Client) -> Result<Self> {
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
        let selector = format!("kubernetes.io/service-name={SERVICE}");
        let mut slice_endpoints: Vec<(String, bool)> = slices
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .iter()
            .flat_map(|slice| slice.endpoints.iter().flatten())
            .flat_map(|endpoint| {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(false);
                endpoint.addresses.iter().map(move |a| (a.clone(), ready))
            })
            .collect();
        slice_endpoints.sort();
        let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        if let Some(object) = endpoints.get_opt(SERVICE).await? {
            for subset in object.subsets.iter().flatten() {
                ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
                not_ready.extend(
                    subset
                        .not_ready_addresses
                        .iter()
                        .flatten()
                        .map(|a| a.ip.clone()),
                );
            }
        }
        ready.sort();
        not_ready.sort();
        Ok(Self {
            slice_endpoints,
            ready,
            not_ready,
        })
    }
}

/// A control plane with a Node, a namespace, the Service and three ready pods.
struct Setup {
    client: Client,
    pods: Api<Pod>,
    plane: ControlPlane,
}

impl Setup {
    async fn start() -> Result<Self> {
        let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
        let client = plane.client().await?;
        kubelet::ensure_node(&client, NODE, None, "4").await?;
        create_namespace(&client, NAMESPACE).await?;
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": SERVICE },
            "spec": {
                "selector": { "app": SERVICE },
                "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
            },
        }))?;
        Api::<Service>::namespaced(client.clone(), NAMESPACE)
            .create(&PostParams::default(), &service)
            .await
            .context("creating the Service")?;
        let setup = Self {
            pods: Api::namespaced(client.clone(), NAMESPACE),
            client,
            plane,
        };
        for i in 0..3 {
            setup.add_pod(i, true).await?;
        }
        Ok(setup)
    }

    async fn add_pod(&self, i: usize, ready: bool) -> Result<()> {
        let template = PodTemplate::new(&format!("{SERVICE}-{i}"), NODE)
            .label("app", SERVICE)
            .port("http", 8080, "TCP");
        kubelet::create_pod(&self.pods, &template).await?;
        self.set_ready(i, ready).await
    }

    async fn set_ready(&self, i: usize, ready: bool) -> Result<()> {
        let state = PodState::running(&ip(i), ready);
        kubelet::set_pod_status(&self.pods, &format!("{SERVICE}-{i}"), &state).await?;
        Ok(())
    }

    async fn until_published(&self, what: &str, pods: &[(usize, bool)]) -> Result<()> {
        let expected = Published::of_pods(pods);
        wait::until_eq(what, &expected, || Published::read(&self.client)).await?;
        Ok(())
    }

    /// Stops the apiserver and starts it again after `down`; returns how long it was gone.
    async fn restart_apiserver(&self, down: Duration) -> Result<Duration> {
        let stopped = Instant::now();
        self.plane.stop_apiserver();
        tokio::time::sleep(down).await;
        self.plane.start_apiserver().await?;
        Ok(stopped.elapsed())
    }

    async fn lease(&self) -> Result<(Option<String>, Option<i32>)> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "default");
        let spec = leases.get(LEASE).await?.spec.unwrap_or_default();
        Ok((spec.holder_identity, spec.lease_transitions))
    }
}

/// Starts svcplane's controllers in-process, holding the Lease
/// `default/svcplane-controllers`, and waits until they lead on synced caches.
async fn start_controllers(
    client: &Client,
    identity: &str,
    renew_deadline: Duration,
) -> Result<InProcessControllers> {
    let config = ControllersConfig {
        leader_election: LeaderElectionConfig {
            lease_namespace: "default".into(),
            identity: identity.into(),
            lease_duration: renew_deadline + Duration::from_secs(5),
            renew_deadline,
            retry_period: Duration::from_secs(1),
            ..LeaderElectionConfig::default()
        },
        ..ControllersConfig::default()
    };
    InProcessControllers::start(client.clone(), config, &mut Registry::default()).await
}

/// The apiserver is away for less than the renew deadline: the controllers keep the Lease
/// and run on, their watches come back, and changes made after the restart (a pod turned
/// not ready, one deleted, one added) are published, once each.
pub async fn a_short_apiserver_restart_is_ridden_out(_: Arc<()>) -> Result<()> {
    const CASE: &str = "short-restart";
    let setup = Setup::start().await?;
    // A deadline well beyond the restart (kube-apiserver's start is given 120 s), so that
    // only the restart is under test, however slow the machine.
    let running = start_controllers(&setup.client, "short", Duration::from_secs(600)).await?;
    setup
        .until_published("three ready pods", &[(0, true), (1, true), (2, true)])
        .await?;
    let lease_before = setup.lease().await?;

    let gone = setup.restart_apiserver(Duration::from_secs(2)).await?;
    say(CASE, format!("apiserver away for {gone:.1?}"));
    setup.set_ready(0, false).await?;
    kubelet::force_delete_pod(&setup.pods, &format!("{SERVICE}-1")).await?;
    setup.add_pod(3, true).await?;
    setup
        .until_published(
            "the changes made after the restart",
            &[(0, false), (2, true), (3, true)],
        )
        .await?;
    say(CASE, "changes after the restart published");

    anyhow::ensure!(
        running.running(),
        "the controllers stopped across the restart: {:?}",
        running.stop().await
    );
    let lease_after = setup.lease().await?;
    anyhow::ensure!(
        lease_after == lease_before,
        "the Lease changed hands across a short restart: {lease_before:?} -> {lease_after:?}"
    );
    running.stop().await
}

/// The apiserver is away for longer than the renew deadline: the controllers stop with
/// `LeadershipLost` (so that a process exits and is restarted, and never acts beside a new
/// leader); started again, they catch up with a change made while none were running.
pub async fn a_long_outage_stops_the_leader_and_a_new_start_catches_up(_: Arc<()>) -> Result<()> {
    const CASE: &str = "long-outage";
    let setup = Setup::start().await?;
    let renew_deadline = Duration::from_secs(4);
    let running = start_controllers(&setup.client, "first", renew_deadline).await?;
    setup
        .until_published("three ready pods", &[(0, true), (1, true), (2, true)])
        .await?;

    setup.plane.stop_apiserver();
    let stopped = Instant::now();
    let ended = tokio::time::timeout(wait::wait_limit(), running.ended())
        .await
        .with_context(|| {
            format!(
                "the controllers still run {:?} after the apiserver went away (renew deadline {renew_deadline:?})",
                wait::wait_limit()
            )
        })??;
    say(
        CASE,
        format!(
            "controllers stopped {:.1?} into the outage",
            stopped.elapsed()
        ),
    );
    match ended {
        Err(Error::LeadershipLost { lease, reason }) => {
            say(CASE, format!("LeadershipLost on {lease}: {reason}"));
        }
        other => anyhow::bail!("expected LeadershipLost, the controllers ended with {other:?}"),
    }

    setup.plane.start_apiserver().await?;
    setup.set_ready(2, false).await?;
    let running = start_controllers(&setup.client, "second", renew_deadline).await?;
    setup
        .until_published(
            "the change made while no controller ran",
            &[(0, true), (1, true), (2, false)],
        )
        .await?;
    say(CASE, "a new start published the change");
    running.stop().await
}
