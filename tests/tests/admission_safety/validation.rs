//! Cases: endpoint validation without holes, and the apiserver's own writes.
//!
//! Each case plays a tenant of namespace `attacker` writing Endpoints or EndpointSlices that
//! point at pods of namespace `victim`, against one webhook replica registered with a local
//! control plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::harness::Case;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::svcplane::{self, WebhookReplica};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace, wait};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

pub fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![
        a_namespace_that_labels_itself_ignored_is_still_checked,
        an_ip_reused_by_another_namespace_stays_foreign_after_its_old_pod_goes,
        other_spellings_of_a_foreign_pod_ip_are_refused,
        the_apiserver_reconciles_its_own_endpoints_while_the_webhook_is_down,
        no_foreign_write_is_allowed_while_a_replica_lists_its_pods,
    ]
}

const NODE: &str = "node-1";
const ATTACKER: &str = "attacker";
const VICTIM: &str = "victim";
/// A namespace of its own, for writes that only probe what the replica knows.
const PROBE: &str = "probe";

/// A local control plane and, once started, one webhook replica registered with it.
struct Cluster {
    replica: Option<WebhookReplica>,
    client: Client,
    plane: ControlPlane,
}

impl Cluster {
    /// A control plane with the namespaces of the cases and a Ready node.
    async fn start(config: ControlPlaneConfig) -> Result<Self> {
        let plane = ControlPlane::start(config).await?;
        let client = plane.client().await?;
        svcplane::install_crd(&client).await?;
        for namespace in [ATTACKER, VICTIM, PROBE] {
            create_namespace(&client, namespace).await?;
        }
        kubelet::ensure_node(&client, NODE, None, "8").await?;
        Ok(Self {
            replica: None,
            client,
            plane,
        })
    }

    /// Registers the webhook at `config`'s address (failurePolicy Fail for endpoints).
    async fn register(&self, config: &webhook::runtime::WebhookConfig) -> Result<()> {
        let ca = std::fs::read(self.plane.dir().join("ca.crt"))?;
        svcplane::register(
            &self.client,
            &format!("https://{}", config.bind_address),
            ca,
            false,
        )
        .await
    }

    /// Starts a replica, registers it and waits until the apiserver calls it.
    async fn with_replica(mut self) -> Result<Self> {
        let config = svcplane::webhook_config(&self.plane)?;
        let replica = svcplane::start_replica(self.client.clone(), config.clone()).await?;
        self.register(&config).await?;
        svcplane::wait_until_called(&self.client, replica.admin).await?;
        self.replica = Some(replica);
        Ok(self)
    }

    /// Creates a running pod of `namespace` holding `ip`, as a kubelet would report it.
    async fn pod(&self, namespace: &str, name: &str, ip: &str) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        kubelet::create_pod(&api, &PodTemplate::new(name, NODE)).await?;
        kubelet::set_pod_status(&api, name, &PodState::running(ip, true)).await?;
        Ok(())
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        kubelet::force_delete_pod(&api, name).await
    }

    /// Waits until a write in the probe namespace pointing at `ip` is refused (`true`) or
    /// admitted (`false`): the replica's pod index has caught up with the pod events so far.
    async fn until_probe(&self, ip: &str, refused: bool) -> Result<()> {
        wait::until(
            format!(
                "a probe write to {ip} {}",
                if refused { "refused" } else { "admitted" }
            ),
            || async {
                let outcome = write_endpoints(&self.client, PROBE, "probe", ip, true).await?;
                Ok(if outcome.is_ok() != refused {
                    Ok(())
                } else {
                    Err(format!("{outcome:?}"))
                })
            },
        )
        .await
    }
}

fn endpoints(name: &str, ip: &str) -> Result<Endpoints> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name },
        "subsets": [{ "addresses": [{ "ip": ip }], "ports": [{ "name": "http", "port": 80 }] }],
    }))?)
}

fn slice(name: &str, address_type: &str, ip: &str) -> Result<EndpointSlice> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "kubernetes.io/service-name": name } },
        "addressType": address_type,
        "endpoints": [{ "addresses": [ip] }],
        "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }],
    }))?)
}

