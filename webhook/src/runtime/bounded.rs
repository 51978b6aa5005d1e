//! A client whose every request gets its answer within a bound, or fails. The allocation
//! store's actor answers every admission of its replica one batch after another: a call to
//! kube-apiserver that hangs (a dropped connection, an overloaded apiserver, the client's
//! own retries of 429 answers, which honour Retry-After) would hold all of them. Bounded,
//! the call fails, and the store's own retries and the admissions' failure policy take over.

use std::time::Duration;

use kube::Client;

/// How long one request of the allocation store may take, retries included: a tenth of
/// that is already slow for reading or writing a range object, and an admission waits 4 s.
pub const STORE_REQUEST_LIMIT: Duration = Duration::from_secs(3);

/// `client` with each request failing when no answer came within `limit`.
pub fn bounded(client: &Client, limit: Duration) -> Client {
    plumbing::client::around(client, move |client, request| {
        Box::pin(async move {
            tokio::time::timeout(limit, client.send(request))
                .await
                .unwrap_or_else(|_| {
                    let error = format!("kube-apiserver gave no answer within {limit:?}");
                    Err(kube::Error::Service(error.into()))
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, Response};
    use kube::client::Body;

    /// A request the server never answers fails at the bound (on tokio's paused clock);
    /// one answered in time goes through.
    #[tokio::test(start_paused = true)]
    async fn a_request_never_answered_fails_at_the_bound() {
        let server = tower::service_fn(|request: Request<Body>| async move {
            if request.uri().path() == "/never" {
                std::future::pending::<()>().await;
            }
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        });
        let client = bounded(&Client::new(server, "default"), Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        let error = client
            .send(Request::get("/never").body(Body::empty()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(error.to_string().contains("no answer within 3s"), "{error}");
        client
            .send(Request::get("/api").body(Body::empty()).unwrap())
            .await
            .unwrap();
    }
}
