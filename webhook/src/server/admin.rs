//! The plain-HTTP admin port: `/metrics`, `/livez`, `/readyz`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use plumbing::Readiness;
use prometheus_client::registry::Registry;

/// Whether the process still works: named checks its tasks mark failed (with a reason)
/// or ok. `/livez` fails while any check does, so that the kubelet restarts a process
/// whose store or watch is gone instead of leaving it answering without them.
#[derive(Clone, Debug, Default)]
pub struct Liveness(Arc<Mutex<BTreeMap<&'static str, Option<String>>>>);

impl Liveness {
    /// A check named `name`, passing until marked failed.
    pub fn check(&self, name: &'static str) -> LivenessCheck {
        self.0
            .lock()
            .expect("liveness lock poisoned")
            .insert(name, None);
        LivenessCheck {
            name,
            checks: self.clone(),
        }
    }

    /// The failing checks and why, by name.
    pub fn failures(&self) -> Vec<(&'static str, String)> {
        self.0
            .lock()
            .expect("liveness lock poisoned")
            .iter()
            .filter_map(|(name, failure)| Some((*name, failure.clone()?)))
            .collect()
    }
}

/// One named check of a [`Liveness`].
#[derive(Clone, Debug)]
pub struct LivenessCheck {
    name: &'static str,
    checks: Liveness,
}

impl LivenessCheck {
    /// Marks it passing.
    pub fn ok(&self) {
        self.set(None);
    }

    /// Marks it failing for `reason`.
    pub fn fail(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    fn set(&self, failure: Option<String>) {
        self.checks
            .0
            .lock()
            .expect("liveness lock poisoned")
            .insert(self.name, failure);
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
    liveness: Liveness,
}

/// The admin routes over a finished metrics registry.
pub fn router(registry: Arc<Registry>, readiness: Readiness, liveness: Liveness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AdminState {
            registry,
            readiness,
            liveness,
        })
}

async fn livez(State(state): State<AdminState>) -> impl IntoResponse {
    let failures = state.liveness.failures();
    if failures.is_empty() {
        return (StatusCode::OK, "ok".to_string());
    }
    let lines: Vec<String> = failures
        .iter()
        .map(|(name, reason)| format!("[-]{name} failed: {reason}"))
        .collect();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{}\nlivez check failed\n", lines.join("\n")),
    )
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics: {error}"),
        ),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} (state not loaded, pods not listed or caches not synced)",
                state.readiness.not_ready().join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn livez_fails_with_the_failing_checks_named_until_they_pass_again() {
        let liveness = Liveness::default();
        let router = router(
            Arc::new(Registry::default()),
            Readiness::default(),
            liveness.clone(),
        );
        let store = liveness.check("allocation-store");
        let watch = liveness.check("service-watch");
        assert_eq!(get(&router, "/livez").await, (StatusCode::OK, "ok".into()));

        store.fail("the allocation store stopped");
        watch.fail("the Service watch ended");
        let (status, body) = get(&router, "/livez").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body.starts_with("[-]allocation-store failed: the allocation store stopped\n[-]service-watch failed: the Service watch ended"),
            "{body}"
        );

        store.ok();
        watch.ok();
        assert_eq!(get(&router, "/livez").await.0, StatusCode::OK);
    }
}