/// Creates Endpoints `name` in `namespace` pointing at `ip`: `Ok(Ok(()))` when admitted,
/// `Ok(Err(message))` when refused with an API error.
async fn write_endpoints(
    client: &Client,
    namespace: &str,
    name: &str,
    ip: &str,
    dry_run: bool,
) -> Result<Result<(), String>> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        dry_run,
        ..PostParams::default()
    };
    refused_or_admitted(api.create(&params, &endpoints(name, ip)?).await)
}

/// Waits until a dry-run write of the attacker's pointing at `ip` fails closed: the apiserver
/// calls the registered webhook, and cannot reach it.
async fn until_failing_closed(client: &Client, ip: &str) -> Result<()> {
    wait::until("endpoint writes failing closed", || async {
        let outcome = write_endpoints(client, ATTACKER, "closed", ip, true).await?;
        Ok(match outcome {
            Err(message) if message.contains("failed calling webhook") => Ok(()),
            other => Err(format!("{other:?}")),
        })
    })
    .await
}

fn refused_or_admitted<T>(result: kube::Result<T>) -> Result<Result<(), String>> {
    match result {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) => Ok(Err(format!("{} {}", status.code, status.message))),
        Err(error) => Err(error.into()),
    }
}

fn expect_refused(what: &str, outcome: Result<(), String>, because: &str) -> Result<String> {
    match outcome {
        Ok(()) => anyhow::bail!("{what} was admitted"),
        Err(message) if message.contains(because) => Ok(message),
        Err(message) => anyhow::bail!("{what} was refused, but not for {because:?}: {message}"),
    }
}

fn say(case: &str, what: impl std::fmt::Display) {
    eprintln!("[{case}] {what}");
}

const FOREIGN: &str = "belongs to a pod in namespace \"victim\"";

/// Hole 1: the `svcplane.io/webhook: ignore` label exempted any namespace that set it.
/// Only svcplane's own namespace is left out now, by its immutable name label.
pub async fn a_namespace_that_labels_itself_ignored_is_still_checked(_: Arc<()>) -> Result<()> {
    const CASE: &str = "self-labelled";
    let cluster = Cluster::start(ControlPlaneConfig::default())
        .await?
        .with_replica()
        .await?;
    cluster.pod(VICTIM, "db", "10.244.0.5").await?;
    cluster.until_probe("10.244.0.5", true).await?;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .patch(
            ATTACKER,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "svcplane.io/webhook": "ignore" } } })),
        )
        .await?;
    // The apiserver's webhook matcher reads namespaces from its informer: give it time to
    // see the label, so that a selector still on it would have let the write through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = write_endpoints(&cluster.client, ATTACKER, "steal", "10.244.0.5", false).await?;
    let message = expect_refused("Endpoints of a self-labelled namespace", outcome, FOREIGN)?;
    say(CASE, format!("refused: {message}"));
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), ATTACKER);
    let outcome = refused_or_admitted(
        slices
            .create(
                &PostParams::default(),
                &slice("steal", "IPv4", "10.244.0.5")?,
            )
            .await,
    )?;
    expect_refused(
        "an EndpointSlice of a self-labelled namespace",
        outcome,
        FOREIGN,
    )?;
    Ok(())
}

/// Hole 2: the pod index forgot an IP when its old holder was deleted, though a newer pod
/// of another namespace held it.
pub async fn an_ip_reused_by_another_namespace_stays_foreign_after_its_old_pod_goes(
    _: Arc<()>,
) -> Result<()> {
    const CASE: &str = "reused-ip";
    let cluster = Cluster::start(ControlPlaneConfig::default())
        .await?
        .with_replica()
        .await?;
    const REUSED: &str = "10.244.0.7";
    cluster.pod(ATTACKER, "old", REUSED).await?;
    cluster.pod(VICTIM, "new", REUSED).await?;
    cluster.pod(VICTIM, "marker", "10.244.0.8").await?;
    cluster.until_probe("10.244.0.8", true).await?;
    cluster.delete_pod(ATTACKER, "old").await?;
    // Events come in order: once the marker's deletion is seen, so is the old pod's.
    cluster.delete_pod(VICTIM, "marker").await?;
    cluster.until_probe("10.244.0.8", false).await?;
    for namespace in [ATTACKER, PROBE] {
        let outcome = write_endpoints(&cluster.client, namespace, "reused", REUSED, false).await?;
        let message = expect_refused(
            &format!("Endpoints of {namespace} pointing at the reused IP"),
            outcome,
            FOREIGN,
        )?;
        say(CASE, format!("{namespace}: refused: {message}"));
    }
    Ok(())
}

