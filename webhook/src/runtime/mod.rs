//! The webhook process: the allocation store, the Service and Pod watches, the repair loop,
//! the HTTPS admission server and the admin port, wired together.

mod bounded;
pub mod pods;
pub mod service_cidrs;
mod unconfirmed;
mod watch;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allocator::{Allocators, ClusterIpAllocator, IpRange, NodePortAllocator, PortRange};
use ipnet::IpNet;
use kube::Client;
use kube::core::admission::AdmissionResponse;

use crate::review::{InternalError, Request, internal_error_of};
use crate::server::admin::Liveness;
use crate::server::client_auth::{ClientAuth, ReloadingClientVerifier};
use crate::server::metrics::AdmissionMetrics;
use crate::server::tls::{ReloadingCertificate, TlsError, provider, server_config};
use crate::server::{Admission, ServerLimits, router, serve};
use crate::services::{mutate_service, validate_service};
use crate::state::Holder;
use crate::state::pool::spawn_refiller;
use crate::state::{AllocationStore, PoolConfig, StoreError, UnconfirmedConfig};
use crate::validate::{EndpointPolicy, ServiceCidrs, admit_endpoints};
use plumbing::ReadinessGate;
use pods::PodIpIndex;

/// Everything the webhook process needs to know.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `--service-cluster-ip-range`: one CIDR or two of different families.
    pub service_cluster_ip_ranges: Vec<IpNet>,
    /// `--service-node-port-range`.
    pub service_node_port_range: PortRange,
    /// Where the HTTPS admission server listens.
    pub bind_address: SocketAddr,
    /// Serving certificate and key (PEM), reloaded when they change.
    pub tls_cert_file: PathBuf,
    /// See [`Self::tls_cert_file`].
    pub tls_private_key_file: PathBuf,
    /// How often the certificate files (and the client CA bundle) are checked for changes.
    pub tls_reload_interval: Duration,
    /// Who may call the admission port. `None`: anyone who reaches it (warned at start).
    pub client_auth: Option<ClientAuth>,
    /// Timeouts and the connection limit of the admission port.
    pub limits: ServerLimits,
    /// How often repair compares the state with the Services.
    pub repair_interval: Duration,
    /// `--allowed-external-ip-cidrs`: `None` leaves externalIPs unchecked.
    pub allowed_external_ip_cidrs: Option<Vec<IpNet>>,
    /// Refuse user-written endpoints that point at other namespaces' pods.
    pub deny_foreign_pod_ips: bool,
    /// Users whose Endpoints/EndpointSlice writes are not checked.
    pub trusted_endpoint_writers: BTreeSet<String>,
    /// How long in-flight admissions may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Whether this replica is the one that releases values and frees leaks.
    pub releaser: Releaser,
    /// The values this replica persists ahead of need, to answer without a write.
    pub pool: PoolConfig,
    /// How long values given at admission wait for their Service, and how many one
    /// namespace may hold unconfirmed.
    pub unconfirmed: UnconfirmedConfig,
    /// The pod this replica runs in: a stable identity across container restarts (see
    /// [`Holder`]). None outside a pod.
    pub pod_name: Option<String>,
}

/// Whether this replica releases values (those of deleted Services, those an update
/// dropped, leaks repair found) and marks those Services hold. Exactly one replica should:
/// two replicas releasing the same value from the same watch event race with a third
/// allocating it again in between, and the late release would free a value a new Service
/// holds; a replica whose watch lags marking a value the releaser has just freed (its
/// Service deleted) would allocate it again for nobody. Allocation is safe from any
/// replica. A process elects its releaser on a Lease; a single replica uses
/// [`Releaser::always`].
#[derive(Clone, Debug)]
pub struct Releaser(tokio::sync::watch::Receiver<bool>);

impl Releaser {
    /// A replica that always releases (the only one).
    pub fn always() -> Self {
        Self(tokio::sync::watch::channel(true).1)
    }

