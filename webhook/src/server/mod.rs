//! The HTTPS admission server and the admin port around the pure admission functions.

pub mod admin;
pub mod client_auth;
mod handshakes;
pub mod metrics;
pub(crate) mod serve;
pub(crate) mod summary;
pub mod tls;
mod waiting;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use tracing::{Instrument, Level};

use crate::review::{self, InternalError, Request};
use metrics::AdmissionMetrics;
pub use serve::{ServerLimits, serve};
use summary::LogSummary;

/// The admission decisions the server routes to. Implemented by svcplane's webhook state;
/// tests implement it with fixtures.
pub trait Admission: Send + Sync + 'static {
    /// Mutating admission of a Service create or update: allocation. `Err` when it cannot
    /// decide for an internal reason: answered with HTTP 500, so that kube-apiserver applies
    /// the failurePolicy (Ignore: it allocates on its own) instead of refusing the Service.
    fn mutate_service(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<AdmissionResponse, InternalError>> + Send;
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

/// The largest AdmissionReview accepted: 3 MiB, kube-apiserver's own limit on a request
/// body (`MaxRequestBodyBytes`). No object it admits is larger, and etcd stores at most
/// 1.5 MiB per object, so an update's review (object and old object) stays within it too;
/// a larger body can only come from something other than kube-apiserver, and buffering it
/// would cost memory every replica shares with real admissions.
pub const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024;

struct AppState<A> {
    admission: Arc<A>,
    metrics: AdmissionMetrics,
    denials: Mutex<LogSummary>,
}

/// The admission routes.
pub fn router<A: Admission>(admission: Arc<A>, metrics: AdmissionMetrics) -> Router {
    let state = Arc::new(AppState {
        admission,
        metrics,
        // A handful of denial (and internal error) lines per minute and route; the metrics
        // count all of them.
        denials: Mutex::new(LogSummary::new(Duration::from_secs(60), 5)),
    });
    Router::new()
        .route(paths::MUTATE_SERVICES, post(mutate_services::<A>))
        .route(paths::VALIDATE_SERVICES, post(validate_services::<A>))
        .route(paths::VALIDATE_ENDPOINTS, post(validate_endpoints::<A>))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
}

async fn mutate_services<A: Admission>(
    State(state): State<Arc<AppState<A>>>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let (status, review) = match review::decode(&body) {
        Ok(request) => {
            let span = span("mutate-services", &request);
            match state
                .admission
                .mutate_service(&request)
                .instrument(span.clone())
                .await
            {
                Ok(response) => (StatusCode::OK, response.into_review()),
                Err(error) => {
                    span.in_scope(|| {
                        state
                            .denials
                            .lock()
                            .expect("denial log lock poisoned")
                            .within_budget("mutate-services internal error", Level::WARN, || {
                                tracing::warn!(%error, "admission failed; kube-apiserver applies the failure policy");
                            });
                    });
                    state
                        .metrics
                        .observe_internal_error("mutate-services", started.elapsed());
                    return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
                }
            }
        }
        Err(reason) => review::respond_invalid(reason),
    };
    finish(&state, "mutate-services", started, status, review).into_response()
}

async fn validate_services<A: Admission>(
    State(state): State<Arc<AppState<A>>>,
    body: Bytes,
) -> impl IntoResponse {
    let started = Instant::now();
    let (status, review) = review::respond(&body, |request| {
        span("validate-services", request).in_scope(|| state.admission.validate_service(request))
    });
    finish(&state, "validate-services", started, status, review)
}

async fn validate_endpoints<A: Admission>(
    State(state): State<Arc<AppState<A>>>,
    body: Bytes,
) -> impl IntoResponse {
    let started = Instant::now();
    let (status, review) = review::respond(&body, |request| {
        span("validate-endpoints", request).in_scope(|| state.admission.validate_endpoints(request))
    });
    finish(&state, "validate-endpoints", started, status, review)
}

fn span(webhook: &'static str, request: &Request) -> tracing::Span {
    tracing::info_span!(
        "admission",
        webhook,
        uid = %request.uid,
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = %review::object_name(request),
        operation = ?request.operation,
        dry_run = request.dry_run,
    )
}

fn finish<A>(
    state: &AppState<A>,
    webhook: &'static str,
    started: Instant,
    status: StatusCode,
    review: AdmissionReview<DynamicObject>,
) -> (StatusCode, Json<AdmissionReview<DynamicObject>>) {
    let response = review.response.as_ref();
    let allowed = response.is_some_and(|r| r.allowed);
    match response {
        Some(r) if !r.allowed => {
            state
                .denials
                .lock()
                .expect("denial log lock poisoned")
                .within_budget(webhook, Level::INFO, || {
                    tracing::info!(webhook, uid = %r.uid, reason = %r.result.message, "denied");
                });
        }
        Some(r) => tracing::debug!(webhook, uid = %r.uid, patched = r.patch.is_some(), "allowed"),
        None => {}
    }
    state.metrics.observe(webhook, allowed, started.elapsed());
    (status, Json(review))
}
