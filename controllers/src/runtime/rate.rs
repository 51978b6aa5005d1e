//! Each controller's client-side request rate, as kube-controller-manager's
//! `--kube-api-qps` and `--kube-api-burst` set it: every controller has a client of its own
//! with a token bucket of `burst` tokens refilled at `qps` per second, and a request waits for
//! its token. The bucket is the pure [`TokenBucket`]; [`limited`] puts one in front of a
//! client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::time::Instant;

use super::metrics::Metrics;

/// A client-side request rate: `burst` requests at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRate {
    interval: Duration,
    burst: u32,
}

impl ClientRate {
    /// The rate `--kube-api-qps` and `--kube-api-burst` give; `None` when `qps` is 0 (no
    /// client-side limit). A `qps` below 0 or not finite, or a `burst` of 0 with a limit, is
    /// refused with the message to show.
    pub fn from_flags(qps: f64, burst: u32) -> Result<Option<Self>, String> {
        if !qps.is_finite() || qps < 0.0 {
            return Err(format!(
                "--kube-api-qps must be 0 (no limit) or above, not {qps}"
            ));
        }
        if qps == 0.0 {
            return Ok(None);
        }
        if burst == 0 {
            return Err("--kube-api-burst must be at least 1 with a --kube-api-qps".into());
        }
        let interval = Duration::try_from_secs_f64(1.0 / qps)
            .map_err(|_| format!("--kube-api-qps {qps} is too small to be a rate"))?;
        Ok(Some(ClientRate { interval, burst }))
    }
}

/// A token bucket kept as the time it is full again (the generic cell rate algorithm): no
/// timer runs, a request asks [`TokenBucket::reserve`] how long to wait.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: ClientRate,
    /// When the bucket, as reserved so far, holds `burst` tokens again; `None` before the
    /// first request (full).
    full_at: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: ClientRate) -> Self {
        TokenBucket {
            rate,
            full_at: None,
        }
    }

    /// Takes a token for a request made at `now`: how long it waits for it. Tokens are
    /// reserved in order, so requests that must wait leave one `interval` apart; an idle
    /// bucket fills up to `burst`, no further.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let ClientRate { interval, burst } = self.rate;
        let full_at = self.full_at.map_or(now, |at| at.max(now)) + interval;
        self.full_at = Some(full_at);
        full_at.saturating_duration_since(now + interval * burst)
    }
}

/// `client` with each request waiting for a token of `rate`, the wait observed as
/// `controller`'s in the metrics; `client` itself when there is no rate.
pub(crate) fn limited(
    client: &Client,
    rate: Option<ClientRate>,
    controller: &'static str,
    metrics: &Arc<Metrics>,
) -> Client {
    let Some(rate) = rate else {
        return client.clone();
    };
    let bucket = Arc::new(Mutex::new(TokenBucket::new(rate)));
    let metrics = metrics.clone();
    plumbing::client::around(client, move |client, request| {
        let wait = bucket
            .lock()
            .expect("the token bucket's lock is never poisoned")
            .reserve(Instant::now());
        metrics.rate_limited(controller, wait);
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            client.send(request).await
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    fn bucket(qps: f64, burst: u32) -> TokenBucket {
        TokenBucket::new(ClientRate::from_flags(qps, burst).unwrap().unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_lets_burst_requests_through_then_one_per_interval() {
        let mut bucket = bucket(20.0, 3);
        let now = Instant::now();
        let waits: Vec<_> = (0..6).map(|_| bucket.reserve(now)).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(50), ms(100), ms(150)]);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_no_more_than_burst() {
        let mut bucket = bucket(10.0, 2);
        let start = Instant::now();
        assert_eq!(bucket.reserve(start), ms(0));
        assert_eq!(bucket.reserve(start), ms(0));
        // One token back after one interval, not two.
        assert_eq!(bucket.reserve(start + ms(100)), ms(0));
        assert_eq!(bucket.reserve(start + ms(100)), ms(100));
        // Idle for long: full again, with burst tokens only.
        let later = start + Duration::from_secs(60);
        assert_eq!(bucket.reserve(later), ms(0));
        assert_eq!(bucket.reserve(later), ms(0));
        assert_eq!(bucket.reserve(later), ms(100));
    }

    #[test]
    fn requests_that_wait_keep_their_order() {
        let mut bucket = bucket(2.0, 1);
        let start = Instant::now();
        assert_eq!(bucket.reserve(start), ms(0));
        // Asked 100 ms apart, they leave 500 ms apart, in the order asked.
        assert_eq!(bucket.reserve(start + ms(100)), ms(400));
        assert_eq!(bucket.reserve(start + ms(200)), ms(800));
        assert_eq!(bucket.reserve(start + ms(1500)), ms(0));
    }

    #[test]
    fn the_flags_give_no_limit_at_zero_and_refuse_what_cannot_be_a_rate() {
        assert_eq!(ClientRate::from_flags(0.0, 30), Ok(None));
        assert_eq!(
            ClientRate::from_flags(0.5, 1),
            Ok(Some(ClientRate {
                interval: Duration::from_secs(2),
                burst: 1
            }))
        );
        for qps in [-1.0, f64::NAN, f64::INFINITY, 1e-300] {
            let error = ClientRate::from_flags(qps, 30).unwrap_err();
            assert!(error.contains("--kube-api-qps"), "{error}");
        }
        let error = ClientRate::from_flags(20.0, 0).unwrap_err();
        assert!(error.contains("--kube-api-burst"), "{error}");
    }

    /// Through a real kube client (its service stack, the Buffer in front of it): the
    /// requests past the burst are sent when their tokens are due, one interval apart.
    #[tokio::test(start_paused = true)]
    async fn a_limited_client_sends_past_the_burst_at_the_rate() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recorder = {
            let sent = sent.clone();
            tower::service_fn(move |_: Request<Body>| {
                let sent = sent.clone();
                async move {
                    sent.lock().unwrap().push(Instant::now());
                    Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
                }
            })
        };
        let base = Client::new(recorder, "default");
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::register(
            &mut registry,
            crate::runtime::EnabledControllers::default(),
        ));
        let rate = ClientRate::from_flags(10.0, 2).unwrap();
        let client = limited(&base, rate, "endpoints", &metrics);
        let start = Instant::now();
        let requests = (0..4).map(|_| {
            let client = client.clone();
            async move {
                client
                    .send(Request::get("/api").body(Body::empty()).unwrap())
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(requests).await;
        let offsets: Vec<_> = sent.lock().unwrap().iter().map(|t| *t - start).collect();
        assert_eq!(offsets, [ms(0), ms(0), ms(100), ms(200)]);
    }
}
