//! The controllers at work: watches, caches, work queues, API writes, leader election, metrics
//! and events around the pure core.
//!
//! - one watch per kind (`plumbing`), with backoff, that no single bad object stops.
//! - `trim`: what the caches keep of each object, and which changes matter.
//! - [`cache`]: the per-kind caches both controllers share.
//! - `shared`: what the watches feed and the controllers read: caches, queues, the pods changed
//!   per Service, the write trackers.
//! - `router`: which Services a change of any object queues for a sync.
//! - `queue`: per-key de-duplicated work queues with delays and retry backoff.
//! - `indexes`: each controller's per-Service index of endpoints, kept between syncs.
//! - `endpoints` and `endpointslice`: one sync of one Service, for each controller;
//!   `mirroring`: one sync of one selectorless Service's user-written Endpoints.
//! - leader election on a Lease and readiness come from `plumbing` (shared with the webhook).
//! - [`enabled`]: which controllers run, from kube-controller-manager's `--controllers`.
//! - `metrics`: the in-tree metric names in the registry the caller passes in.
//! - `events`: publishing the Events the three controllers record.
//!
//! The entry point is [`run`]; a binary parses flags into a [`ControllersConfig`] and calls it:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use controllers::runtime::{ControllersConfig, run};
//!
//! let client = kube::Client::try_default().await?;
//! let mut registry = prometheus_client::registry::Registry::default();
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! let controllers = run(client, ControllersConfig::default(), &mut registry, shutdown);
//! let readiness = controllers.readiness();
//! // Serve `registry` on /metrics here (it holds the controllers' metrics already), and
//! // answer /readyz with `readiness.is_ready()`.
//! controllers.await?;
//! # Ok(())
//! # }
//! ```
//!
//! kube-runtime's `Controller` is not used for the work loop: it only reconciles objects its
//! store holds, while both controllers must also sync a Service that is gone (the Endpoints
//! controller deletes its Endpoints object, both forget what they tracked), and doing that
//! outside the queue would race with a sync of the same Service in flight.

pub mod cache;
pub mod enabled;
mod endpoints;
mod endpointslice;
mod error;
mod events;
mod indexes;
mod metrics;
mod mirroring;
mod queue;
mod rate;
mod router;
mod shared;
mod trim;
mod write;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher::Config;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

pub use cache::ObjectKey;
pub use enabled::{ControllerList, EnabledControllers};
pub use error::{Error, Result};
pub use plumbing::Readiness;
use plumbing::ReadinessGate;
use plumbing::lease::{LeaderElectionConfig, LeaseElector};
pub use rate::ClientRate;

use self::endpoints::EndpointsController;
use self::endpointslice::SliceController;
use self::error::SyncError;
use self::metrics::Metrics;
use self::mirroring::MirroringController;
use self::queue::{Backoff, WorkQueue};
use self::router::{Router, Update, is_mirrored};
use self::shared::{Caches, Queues, SharedState, Watched};
use crate::mirroring::endpoints_mirrorable;
use crate::pods::{PodInfo, WatchedPod};
use crate::well_known::{
    LABEL_SERVICE_NAME, SVCPLANE_ENDPOINTS_MANAGER, SVCPLANE_MIRRORING_MANAGER,
    SVCPLANE_SLICE_MANAGER,
};
use crate::{MaxEndpointsPerSlice, MirroringParams};

/// What both controllers use: the client, the caches and the metrics.
#[derive(Clone)]
pub(crate) struct Shared {
    pub client: Client,
    pub caches: Arc<Caches>,
    pub metrics: Arc<Metrics>,
}