/// Hole 4: IPv4-mapped IPv6 and zero-padded spellings of a foreign pod's IP skipped the
/// checks. kube-apiserver 1.37 refuses both itself while `StrictIPCIDRValidation` is on (the
/// default), before any webhook sees them; with the gate off it stores them, and then
/// svcplane must read them as the address they stand for. Both are checked.
pub async fn other_spellings_of_a_foreign_pod_ip_are_refused(_: Arc<()>) -> Result<()> {
    const CASE: &str = "spellings";
    for strict in [true, false] {
        let mut config = ControlPlaneConfig::default();
        if !strict {
            config
                .extra_apiserver_args
                .push("--feature-gates=StrictIPCIDRValidation=false".to_string());
        }
        let cluster = Cluster::start(config).await?.with_replica().await?;
        cluster.pod(VICTIM, "db", "10.244.0.5").await?;
        cluster.until_probe("10.244.0.5", true).await?;
        for (i, spelling) in ["::ffff:10.244.0.5", "010.244.000.005", "::ffff:af4:5"]
            .into_iter()
            .enumerate()
        {
            let outcome =
                write_endpoints(&cluster.client, ATTACKER, &format!("s{i}"), spelling, false)
                    .await?;
            let because = match (strict, spelling) {
                (true, "010.244.000.005") => "must not have leading 0s",
                (true, _) => "must not be an IPv4-mapped IPv6 address",
                (false, _) => FOREIGN,
            };
            let message = expect_refused(
                &format!("Endpoints at {spelling} (strict validation {strict})"),
                outcome,
                because,
            )?;
            say(CASE, format!("strict={strict} {spelling}: {message}"));
        }
        let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), ATTACKER);
        let outcome = refused_or_admitted(
            slices
                .create(
                    &PostParams::default(),
                    &slice("mapped", "IPv6", "::ffff:10.244.0.5")?,
                )
                .await,
        )?;
        // IPv6 slices take canonical addresses only, whatever the gate says.
        let message = expect_refused(
            "an IPv6 EndpointSlice at a mapped address",
            outcome,
            "IPv4-mapped",
        )?;
        say(CASE, format!("strict={strict} IPv6 slice: {message}"));
    }
    Ok(())
}

/// Hole 6: with svcplane down, its fail-closed endpoint validation refused kube-apiserver's
/// own reconciliation of `default/kubernetes`. The webhook is registered and stopped here:
/// users' endpoint writes fail closed, and the apiserver still recreates its own.
pub async fn the_apiserver_reconciles_its_own_endpoints_while_the_webhook_is_down(
    _: Arc<()>,
) -> Result<()> {
    const CASE: &str = "apiserver-own";
    let cluster = Cluster::start(ControlPlaneConfig::default())
        .await?
        .with_replica()
        .await?;
    let endpoints: Api<Endpoints> = Api::namespaced(cluster.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), "default");
    wait::until(
        "default/kubernetes Endpoints written by the apiserver",
        || async {
            Ok(endpoints
                .get_opt("kubernetes")
                .await?
                .map(|_| ())
                .ok_or("none yet"))
        },
    )
    .await?;
    let Cluster {
        replica,
        client,
        plane,
        ..
    } = cluster;
    drop(replica);
    // Fail closed for users: the apiserver cannot call the stopped webhook.
    until_failing_closed(&client, "192.0.2.10").await?;
    let started = Instant::now();
    endpoints
        .delete("kubernetes", &DeleteParams::default())
        .await
        .context("deleting default/kubernetes Endpoints")?;
    slices
        .delete("kubernetes", &DeleteParams::default())
        .await
        .context("deleting default/kubernetes EndpointSlice")?;
    wait::until(
        "the apiserver recreating default/kubernetes Endpoints and EndpointSlice",
        || async {
            let endpoints = endpoints.get_opt("kubernetes").await?;
            let slice = slices.get_opt("kubernetes").await?;
            Ok(match (endpoints, slice) {
                (Some(e), Some(s)) => Ok((e, s)),
                seen => Err(format!("{seen:?}")),
            })
        },
    )
    .await?;
    say(
        CASE,
        format!(
            "recreated {:.1}s after deletion, webhook down",
            started.elapsed().as_secs_f64()
        ),
    );
    drop(plane);
    Ok(())
}

