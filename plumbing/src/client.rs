//! A kube client with a step of svcplane's own around each of its requests (a wait for a
//! client-side rate, a bound on the answer's time), as a service in front of the client.

use std::task::{Context, Poll};

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
    F: Fn(Client, Request<Body>) -> Sent + Clone + Send + 'static,
{
    let service = Around {
        client: client.clone(),
        step,
    };
    Client::new(service, client.default_namespace())
}

#[derive(Clone)]
struct Around<F> {
    client: Client,
    step: F,
}

impl<F> tower::Service<Request<Body>> for Around<F>
where
    F: Fn(Client, Request<Body>) -> Sent,
{
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Sent;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        (self.step)(self.client.clone(), request)
    }
}