/// How the controllers run. The defaults are kube-controller-manager's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllersConfig {
    /// `--concurrent-service-endpoint-syncs`: Services whose EndpointSlices sync at once (5).
    pub concurrent_service_endpoint_syncs: u16,
    /// `--concurrent-endpoint-syncs`: Services whose Endpoints sync at once (5).
    pub concurrent_endpoint_syncs: u16,
    /// `--endpointslice-updates-batch-period`: delay before a pod change is synced into
    /// slices, so that changes arriving meanwhile share the write (0).
    pub endpointslice_updates_batch_period: Duration,
    /// `--endpoint-updates-batch-period`: the same for Endpoints (0).
    pub endpoint_updates_batch_period: Duration,
    /// `--max-endpoints-per-slice` (100).
    pub max_endpoints_per_slice: MaxEndpointsPerSlice,
    /// `--mirroring-concurrent-service-endpoint-syncs`: Endpoints objects mirrored at once (5).
    pub mirroring_concurrent_service_endpoint_syncs: u16,
    /// `--mirroring-endpointslice-updates-batch-period`: delay before a mirrored slice change
    /// is synced, so that changes arriving meanwhile share the sync (0).
    pub mirroring_endpoint_updates_batch_period: Duration,
    /// Leader election (on, Lease `kube-system/svcplane-controllers`).
    pub leader_election: LeaderElectionConfig,
    /// `--controllers`: which controllers run (all three).
    pub enabled: EnabledControllers,
    /// `--kube-api-qps` and `--kube-api-burst`: each controller's client-side request rate
    /// (none: kube-controller-manager's 20 and 30 are not applied unless asked for).
    pub client_rate: Option<ClientRate>,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            concurrent_service_endpoint_syncs: 5,
            concurrent_endpoint_syncs: 5,
            endpointslice_updates_batch_period: Duration::ZERO,
            endpoint_updates_batch_period: Duration::ZERO,
            max_endpoints_per_slice: MaxEndpointsPerSlice::DEFAULT,
            mirroring_concurrent_service_endpoint_syncs: 5,
            mirroring_endpoint_updates_batch_period: Duration::ZERO,
            leader_election: LeaderElectionConfig::default(),
            enabled: EnabledControllers::default(),
            client_rate: None,
        }
    }
}

impl ControllersConfig {
    fn validate(&self) -> Result<()> {
        if self.concurrent_service_endpoint_syncs == 0
            || self.concurrent_endpoint_syncs == 0
            || self.mirroring_concurrent_service_endpoint_syncs == 0
        {
            return Err(Error::InvalidConfig(
                "--concurrent-service-endpoint-syncs, --concurrent-endpoint-syncs and --mirroring-concurrent-service-endpoint-syncs must be at least 1"
                    .into(),
            ));
        }
        self.leader_election
            .validate()
            .map_err(Error::InvalidConfig)
    }
}

/// The in-tree retry schedules: 5ms doubling for Endpoints, 1s doubling for slices (slice
/// syncs can be large), both up to 1000s; a Service is dropped from the queue after 15
/// failed retries, until its next change (a cache found behind is retried without limit).
const ENDPOINTS_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(5),
    max: Duration::from_secs(1000),
};
const SLICES_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(1000),
};
/// The in-tree mirroring controller's retry schedule: 1s doubling up to 100s.
const MIRRORING_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(100),
};
const MAX_RETRIES: u32 = 15;