/// Hole 3: a replica answered before its pod list was complete, and let foreign pod IPs
/// through. 2,000 victim pods exist; a stream of foreign writes starts before the replica
/// and goes on until it has been ready for a few seconds: none may be admitted.
pub async fn no_foreign_write_is_allowed_while_a_replica_lists_its_pods(_: Arc<()>) -> Result<()> {
    const CASE: &str = "unsynced";
    const PODS: usize = 2000;
    const WRITERS: usize = 8;
    let cluster = Cluster::start(ControlPlaneConfig::default()).await?;
    let ip = |i: usize| format!("10.244.{}.{}", i / 250, i % 250 + 2);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), VICTIM);
    let created = futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            let ip = ip(i);
            async move {
                let name = format!("p{i}");
                kubelet::create_pod(&pods, &PodTemplate::new(&name, NODE)).await?;
                kubelet::set_pod_status(&pods, &name, &PodState::running(&ip, true)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect::<Result<Vec<_>>>()?;
    say(CASE, format!("{PODS} victim pods running"));

    let config = svcplane::webhook_config(&cluster.plane)?;
    cluster.register(&config).await?;
    // The apiserver picks the registration up from its own watch: until then writes skip the
    // webhook altogether, which is not what this case is about. Start once it calls the
    // (not yet running) webhook and fails closed.
    until_failing_closed(&cluster.client, &ip(0)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = cluster.client.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    let target = ip(n % PODS);
                    let outcome =
                        write_endpoints(&client, ATTACKER, &format!("w{n}"), &target, true).await;
                    tally.count(&target, outcome);
                    n += WRITERS;
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let replica = svcplane::start_replica(cluster.client.clone(), config).await?;
    say(
        CASE,
        format!(
            "replica ready {:.2}s after its start",
            started.elapsed().as_secs_f64()
        ),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for writer in writers {
        total.add(writer.await?);
    }
    say(CASE, format!("{total:?}"));
    drop(replica);
    anyhow::ensure!(
        total.admitted.is_empty(),
        "{} foreign writes admitted, e.g. {:?}",
        total.admitted.len(),
        &total.admitted[..total.admitted.len().min(5)]
    );
    anyhow::ensure!(
        total.refused_foreign > 0,
        "the replica never judged a write: {total:?}"
    );
    Ok(())
}

/// What the stream of foreign writes got.
#[derive(Debug, Default)]
struct Tally {
    /// The IPs of writes admitted: each one a hole.
    admitted: Vec<String>,
    /// Refused as pointing at a victim pod.
    refused_foreign: usize,
    /// Refused because the replica's pod index was not synced yet.
    refused_not_synced: usize,
    /// The apiserver could not call the replica (not serving yet): failurePolicy Fail.
    failed_closed: usize,
    /// Anything else, with an example.
    other: usize,
    other_example: Option<String>,
}

impl Tally {
    fn count(&mut self, ip: &str, outcome: Result<Result<(), String>>) {
        match outcome {
            Ok(Ok(())) => self.admitted.push(ip.to_string()),
            Ok(Err(message)) if message.contains(FOREIGN) => self.refused_foreign += 1,
            Ok(Err(message)) if message.contains("not synced yet") => self.refused_not_synced += 1,
            Ok(Err(message)) if message.contains("failed calling webhook") => {
                self.failed_closed += 1
            }
            Ok(Err(message)) => {
                self.other += 1;
                self.other_example.get_or_insert(message);
            }
            Err(error) => {
                self.other += 1;
                self.other_example.get_or_insert(error.to_string());
            }
        }
    }

    fn add(&mut self, other: Tally) {
        self.admitted.extend(other.admitted);
        self.refused_foreign += other.refused_foreign;
        self.refused_not_synced += other.refused_not_synced;
        self.failed_closed += other.failed_closed;
        self.other += other.other;
        if self.other_example.is_none() {
            self.other_example = other.other_example;
        }
    }
}
