//! The webhook's own metrics: how many reviews it answered and how long each took.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one answered review.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The route: `mutate-services`, `validate-endpoints`, ...
    pub webhook: String,
    /// `true`, `false`, or `error` for a review answered HTTP 500 (no decision: the
    /// apiserver applied the failure policy).
    pub allowed: String,
}

/// Labels of a handling-time observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    /// The route.
    pub webhook: String,
}

/// Handling-time buckets: fine up to a millisecond, where the handling time is expected, with
/// an edge at exactly 1 ms (the goal), then coarse up to a second.
const HANDLING_BUCKETS: [f64; 20] = [
    25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 400e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3,
    10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0,
];

/// Admission metrics, registered under the `svcplane_admission` prefix.
#[derive(Clone)]
pub struct AdmissionMetrics {
    reviews: Family<ReviewLabels, Counter>,
    duration: Family<WebhookLabel, Histogram>,
}

impl AdmissionMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let reviews = Family::<ReviewLabels, Counter>::default();
        let duration = Family::<WebhookLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(HANDLING_BUCKETS.iter().copied())
        });
        let sub = registry.sub_registry_with_prefix("svcplane_admission");
        sub.register("reviews", "AdmissionReviews answered", reviews.clone());
        sub.register(
            "handling_seconds",
            "Time spent answering one AdmissionReview, from body received to response encoded",
            duration.clone(),
        );
        Self { reviews, duration }
    }

    /// Records one answered review.
    pub fn observe(&self, webhook: &str, allowed: bool, elapsed: Duration) {
        self.record(webhook, &allowed.to_string(), elapsed);
    }

    /// Records a review answered HTTP 500: no decision.
    pub fn observe_internal_error(&self, webhook: &str, elapsed: Duration) {
        self.record(webhook, "error", elapsed);
    }

    fn record(&self, webhook: &str, allowed: &str, elapsed: Duration) {
        self.reviews
            .get_or_create(&ReviewLabels {
                webhook: webhook.to_string(),
                allowed: allowed.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}