/// Runs the Endpoints, EndpointSlice and EndpointSlice mirroring controllers (those of
/// [`ControllersConfig::enabled`]) until `shutdown` completes.
///
/// The metrics of the enabled controllers are registered in `registry` when `run` is called,
/// before the returned future is first polled, so the caller can serve the registry while the
/// controllers run; the future's [`Controllers::readiness`] says when they are ready. Only the
/// kinds the enabled controllers read are watched, and readiness waits for those alone. With
/// none enabled, nothing is watched, no Lease is taken, and the controllers are ready at once.
///
/// With leader election on, the controllers only run while this instance holds the Lease:
/// the future waits for it, and fails with [`Error::LeadershipLost`] if it is lost (the process
/// should then exit, as kube-controller-manager does). On shutdown, syncs in flight finish, the
/// Lease is released and the future yields `Ok`.
pub fn run(
    client: Client,
    config: ControllersConfig,
    registry: &mut Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Controllers {
    let metrics = Arc::new(Metrics::register(registry, config.enabled));
    // A standby counts as ready: it has nothing to sync until it leads, and `svcplane run`
    // serves admissions on every replica, so standbys that never became ready would take all
    // but one replica out of the webhook's Service.
    let readiness = Readiness::default();
    let ready = readiness.gate("controllers");
    let run = async move {
        config.validate()?;
        let shutdown = shutdown.shared();
        if config.enabled.none() {
            tracing::info!("no controller enabled by --controllers");
            ready.set(true);
            shutdown.await;
            return Ok(());
        }
        tracing::info!(controllers = ?config.enabled.names(), "controllers enabled");
        if !config.leader_election.enabled {
            return run_controllers(client, &config, metrics, &ready, shutdown).await;
        }
        let mut elector = LeaseElector::new(client.clone(), config.leader_election.clone());
        let leading = tokio::select! {
            attempt = elector.try_acquire_or_renew() => matches!(attempt, Ok(true)),
            () = shutdown.clone() => return Ok(()),
        };
        if !leading {
            ready.set(true);
            tokio::select! {
                () = elector.acquire() => {}
                () = shutdown.clone() => return Ok(()),
            }
            ready.set(false);
        }
        tracing::info!(lease = %config.leader_election.lease(), "leading; starting the caches");
        let result = tokio::select! {
            result = run_controllers(client, &config, metrics, &ready, shutdown) => result,
            reason = elector.hold() => {
                let lease = config.leader_election.lease();
                tracing::error!(%lease, %reason, "lost the leader Lease; stopping the controllers");
                return Err(Error::LeadershipLost { lease, reason });
            }
        };
        // A Lease not handed back expires after the lease duration anyway.
        let _ = elector.release().await;
        result
    };
    Controllers {
        run: run.boxed(),
        readiness,
    }
}

/// The controllers at work, from [`run`]: a future that completes when they stop, and their
/// readiness.
#[must_use = "the controllers only run when awaited or spawned"]
pub struct Controllers {
    run: BoxFuture<'static, Result<()>>,
    readiness: Readiness,
}

impl Controllers {
    /// Whether the controllers are ready; it stays valid after the future is spawned.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }
}

impl Future for Controllers {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.run.as_mut().poll(cx)
    }
}

fn reporter(controller: &str, config: &ControllersConfig) -> Reporter {
    Reporter {
        controller: controller.into(),
        instance: Some(config.leader_election.identity.clone()),
    }
}

