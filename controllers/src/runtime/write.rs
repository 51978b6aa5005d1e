//! Creates and updates whose response is read for its metadata only.
//!
//! The apiserver answers a write with the whole object, which for a full slice or a large
//! Endpoints object is as long as what was sent. The controllers need only its new name (when
//! generated), uid, resourceVersion and generation: the rest is what they sent (defaults
//! aside, which no endpoint identity depends on), and the watch brings the stored object to
//! the caches anyway. Requests and errors are those of `kube::Api`'s `create` and `replace`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::core::Request;
use kube::{Client, Resource};
use serde::{Deserialize, Serialize};

/// A write's response, read for its metadata; the rest is stepped over unbuilt.
#[derive(Deserialize)]
struct Written {
    metadata: ObjectMeta,
}

fn request<K: Resource<DynamicType = ()>>(namespace: &str) -> Request {
    Request::new(K::url_path(&(), Some(namespace)))
}

/// Sends `object` in the request `build` makes of its JSON; `verb` names the request in the
/// client's traces, as `kube::Api` does.
async fn send<K: Serialize>(
    client: &Client,
    object: &K,
    verb: &'static str,
    build: impl FnOnce(Vec<u8>) -> Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> kube::Result<ObjectMeta> {
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut http = build(body).map_err(kube::Error::BuildRequest)?;
    http.extensions_mut().insert(verb);
    Ok(client.request::<Written>(http).await?.metadata)
}

/// Creates `object` in `namespace`; returns the metadata it was stored with.
pub(super) async fn create<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> kube::Result<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let request = request::<K>(namespace);
    send(client, object, "create", |body| {
        request.create(&PostParams::default(), body)
    })
    .await
}

/// Replaces the object named `name` in `namespace` with `object` (conditional on its
/// resourceVersion, if set); returns the metadata it was stored with.
pub(super) async fn replace<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    object: &K,
) -> kube::Result<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let request = request::<K>(namespace);
    send(client, object, "replace", |body| {
        request.replace(name, &PostParams::default(), body)
    })
    .await
}