    /// A replica that releases while `active` says so (set by the Lease holder).
    pub fn elected(active: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(active)
    }

    /// Whether this replica releases now.
    pub fn is_active(&self) -> bool {
        *self.0.borrow()
    }
}

/// Why the webhook could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured ranges are unusable.
    #[error("invalid ranges: {0}")]
    Ranges(#[from] allocator::Error),
    /// The serving certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The allocation state could not be loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server failed.
    #[error("admission server: {0}")]
    Serve(#[from] std::io::Error),
}

/// The admission decisions of a running webhook.
pub struct Webhook {
    store: AllocationStore,
    /// Admissions ending in internal errors (the state cannot be written), which liveness
    /// follows.
    errors: Arc<Mutex<ErrorStreak>>,
    endpoint_policy: EndpointPolicy,
    pod_ips: Arc<PodIpIndex>,
    allowed_external_ip_cidrs: Option<Vec<IpNet>>,
}

impl Admission for Webhook {
    async fn mutate_service(&self, request: &Request) -> Result<AdmissionResponse, InternalError> {
        let response = mutate_service(request, &self.store).await;
        match internal_error_of(&response) {
            Some(error) => {
                let now = Instant::now();
                lock(&self.errors).failed(now, error.to_string());
                Err(error)
            }
            None => {
                lock(&self.errors).answered();
                Ok(response)
            }
        }
    }

    fn validate_service(&self, request: &Request) -> AdmissionResponse {
        validate_service(request, self.allowed_external_ip_cidrs.as_deref())
    }

    fn validate_endpoints(&self, request: &Request) -> AdmissionResponse {
        admit_endpoints(request, &self.endpoint_policy, self.pod_ips.as_ref())
    }
}

/// How long admissions must keep ending in internal errors before liveness fails.
const FAILING_FOR: Duration = Duration::from_secs(30);

/// Whether admissions keep ending in internal errors. Liveness fails only once they have
/// for [`FAILING_FOR`] with no admission answered since, the latest within it: one error
/// while kube-apiserver restarts, in a quiet cluster, must not get every replica that saw it
/// restarted (and crash-looping while the apiserver is away), but a replica whose state
/// cannot be written for long is restarted.
#[derive(Debug, Default)]
struct ErrorStreak {
    /// The first internal error since the last admission answered.
    first: Option<Instant>,
    /// The latest one, and what it said.
    last: Option<(Instant, String)>,
}

impl ErrorStreak {
    fn failed(&mut self, now: Instant, error: String) {
        self.first.get_or_insert(now);
        self.last = Some((now, error));
    }

    fn answered(&mut self) {
        *self = ErrorStreak::default();
    }

    /// Why liveness should fail at `now`, if it should.
    fn failing(&self, now: Instant) -> Option<&str> {
        let first = self.first?;
        let (last, error) = self.last.as_ref()?;
        let long = now.duration_since(first) >= FAILING_FOR;
        let still = now.duration_since(*last) < FAILING_FOR;
        (long && still).then_some(error.as_str())
    }
}

fn lock(errors: &Mutex<ErrorStreak>) -> std::sync::MutexGuard<'_, ErrorStreak> {
    errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A task aborted when this handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The allocators of the configured ranges, empty.
pub fn allocators(config: &WebhookConfig) -> Result<Allocators, allocator::Error> {
    let cluster_ips = config
        .service_cluster_ip_ranges
        .iter()
        .map(|&net| IpRange::new(net).map(ClusterIpAllocator::new))
        .collect::<Result<Vec<_>, _>>()?;
    Allocators::new(
        cluster_ips,
        NodePortAllocator::new(config.service_node_port_range),
    )
}

/// Runs the webhook until `shutdown` resolves: loads the state, learns the values existing
/// Services hold (ready only after that), then serves admissions and keeps the state true.
///
/// `metrics` come from [`AdmissionMetrics::register`] on the process's registry; the
/// checks of `liveness` fail when the store or a watch stops, or admissions cannot write
/// the state.
pub async fn run(
    client: Client,
    config: WebhookConfig,
    metrics: AdmissionMetrics,
    readiness: ReadinessGate,
    liveness: Liveness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let certificate =
        ReloadingCertificate::load(&config.tls_cert_file, &config.tls_private_key_file)?;
    // Stopped with `run`, including when its future is dropped before it returns.
    let _reloader = AbortOnDrop(certificate.spawn_reloader(config.tls_reload_interval));
    let clients = match &config.client_auth {
        Some(auth) => {
            let verifier = ReloadingClientVerifier::load(auth, provider())?;
            tracing::info!(
                ca = %auth.ca_file.display(),
                names = ?auth.allowed_names,
                "admission callers must present a client certificate from this CA"
            );
            Some(verifier)
        }
        None => {
            tracing::warn!(
                "no --client-ca-file: anyone who reaches the admission port can send AdmissionReviews and reserve values; give kube-apiserver a client certificate and svcplane its CA"
            );
            None
        }
    };
    let _ca_reloader = clients
        .as_ref()
        .map(|verifier| AbortOnDrop(verifier.spawn_reloader(config.tls_reload_interval)));
    let tls = server_config(Arc::clone(&certificate), clients)?;

    let (expired, unconfirmed) = tokio::sync::mpsc::unbounded_channel();
    let holder = Holder::new(config.pod_name.as_deref());
    let store = AllocationStore::start(
        bounded::bounded(&client, bounded::STORE_REQUEST_LIMIT),
        allocators(&config)?,
        config.pool,
        holder.clone(),
        config.unconfirmed,
        expired,
    )
    .await?;
    let _give_back = AbortOnDrop(tokio::spawn(unconfirmed::give_back_unconfirmed(
        client.clone(),
        store.clone(),
        unconfirmed,
    )));
    let pod_ips = Arc::new(PodIpIndex::default());
    // The endpoint check's Service CIDRs: the flags', then the ServiceCIDR objects' too.
    let (virtual_ips, service_cidrs) =
        ServiceCidrs::following(config.service_cluster_ip_ranges.clone());
    let mut watches = watch::start(
        client.clone(),
        store.clone(),
        Arc::clone(&pod_ips),
        virtual_ips,
        &config,
    )
    .await;
    // Ends once done: not one of the watches, which run as long as the process.
    let _earlier_lives = (config.pool.size > 0).then(|| {
        AbortOnDrop(tokio::spawn(watch::reclaim_previous_lives(
            client.clone(),
            store.clone(),
            config.unconfirmed.timeout,
        )))
    });
    // Pools only take values once the first repair marked those existing Services hold.
    let refiller = spawn_refiller(
        client,
        store.clone(),
        allocators(&config)?,
        config.pool,
        holder,
    )
    .map(AbortOnDrop);
    tracing::info!(
        ranges = ?config.service_cluster_ip_ranges,
        node_ports = %config.service_node_port_range,
        "allocation state loaded and existing Services learned"
    );
    // With the cross-namespace check on, ready only once the pods are listed: until then
    // endpoint writes get a 503, and a Service in front of the replicas should not send any.
    let readiness = Arc::new(readiness);
    let ready_when_pods_listed = if config.deny_foreign_pod_ips {
        let (pod_ips, readiness) = (Arc::clone(&pod_ips), Arc::clone(&readiness));
        Some(AbortOnDrop(tokio::spawn(async move {
            pod_ips.wait_synced().await;
            tracing::info!("pods listed: endpoint validation ready");
            readiness.set(true);
        })))
    } else {
        readiness.set(true);
        None
    };

    let errors = Arc::new(Mutex::new(ErrorStreak::default()));
    let webhook = Webhook {
        store: store.clone(),
        errors: Arc::clone(&errors),
        endpoint_policy: EndpointPolicy {
            service_cidrs,
            deny_foreign_pod_ips: config.deny_foreign_pod_ips,
            trusted_writers: config.trusted_endpoint_writers.clone(),
        },
        pod_ips,
        allowed_external_ip_cidrs: config.allowed_external_ip_cidrs.clone(),
    };
    // Bound only now: until the state is loaded, a caller is refused at once and
    // kube-apiserver applies the failure policy, rather than waiting in the backlog.
    let listener = tokio::net::TcpListener::bind(config.bind_address).await?;
    tracing::info!(address = %config.bind_address, limits = ?config.limits, "serving admissions");
    let served = tokio::select! {
        served = serve(
            listener,
            Some(Arc::new(tls)),
            router(Arc::new(webhook), metrics),
            config.limits,
            shutdown,
            config.shutdown_grace,
        ) => served,
        never = watch_health(&mut watches, &store, &errors, &liveness) => match never {},
    };
    drop(ready_when_pods_listed);
    readiness.set(false);
    drop(refiller);
    match store.return_pools().await {
        Ok(0) => {}
        Ok(freed) => tracing::info!(freed, "pooled values freed"),
        Err(error) => tracing::warn!(%error, "pooled values not freed"),
    }
    watches.abort();
    served?;
    Ok(())
}

/// Marks `liveness` failed when the store's actor stops or a watch (or the repair loop)
/// ends; both are meant to run as long as the process, and nothing restarts them but a
/// restart of the process.
async fn watch_health(
    watches: &mut watch::Watches,
    store: &AllocationStore,
    errors: &Mutex<ErrorStreak>,
    liveness: &Liveness,
) -> std::convert::Infallible {
    let store_check = liveness.check("allocation-store");
    let watch_check = liveness.check("service-watch");
    let state_check = liveness.check("allocation-state");
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        if store.is_stopped() {
            store_check.fail("the allocation store stopped");
        }
        match lock(errors).failing(Instant::now()) {
            Some(error) => state_check.fail(format!(
                "admissions have ended in internal errors for {FAILING_FOR:?} or more: {error}"
            )),
            None => state_check.ok(),
        }
        if watches.any_ended() {
            watch_check.fail("a watch or the repair loop ended");
            tracing::error!("a watch or the repair loop ended; /livez now fails");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn one_internal_error_in_a_quiet_cluster_never_fails_liveness() {
        let start = Instant::now();
        let mut errors = ErrorStreak::default();
        errors.failed(start, "apiserver away".into());
        for later in [0, 10, 29, 30, 31, 600] {
            assert_eq!(errors.failing(start + s(later)), None, "at {later} s");
        }
    }

    #[test]
    fn internal_errors_for_the_whole_grace_fail_liveness_until_an_answer() {
        let start = Instant::now();
        let mut errors = ErrorStreak::default();
        for at in (0..=30).step_by(5) {
            errors.failed(start + s(at), format!("error at {at}"));
            let expected = (at >= 30).then(|| format!("error at {at}"));
            assert_eq!(
                errors.failing(start + s(at)).map(str::to_string),
                expected,
                "at {at} s"
            );
        }
        // Failing as long as errors keep coming, then no longer once they stop...
        assert!(errors.failing(start + s(59)).is_some());
        assert_eq!(errors.failing(start + s(60)), None);
        // ... or at once on an answered admission.
        errors.failed(start + s(61), "again".into());
        assert!(errors.failing(start + s(61)).is_some());
        errors.answered();
        assert_eq!(errors.failing(start + s(61)), None);
    }

    #[tokio::test]
    async fn a_task_behind_abort_on_drop_stops_with_its_owner() {
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _ = never.await;
        }));
        let task = guard.0.abort_handle();
        let owner = async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        };
        // The owner is cancelled, as a `run` future dropped by its caller.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), owner)
                .await
                .is_err()
        );
        tokio::task::yield_now().await;
        assert!(task.is_finished());
    }
}