async fn run_controllers(
    client: Client,
    config: &ControllersConfig,
    metrics: Arc<Metrics>,
    ready: &ReadinessGate,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let caches = Arc::new(Caches::default());
    let queues = Queues {
        endpoints: Arc::new(
            WorkQueue::new(ENDPOINTS_BACKOFF).with_metrics(metrics.queue("endpoint")),
        ),
        slices: Arc::new(
            WorkQueue::new(SLICES_BACKOFF).with_metrics(metrics.queue("endpoint_slice")),
        ),
        mirroring: Arc::new(
            WorkQueue::new(MIRRORING_BACKOFF)
                .with_metrics(metrics.queue("endpoint_slice_mirroring")),
        ),
        endpoints_batch: config.endpoint_updates_batch_period,
        slices_batch: config.endpointslice_updates_batch_period,
        mirroring_batch: config.mirroring_endpoint_updates_batch_period,
        slice_waiters: Arc::default(),
        mirroring_waiters: Arc::default(),
    };
    let (slice_waiters, mirroring_waiters) = (
        queues.slice_waiters.clone(),
        queues.mirroring_waiters.clone(),
    );
    let (endpoints_queue, slices_queue, mirroring_queue) = (
        queues.endpoints.clone(),
        queues.slices.clone(),
        queues.mirroring.clone(),
    );
    let state = SharedState::default();
    // A disabled controller's queue takes nothing.
    let enabled = config.enabled;
    for (on, queue) in [
        (enabled.endpoints, &endpoints_queue),
        (enabled.endpointslice, &slices_queue),
        (enabled.mirroring, &mirroring_queue),
    ] {
        if !on {
            queue.shut_down();
        }
    }

    let mut tasks = JoinSet::new();
    let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(false);
    let router = Router::new(
        caches.clone(),
        queues,
        state.clone(),
        SVCPLANE_SLICE_MANAGER,
        enabled,
    );
    tasks.spawn(route(
        client.clone(),
        router,
        caches.clone(),
        Watched::by(enabled),
        synced_tx,
    ));

    tokio::pin!(shutdown);
    let synced = tokio::select! {
        result = synced_rx.wait_for(|synced| *synced) => result.is_ok(),
        () = &mut shutdown => return Ok(()),
    };
    if !synced {
        return Err(watches_stopped(tasks.join_next().await));
    }
    tracing::info!(
        services = caches.services.len(),
        pods = caches.pods.len(),
        nodes = caches.nodes.len(),
        "caches synced; starting the controllers"
    );
    ready.set(true);
    queue_everything(&caches, &endpoints_queue, &slices_queue, &mirroring_queue);

    // Each controller has a client of its own, as in kube-controller-manager, so that a
    // client-side rate limits each one alone; its Events go through it too.
    let shared_for = |controller: &'static str| Shared {
        client: rate::limited(&client, config.client_rate, controller, &metrics),
        caches: caches.clone(),
        metrics: metrics.clone(),
    };
    let (endpoints_shared, slices_shared, mirroring_shared) = (
        shared_for("endpoints"),
        shared_for("endpointslice"),
        shared_for("endpointslice-mirroring"),
    );
    let endpoints_controller = Arc::new(EndpointsController::new(
        endpoints_shared.clone(),
        Recorder::new(
            endpoints_shared.client,
            reporter(SVCPLANE_ENDPOINTS_MANAGER, config),
        ),
        state.endpoints_changes.clone(),
    ));
    let slice_controller = Arc::new(SliceController::new(
        slices_shared.clone(),
        Recorder::new(
            slices_shared.client,
            reporter(SVCPLANE_SLICE_MANAGER, config),
        ),
        SVCPLANE_SLICE_MANAGER,
        config.max_endpoints_per_slice,
        state.clone(),
        slice_waiters,
    ));
    let mirroring_controller = Arc::new(MirroringController::new(
        mirroring_shared.clone(),
        Recorder::new(
            mirroring_shared.client,
            reporter(SVCPLANE_MIRRORING_MANAGER, config),
        ),
        MirroringParams::default(),
        state.mirroring_tracker,
        mirroring_waiters,
    ));
    let mut workers = JoinSet::new();
    let workers_of = |on: bool, count: u16| if on { count } else { 0 };
    for _ in 0..workers_of(enabled.endpoints, config.concurrent_endpoint_syncs) {
        let (queue, controller) = (endpoints_queue.clone(), endpoints_controller.clone());
        workers.spawn(work(queue, "endpoints", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        }));
    }
    for _ in 0..workers_of(
        enabled.endpointslice,
        config.concurrent_service_endpoint_syncs,
    ) {
        let (queue, controller) = (slices_queue.clone(), slice_controller.clone());
        workers.spawn(work(queue, "endpointslice", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        }));
    }
    for _ in 0..workers_of(
        enabled.mirroring,
        config.mirroring_concurrent_service_endpoint_syncs,
    ) {
        let (queue, controller) = (mirroring_queue.clone(), mirroring_controller.clone());
        workers.spawn(work(queue, "endpointslice-mirroring", move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        }));
    }

    let result = tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutting down: letting syncs in flight finish");
            Ok(())
        }
        ended = tasks.join_next() => Err(watches_stopped(ended)),
    };
    ready.set(false);
    endpoints_queue.shut_down();
    slices_queue.shut_down();
    mirroring_queue.shut_down();
    while workers.join_next().await.is_some() {}
    result
}

