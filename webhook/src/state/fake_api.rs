//! A stand-in for kube-apiserver's `rangeallocations` resource, for unit tests of the
//! conflict paths (as kube-rs's controller-rs tests its reconciler against a mocked API):
//! GET, POST and PUT with resourceVersion compare-and-swap, a count of each, and
//! "another writer" changes that land just before a chosen PUT, so that it conflicts.
//! Everything else about the apiserver is the e2e suites' business.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;

use super::crd::RangeAllocation;

const PREFIX: &str = "/apis/svcplane.io/v1alpha1/rangeallocations";

/// A change another writer makes to an object.
pub type Interference = Box<dyn FnOnce(&mut RangeAllocation) + Send>;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, RangeAllocation>,
    version: u64,
    /// Per object, changes to land before its next PUTs (one per PUT).
    interferences: BTreeMap<String, VecDeque<Interference>>,
    /// Per object, statuses to answer its next PUTs with (the write is dropped).
    refusals: BTreeMap<String, VecDeque<StatusCode>>,
    gets: usize,
    puts: usize,
}

/// The fake resource, shared by the client it serves and the test.
#[derive(Clone, Default)]
pub struct FakeRanges(Arc<Mutex<State>>);

impl FakeRanges {
    /// A client whose requests this fake answers.
    pub fn client(&self) -> Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, std::convert::Infallible>(fake.serve(request).await) }
        });
        Client::new(service, "default")
    }

    /// Stores `object` as another writer would (a new resourceVersion).
    pub fn put_object(&self, mut object: RangeAllocation) {
        let mut state = self.0.lock().unwrap();
        state.version += 1;
        object.metadata.resource_version = Some(state.version.to_string());
        let name = object.metadata.name.clone().unwrap_or_default();
        state.objects.insert(name, object);
    }

    /// The stored object `name`.
    pub fn object(&self, name: &str) -> Option<RangeAllocation> {
        self.0.lock().unwrap().objects.get(name).cloned()
    }

    /// Lands `change` on object `name` just before its next PUT that has none yet.
    pub fn interfere(&self, name: &str, change: Interference) {
        let mut state = self.0.lock().unwrap();
        state
            .interferences
            .entry(name.to_string())
            .or_default()
            .push_back(change);
    }

    /// Answers the next PUT of object `name` with `code`, dropping the write, as an
    /// apiserver that is restarting would.
    pub fn refuse_next_put(&self, name: &str, code: StatusCode) {
        let mut state = self.0.lock().unwrap();
        state
            .refusals
            .entry(name.to_string())
            .or_default()
            .push_back(code);
    }

    /// GETs and PUTs served so far.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.0.lock().unwrap();
        (state.gets, state.puts)
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_string();
        let mut state = self.0.lock().unwrap();
        let name = path
            .strip_prefix(PREFIX)
            .map(|rest| rest.trim_start_matches('/').to_string());
        match (parts.method, name) {
            (Method::GET, Some(name)) if !name.is_empty() => {
                state.gets += 1;
                match state.objects.get(&name) {
                    Some(object) => json(StatusCode::OK, object),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            (Method::POST, Some(name)) if name.is_empty() => {
                let mut object: RangeAllocation = serde_json::from_slice(&bytes).unwrap();
                let name = object.metadata.name.clone().unwrap_or_default();
                if state.objects.contains_key(&name) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                state.version += 1;
                object.metadata.resource_version = Some(state.version.to_string());
                state.objects.insert(name, object.clone());
                json(StatusCode::CREATED, &object)
            }
            (Method::PUT, Some(name)) if !name.is_empty() => {
                state.puts += 1;
                if let Some(code) = state.refusals.get_mut(&name).and_then(VecDeque::pop_front) {
                    return status(code, "ServiceUnavailable");
                }
                let interference = state
                    .interferences
                    .get_mut(&name)
                    .and_then(VecDeque::pop_front);
                if let Some(change) = interference {
                    state.version += 1;
                    let version = state.version.to_string();
                    if let Some(stored) = state.objects.get_mut(&name) {
                        change(stored);
                        stored.metadata.resource_version = Some(version);
                    }
                }
                let mut object: RangeAllocation = serde_json::from_slice(&bytes).unwrap();
                let current = state
                    .objects
                    .get(&name)
                    .and_then(|o| o.metadata.resource_version.clone());
                if current.is_none() {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                }
                if object.metadata.resource_version != current {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                state.version += 1;
                object.metadata.resource_version = Some(state.version.to_string());
                state.objects.insert(name, object.clone());
                json(StatusCode::OK, &object)
            }
            (method, _) => panic!("the fake API does not serve {method} {path}"),
        }
    }
}

fn json(code: StatusCode, object: &RangeAllocation) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(object).unwrap()));
    *response.status_mut() = code;
    response
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": reason,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap()));
    *response.status_mut() = code;
    response
}
