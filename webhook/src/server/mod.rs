//! The HTTPS admission server and the admin port around the pure admission functions.

pub mod admin;
pub mod metrics;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Json};
use axum::routing::post;
use kube::core::admission::AdmissionResponse;

use crate::review::{self, Request};
use metrics::AdmissionMetrics;

/// The admission decisions the server routes to. Implemented by svcplane's webhook state;
/// tests implement it with fixtures.
pub trait Admission: Send + Sync + 'static {
    /// Mutating admission of a Service create or update: allocation.
    fn mutate_service(&self, request: &Request) -> AdmissionResponse;
    /// Validating admission of a Service create or update.
    fn validate_service(&self, request: &Request) -> AdmissionResponse;
    /// Validating admission of a user-written Endpoints or EndpointSlice.
    fn validate_endpoints(&self, request: &Request) -> AdmissionResponse;
}

/// Paths the webhook configurations point at.
pub mod paths {
    /// Mutating: Services.
    pub const MUTATE_SERVICES: &str = "/mutate/services";
    /// Validating: Services.
    pub const VALIDATE_SERVICES: &str = "/validate/services";
    /// Validating: Endpoints and EndpointSlices.
    pub const VALIDATE_ENDPOINTS: &str = "/validate/endpoints";
}

/// The largest AdmissionReview accepted. kube-apiserver caps a request body at 3 MiB; a
/// review carries the object and the old object.
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

struct AppState {
    admission: Arc<dyn Admission>,
    metrics: AdmissionMetrics,
}

/// The admission routes.
pub fn router(admission: Arc<dyn Admission>, metrics: AdmissionMetrics) -> Router {
    let state = Arc::new(AppState { admission, metrics });
    Router::new()
        .route(
            paths::MUTATE_SERVICES,
            post(|s: State<Arc<AppState>>, body: Bytes| {
                handle(s, body, "mutate-services", |a, r| a.mutate_service(r))
            }),
        )
        .route(
            paths::VALIDATE_SERVICES,
            post(|s: State<Arc<AppState>>, body: Bytes| {
                handle(s, body, "validate-services", |a, r| a.validate_service(r))
            }),
        )
        .route(
            paths::VALIDATE_ENDPOINTS,
            post(|s: State<Arc<AppState>>, body: Bytes| {
                handle(s, body, "validate-endpoints", |a, r| {
                    a.validate_endpoints(r)
                })
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
}

async fn handle(
    State(state): State<Arc<AppState>>,
    body: Bytes,
    webhook: &'static str,
    decide: fn(&dyn Admission, &Request) -> AdmissionResponse,
) -> impl IntoResponse {
    let started = Instant::now();
    let (status, review) = review::respond(&body, |request| {
        let span = tracing::info_span!("admission", webhook, uid = %request.uid, kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or(""), name = %request.name, operation = ?request.operation);
        let _entered = span.enter();
        let response = decide(state.admission.as_ref(), request);
        if response.allowed {
            tracing::debug!(patched = response.patch.is_some(), "allowed");
        } else {
            tracing::info!(reason = %response.result.message, "denied");
        }
        response
    });
    let allowed = review.response.as_ref().is_some_and(|r| r.allowed);
    state.metrics.observe(webhook, allowed, started.elapsed());
    (status, Json(review))
}

/// Serves `router` over TLS on `addr` until `shutdown` resolves, then lets in-flight
/// requests finish for up to `grace`.
pub async fn serve_tls(
    addr: SocketAddr,
    router: Router,
    tls: rustls::ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(Some(grace));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    axum_server::bind_rustls(addr, config)
        .handle(handle)
        .serve(router.into_make_service())
        .await
}