fn watches_stopped(ended: Option<Result<(), tokio::task::JoinError>>) -> Error {
    let why = match ended {
        Some(Err(error)) => error.to_string(),
        _ => "ended".to_string(),
    };
    Error::WatchesStopped(why)
}

/// Queues every Service for both pod-driven controllers, and, as in-tree, every Endpoints
/// object for the Endpoints controller so that those left behind by a Service deleted while
/// no controller ran are deleted too. The mirroring controller gets every Endpoints object it
/// may mirror and the owner of every mirrored slice (those of an Endpoints object gone
/// meanwhile are deleted).
fn queue_everything(
    caches: &Caches,
    endpoints: &WorkQueue<ObjectKey>,
    slices: &WorkQueue<ObjectKey>,
    mirroring: &WorkQueue<ObjectKey>,
) {
    for object in caches.endpoints.all() {
        if endpoints_mirrorable(&object).is_ok() {
            mirroring.add(ObjectKey::of::<Endpoints>(&object));
        }
    }
    for slice in caches.slices.all() {
        if is_mirrored(&slice)
            && let Some(name) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
        {
            mirroring.add(ObjectKey::new(
                slice.metadata.namespace.clone().unwrap_or_default(),
                name.clone(),
            ));
        }
    }
    for service in caches.services.all() {
        let key = ObjectKey::of::<Service>(&service);
        endpoints.add(key.clone());
        slices.add(key);
    }
    for object in caches.endpoints.all() {
        let leader_record = object
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("control-plane.alpha.kubernetes.io/leader"));
        if !leader_record {
            endpoints.add(ObjectKey::of::<Endpoints>(&object));
        }
    }
}

/// The watch events of one kind.
type UpdateStream = BoxStream<'static, Update>;

/// Feeds the watch events of the watched kinds to the router, and says when their caches are
/// synced. The cache of a kind not watched stays empty and counts as synced.
async fn route(
    client: Client,
    mut router: Router,
    caches: Arc<Caches>,
    watched: Watched,
    synced: tokio::sync::watch::Sender<bool>,
) {
    // Streams are lazy: one not kept never opens a watch.
    let optional: [(bool, UpdateStream, &dyn Fn()); 4] = [
        (
            watched.pods,
            plumbing::watch::<WatchedPod, _>(client.clone(), Config::default(), PodInfo::from)
                .map(|event| Update::Pod(Box::new(event)))
                .boxed(),
            &|| caches.pods.mark_listed(),
        ),
        (
            watched.nodes,
            plumbing::watch(client.clone(), Config::default(), trim::node)
                .map(|event| Update::Node(Box::new(event)))
                .boxed(),
            &|| caches.nodes.mark_listed(),
        ),
        (
            watched.endpoints,
            plumbing::watch(client.clone(), Config::default(), trim::endpoints)
                .map(|event| Update::Endpoints(Box::new(event)))
                .boxed(),
            &|| caches.endpoints.mark_listed(),
        ),
        (
            watched.slices,
            plumbing::watch(client.clone(), Config::default(), trim::endpoint_slice)
                .map(|event| Update::Slice(Box::new(event)))
                .boxed(),
            &|| caches.slices.mark_listed(),
        ),
    ];
    let mut streams = vec![
        plumbing::watch(client, Config::default(), trim::service)
            .map(|event| Update::Service(Box::new(event)))
            .boxed(),
    ];
    for (on, stream, mark_listed) in optional {
        if on {
            streams.push(stream);
        } else {
            mark_listed();
        }
    }
    let mut updates = futures::stream::select_all(streams);
    while let Some(update) = updates.next().await {
        router.handle(update);
        if !*synced.borrow() && caches.synced() {
            synced.send_replace(true);
        }
    }
}

