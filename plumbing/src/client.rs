//! A kube client with a step of svcplane's own around each of its requests (a wait for a
//! client-side rate, a bound on the answer's time), as a service in front of the client.

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;

/// What a step does with one request: sends it on the inner client, when and how it likes.
pub type Sent = BoxFuture<'static, kube::Result<Response<Body>>>;

/// `client` with every request going through `step`, which gets the inner client and the
/// request.
pub fn around<F>(client: &Client, step: F) -> Client
where
    F: Fn(Client, Request<Body>) -> Sent + Send + 'static,
{
    let inner = client.clone();
    let service = tower::service_fn(move |request| step(inner.clone(), request));
    Client::new(service, client.default_namespace())
}