/// A worker: takes Service keys off the queue and syncs them, retrying failures with backoff.
/// A sync that panics (a bug) counts as a failure, so that neither the worker nor the Service
/// is lost.
async fn work<F, Fut>(queue: Arc<WorkQueue<ObjectKey>>, controller: &'static str, sync: F)
where
    F: Fn(ObjectKey) -> Fut,
    Fut: Future<Output = Result<(), SyncError>>,
{
    while let Some(key) = queue.next().await {
        let outcome = AssertUnwindSafe(sync(key.clone())).catch_unwind().await;
        let error = match outcome {
            Ok(Ok(())) => {
                queue.forget(&key);
                queue.done(&key);
                continue;
            }
            Ok(Err(error)) => error,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(controller, service = %key, %message, "sync panicked");
                SyncError::Panicked(message)
            }
        };
        // A cache behind this controller's own writes catches up by itself (and its next
        // event queues the Service again): never a reason to give up on the Service.
        let stale = matches!(error, SyncError::StaleCache(_));
        if stale || queue.failures(&key) < MAX_RETRIES {
            if stale {
                tracing::debug!(controller, service = %key, %error, "cache behind; retrying");
            } else {
                tracing::info!(controller, service = %key, %error, "sync failed; retrying");
            }
            queue.retry(key.clone());
        } else {
            tracing::warn!(controller, service = %key, %error, "sync failed too often; dropping the Service until it changes again");
            queue.forget(&key);
        }
        queue.done(&key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_sync_is_retried_and_the_worker_goes_on() {
        let queue = Arc::new(WorkQueue::new(SLICES_BACKOFF));
        let calls = Arc::new(AtomicU32::new(0));
        queue.add(ObjectKey::new("ns", "flaky"));
        let worker = tokio::spawn(work(queue.clone(), "test", {
            let calls = calls.clone();
            move |key: ObjectKey| {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("a bug syncing {key}");
                    }
                    Ok(())
                }
            }
        }));
        while calls.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(queue.failures(&ObjectKey::new("ns", "flaky")), 0);
        queue.shut_down();
        worker.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_behind_is_never_a_reason_to_drop_the_service() {
        let queue = Arc::new(WorkQueue::new(ENDPOINTS_BACKOFF));
        let calls = Arc::new(AtomicU32::new(0));
        let key = ObjectKey::new("ns", "busy");
        queue.add(key.clone());
        let worker = tokio::spawn(work(queue.clone(), "test", {
            let calls = calls.clone();
            move |_key: ObjectKey| {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) <= MAX_RETRIES {
                        Err(SyncError::StaleCache("EndpointSlice"))
                    } else {
                        Ok(())
                    }
                }
            }
        }));
        // Backoff doubles from 5 ms up to 1000 s: a day of (paused) time is plenty.
        for _ in 0..86_400 {
            if calls.load(Ordering::SeqCst) >= MAX_RETRIES + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), MAX_RETRIES + 2);
        assert_eq!(queue.failures(&key), 0, "synced after the cache caught up");
        queue.shut_down();
        worker.await.unwrap();
    }

    #[test]
    fn defaults_are_kube_controller_managers() {
        let config = ControllersConfig::default();
        assert_eq!(config.concurrent_service_endpoint_syncs, 5);
        assert_eq!(config.concurrent_endpoint_syncs, 5);
        assert_eq!(config.endpointslice_updates_batch_period, Duration::ZERO);
        assert_eq!(config.max_endpoints_per_slice.get(), 100);
        assert_eq!(config.mirroring_concurrent_service_endpoint_syncs, 5);
        assert_eq!(
            config.mirroring_endpoint_updates_batch_period,
            Duration::ZERO
        );
        assert!(config.leader_election.enabled);
        assert!(config.validate().is_ok());
        let idle = ControllersConfig {
            concurrent_endpoint_syncs: 0,
            ..ControllersConfig::default()
        };
        assert!(matches!(idle.validate(), Err(Error::InvalidConfig(_))));
    }
}
