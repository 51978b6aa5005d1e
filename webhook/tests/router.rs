//! The admission router in-process, as kubewarden's policy-server tests its own: the
//! AdmissionReview fixtures of `tests/data/` (and generated ones) sent through
//! `webhook::server::router` with `tower::ServiceExt::oneshot`. Whatever the body, the
//! answer is a well-formed AdmissionReview (or a 413 for a body over the limit), never a
//! panic.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use allocator::{Allocators, ClusterIpAllocator, NodePortAllocator, PortRange};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionResponse;
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use webhook::review::{InternalError, Request, internal_error_of};
use webhook::runtime::pods::PodIpIndex;
use webhook::server::metrics::AdmissionMetrics;
use webhook::server::{Admission, MAX_REVIEW_BYTES, paths, router};
use webhook::services::mutate_service;
use webhook::services::validate_service;
use webhook::state::{InMemoryAllocation, UnconfirmedConfig};
use webhook::validate::{EndpointPolicy, ServiceCidrs, admit_endpoints};

/// Admission decisions for the router under test: the real pipeline, with in-memory
/// allocators in place of the store that persists through an apiserver.
struct Fixture {
    allocation: InMemoryAllocation,
    endpoint_policy: EndpointPolicy,
    pod_ips: PodIpIndex,
    allowed_external_ips: Option<Vec<IpNet>>,
    /// Makes mutation fail as a store that cannot be reached would.
    store_down: AtomicBool,
}

impl Fixture {
    fn new() -> Self {
        Self::with_pods_listed(true)
    }

    /// With the pod index fed as the Pod watch feeds it: one pod of namespace `other`, and
    /// the first list over (`listed`) or still running.
    fn with_pods_listed(listed: bool) -> Self {
        let pod_ips = PodIpIndex::default();
        pod_ips.relist_start();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "namespace": "other", "name": "web" },
            "spec": { "containers": [] },
            "status": { "podIPs": [{ "ip": "10.244.1.5" }] },
        }))
        .unwrap();
        pod_ips.apply(pod.into());
        if listed {
            pod_ips.relist_done();
        }
        let allocators = Allocators::new(
            vec![
                ClusterIpAllocator::new("10.96.0.0/12".parse().unwrap()),
                ClusterIpAllocator::new("fd00:10:96::/112".parse().unwrap()),
            ],
            NodePortAllocator::new(PortRange::default()),
        )
        .unwrap();
        Self {
            allocation: InMemoryAllocation::new(allocators, UnconfirmedConfig::default()),
            endpoint_policy: EndpointPolicy {
                service_cidrs: ServiceCidrs::fixed(vec![
                    "10.96.0.0/12".parse().unwrap(),
                    "fd00:10:96::/112".parse().unwrap(),
                ]),
                deny_foreign_pod_ips: true,
                trusted_writers: ["system:kube-controller-manager".to_string()].into(),
            },
            pod_ips,
            allowed_external_ips: Some(vec!["203.0.113.0/24".parse().unwrap()]),
            store_down: AtomicBool::new(false),
        }
    }
}

impl Admission for Fixture {
    async fn mutate_service(&self, request: &Request) -> Result<AdmissionResponse, InternalError> {
        if self.store_down.load(Ordering::Relaxed) {
            return Err(InternalError(
                "the allocation state could not be written".to_string(),
            ));
        }
        let response = mutate_service(request, &self.allocation).await;
        match internal_error_of(&response) {
            Some(error) => Err(error),
            None => Ok(response),
        }
    }

    fn validate_service(&self, request: &Request) -> AdmissionResponse {
        validate_service(request, self.allowed_external_ips.as_deref())
    }

    fn validate_endpoints(&self, request: &Request) -> AdmissionResponse {
        admit_endpoints(request, &self.endpoint_policy, &self.pod_ips)
    }
}

const ROUTES: [&str; 3] = [
    paths::MUTATE_SERVICES,
    paths::VALIDATE_SERVICES,
    paths::VALIDATE_ENDPOINTS,
];

struct Harness {
    router: Router,
    registry: Registry,
    fixture: Arc<Fixture>,
}

impl Harness {
    fn new() -> Self {
        Self::with(Fixture::new())
    }

    fn with(fixture: Fixture) -> Self {
        let mut registry = Registry::default();
        let metrics = AdmissionMetrics::register(&mut registry);
        let fixture = Arc::new(fixture);
        Self {
            router: router(Arc::clone(&fixture), metrics),
            registry,
            fixture,
        }
    }

    async fn post(&self, path: &str, body: impl Into<Body>) -> Answer {
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, body }
    }

    /// The sum of the samples of `metric` whose labels contain every one of `labels`.
    fn metric(&self, metric: &str, labels: &[&str]) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .filter(|line| line.starts_with(&format!("{metric}{{")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    /// The body as JSON, checked to be a well-formed AdmissionReview v1 response.
    fn review(&self) -> Result<Value, String> {
        let text = String::from_utf8_lossy(&self.body);
        let review: Value = serde_json::from_slice(&self.body)
            .map_err(|error| format!("the body is not JSON ({error}): {text}"))?;
        let response = &review["response"];
        let checks = [
            (review["apiVersion"] == "admission.k8s.io/v1", "apiVersion"),
            (review["kind"] == "AdmissionReview", "kind"),
            (review.get("request").is_none(), "no request echoed"),
            (response["uid"].is_string(), "response.uid"),
            (response["allowed"].is_boolean(), "response.allowed"),
        ];
        for (ok, what) in checks {
            if !ok {
                return Err(format!(
                    "not a well-formed AdmissionReview ({what}): {text}"
                ));
            }
        }
        if response.get("patch").is_some() && response["patchType"] != "JSONPatch" {
            return Err(format!("a patch without patchType JSONPatch: {text}"));
        }
        Ok(review)
    }

    /// The AdmissionResponse, after checking the whole review is well formed.
    fn response(&self) -> Value {
        match self.review() {
            Ok(review) => review["response"].clone(),
            Err(problem) => panic!("{problem}"),
        }
    }

    fn message(&self) -> String {
        self.response()["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    // Where cargo runs the test from: a shared target directory may hold this binary as
    // built from another checkout, whose path `env!` would give.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let path = dir.join("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn uid_of(review: &Value) -> &str {
    review["request"]["uid"].as_str().unwrap()
}

/// The JSON patch of a response. kube-rs writes the bytes as a JSON array of numbers,
/// which the apiserver's decoder accepts for a `[]byte` as well as base64.
fn patch_of(response: &Value) -> Vec<Value> {
    let bytes: Vec<u8> = response["patch"]
        .as_array()
        .expect("a patch")
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_service_create_is_allocated_and_its_uid_echoed() {
    let harness = Harness::new();
    let review = fixture_json("service-create.json");
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-create.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["uid"], uid_of(&review));
    assert_eq!(response["allowed"], true);
    let operations = patch_of(&response);
    let paths: Vec<&str> = operations
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/spec/clusterIP") && paths.contains(&"/spec/ports/0/nodePort"),
        "{operations:?}"
    );
    assert_eq!(
        harness.metric(
            "svcplane_admission_reviews_total",
            &["webhook=\"mutate-services\"", "allowed=\"true\""]
        ),
        1.0
    );
    assert_eq!(
        harness.metric(
            "svcplane_admission_handling_seconds_count",
            &["webhook=\"mutate-services\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn an_internal_error_is_http_500_so_the_failure_policy_applies() {
    let harness = Harness::new();
    harness.fixture.store_down.store(true, Ordering::Relaxed);
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-create.json"))
        .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    // No AdmissionReview: one that denies would be obeyed whatever the failure policy.
    assert!(answer.review().is_err());
    assert!(
        String::from_utf8_lossy(&answer.body).contains("could not be written"),
        "{:?}",
        answer.body
    );
    assert_eq!(
        harness.metric(
            "svcplane_admission_reviews_total",
            &["webhook=\"mutate-services\"", "allowed=\"error\""]
        ),
        1.0
    );

    harness.fixture.store_down.store(false, Ordering::Relaxed);
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-create.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], true);
}

#[tokio::test]
async fn a_delete_is_allowed_untouched() {
    let harness = Harness::new();
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-delete.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["uid"], "7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0002");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn bodies_that_are_not_admission_reviews_get_400_and_a_denial() {
    let harness = Harness::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", Vec::new(), "malformed AdmissionReview: EOF"),
        (
            "truncated JSON",
            fixture("malformed.json"),
            "malformed AdmissionReview: EOF while parsing a string",
        ),
        (
            "not JSON",
            b"\xff\xfe<html>".to_vec(),
            "malformed AdmissionReview: expected value",
        ),
        (
            "a Service, not a review",
            fixture("not-a-review.json"),
            "malformed AdmissionReview: ",
        ),
        (
            "a review without request",
            fixture("review-without-request.json"),
            "malformed AdmissionReview: it has no request",
        ),
        (
            "a request without uid",
            fixture("missing-uid.json"),
            "malformed AdmissionReview: missing field `uid`",
        ),
        (
            "an object that is not an object",
            fixture("object-not-an-object.json"),
            "malformed AdmissionReview: ",
        ),
        (
            "a review of kind Pod",
            fixture("wrong-kind-review.json"),
            "malformed AdmissionReview: ",
        ),
        (
            "JSON nested deeper than the parser allows",
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"object":{{"deep":{}{}}}}}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
            .into_bytes(),
            "malformed AdmissionReview: recursion limit exceeded",
        ),
    ];
    for route in ROUTES {
        for (what, body, message) in &cases {
            let answer = harness.post(route, body.clone()).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{route}: {what}");
            let response = answer.response();
            assert_eq!(response["allowed"], false, "{route}: {what}");
            assert_eq!(response["uid"], "", "{route}: {what}");
            assert_eq!(
                response["status"]["reason"], "InvalidRequest",
                "{route}: {what}"
            );
            assert!(
                answer.message().starts_with(message),
                "{route}: {what}: {:?} does not start with {message:?}",
                answer.message()
            );
        }
    }
    assert_eq!(
        harness.metric("svcplane_admission_reviews_total", &["allowed=\"false\""]),
        (ROUTES.len() * cases.len()) as f64,
        "every refused body is counted"
    );
}

#[tokio::test]
async fn an_object_that_does_not_convert_is_denied_with_the_reason() {
    let harness = Harness::new();
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-wrong-types.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["uid"], "7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0004");
    assert_eq!(response["allowed"], false);
    assert!(
        answer.message().starts_with(
            "the Service in the request is malformed: invalid type: string \"eighty\""
        ),
        "{}",
        answer.message()
    );

    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-bad-type.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(response["status"]["reason"], "Invalid");
    assert!(
        answer.message().starts_with(
            "Service \"web\" is invalid: spec.type: Unsupported value: \"Nodeport\": "
        ),
        "{}",
        answer.message()
    );
    // The details kube-apiserver's own refusal carries (NewInvalid in apimachinery).
    let details = &response["status"]["details"];
    assert_eq!(details["kind"], "Service");
    assert_eq!(details["name"], "web");
    assert_eq!(details["causes"][0]["reason"], "FieldValueNotSupported");
    assert_eq!(details["causes"][0]["field"], "spec.type");
    assert!(
        details["causes"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Unsupported value: \"Nodeport\": "),
        "{details}"
    );

    let answer = harness
        .post(
            paths::MUTATE_SERVICES,
            fixture("service-without-object.json"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], false);
    assert_eq!(answer.message(), "the request carries no Service");

    // The validating route has nothing to check without an object.
    let answer = harness
        .post(
            paths::VALIDATE_SERVICES,
            fixture("service-without-object.json"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], true);
}

#[tokio::test]
async fn a_pod_sent_to_the_endpoints_route_is_allowed_with_a_warning() {
    let harness = Harness::new();
    let answer = harness
        .post(paths::VALIDATE_ENDPOINTS, fixture("pod-create.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["uid"], "7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0010");
    assert_eq!(response["allowed"], true);
    assert_eq!(
        response["warnings"],
        json!(["svcplane does not validate Pod objects"])
    );

    // And a Pod sent to the Service routes is not a Service: denied with the reason.
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("pod-create.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], false);
    assert_eq!(
        answer.message(),
        "the Pod in the request is malformed: expected apiVersion v1 and kind Service, got \"v1\" and \"Pod\""
    );
}

#[tokio::test]
async fn user_written_endpoints_are_validated_by_field() {
    let harness = Harness::new();
    let answer = harness
        .post(
            paths::VALIDATE_ENDPOINTS,
            fixture("endpoints-loopback.json"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["uid"], "7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0007");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert!(
        answer.message().starts_with(
            "Endpoints \"external\" is invalid: subsets[0].addresses[1].ip: Invalid value: \"127.0.0.1\": "
        ),
        "{}",
        answer.message()
    );

    let answer = harness
        .post(
            paths::VALIDATE_ENDPOINTS,
            fixture("endpointslice-service-ip.json"),
        )
        .await;
    assert_eq!(answer.response()["allowed"], false);
    assert!(
        answer.message().contains(
            "endpoints[0].addresses[0]: Invalid value: \"10.96.0.10\": may not be in the service IP range 10.96.0.0/12"
        ),
        "{}",
        answer.message()
    );

    let answer = harness
        .post(
            paths::VALIDATE_ENDPOINTS,
            fixture("endpoints-external.json"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], true);
}

#[tokio::test]
async fn endpoints_get_a_503_denial_until_the_pods_are_listed() {
    let harness = Harness::with(Fixture::with_pods_listed(false));
    let answer = harness
        .post(
            paths::VALIDATE_ENDPOINTS,
            fixture("endpoints-external.json"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 503);
    assert_eq!(response["status"]["reason"], "ServiceUnavailable");
    assert_eq!(
        answer.message(),
        "svcplane's pod index is not synced yet, so 1 address(es) cannot be checked against other namespaces' pods; retry"
    );
    let answer = harness
        .post(
            paths::VALIDATE_ENDPOINTS,
            fixture("endpoints-loopback.json"),
        )
        .await;
    assert_eq!(
        answer.response()["status"]["code"],
        422,
        "what is wrong without the pods is refused at once"
    );
}

#[tokio::test]
async fn unicode_passes_through_and_is_quoted_in_denials() {
    let harness = Harness::new();
    let answer = harness
        .post(paths::VALIDATE_SERVICES, fixture("service-unicode.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = answer.response();
    assert_eq!(response["uid"], "7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0006");
    assert_eq!(response["allowed"], false);
    assert_eq!(
        answer.message(),
        "Service \"café-\" is invalid: spec.externalIPs[1]: Invalid value: \"١٩٨.٥١.١٠٠.١\": must be a valid IP address"
    );

    // Allocation refuses the port name before reserving anything, quoting it as
    // kube-apiserver's validation would.
    let answer = harness
        .post(paths::MUTATE_SERVICES, fixture("service-unicode.json"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], false);
    assert!(
        answer.message().starts_with(
            "Service \"café-\" is invalid: spec.ports[0].name: Invalid value: \"ℎ𝑡𝑡𝑝\""
        ),
        "{}",
        answer.message()
    );
}

/// A Service review carrying `padding` bytes in an annotation.
fn padded_review(padding: usize) -> Vec<u8> {
    let mut review = fixture_json("service-create.json");
    review["request"]["object"]["metadata"]["annotations"] =
        json!({ "padding": "ü".repeat(padding / 2) });
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test]
async fn a_review_of_megabytes_under_the_limit_is_answered() {
    let harness = Harness::new();
    let body = padded_review(2 * 1024 * 1024);
    assert!(body.len() > 2 * 1024 * 1024 && body.len() < MAX_REVIEW_BYTES);
    for route in ROUTES {
        let answer = harness.post(route, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{route}");
        let response = answer.response();
        assert_eq!(
            response["uid"], "7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0001",
            "{route}"
        );
    }

    // Many ports: more node ports than the range holds is a denial naming the field. A
    // request of its own (another uid): the same uid is answered as it was the first time.
    let mut review = fixture_json("service-create.json");
    review["request"]["uid"] = json!("7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0099");
    let ports: Vec<Value> = (1..=4000)
        .map(|port| json!({ "name": format!("p{port}"), "port": port, "protocol": "TCP" }))
        .collect();
    review["request"]["object"]["spec"]["ports"] = json!(ports);
    let answer = harness
        .post(paths::MUTATE_SERVICES, serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], false);
    assert!(
        answer.message().ends_with("range is full"),
        "{}",
        answer.message()
    );

    // Many endpoint addresses, one of them bad: found and named.
    let mut review = fixture_json("endpoints-external.json");
    let mut addresses: Vec<Value> = (0..60_000u32)
        .map(|i| json!({ "ip": format!("172.16.{}.{}", i / 250, i % 250 + 1) }))
        .collect();
    addresses[59_999] = json!({ "ip": "169.254.169.254" });
    review["request"]["object"]["subsets"][0]["addresses"] = json!(addresses);
    let answer = harness
        .post(
            paths::VALIDATE_ENDPOINTS,
            serde_json::to_vec(&review).unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.response()["allowed"], false);
    assert!(
        answer
            .message()
            .contains("subsets[0].addresses[59999].ip: Invalid value: \"169.254.169.254\""),
        "{}",
        answer.message()
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let harness = Harness::new();
    let body = padded_review(MAX_REVIEW_BYTES + 1024);
    for route in ROUTES {
        let answer = harness.post(route, body.clone()).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{route}");
    }

    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<Bytes, Infallible>> = body
        .chunks(64 * 1024)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let streamed = Body::from_stream(futures::stream::iter(chunks));
    let answer = harness.post(paths::MUTATE_SERVICES, streamed).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn other_methods_and_paths_are_refused_by_the_router() {
    let harness = Harness::new();
    let request = axum::http::Request::builder()
        .method(Method::GET)
        .uri(paths::MUTATE_SERVICES)
        .body(Body::empty())
        .unwrap();
    let response = harness.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let answer = harness
        .post("/mutate/pods", fixture("service-create.json"))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

// --- Properties: whatever arrives, a response and never a panic. ---

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Checks the answer to a body: a well-formed review with status 200 (echoing `uid`) or
/// 400 (a body that is not a review).
fn check(answer: &Answer, uid: Option<&str>) -> Result<(), TestCaseError> {
    let review = answer.review().map_err(TestCaseError::fail)?;
    match answer.status {
        StatusCode::OK => {
            if let Some(uid) = uid {
                prop_assert_eq!(review["response"]["uid"].as_str(), Some(uid));
            }
        }
        StatusCode::BAD_REQUEST => prop_assert_eq!(&review["response"]["allowed"], false),
        other => prop_assert!(false, "unexpected status {other}"),
    }
    Ok(())
}

/// Field names of Services, Endpoints and slices, so that generated objects reach the code
/// that reads them; and some arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "spec", "type", "ports", "port", "nodePort", "protocol", "name", "clusterIP",
            "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalIPs", "healthCheckNodePort",
            "externalTrafficPolicy", "allocateLoadBalancerNodePorts", "selector", "metadata",
            "generateName", "subsets", "addresses", "notReadyAddresses", "ip", "endpoints",
            "addressType", "apiVersion", "kind",
        ])
        .prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, 80, 30000, 32767, 32768, 65535, 65536, -1])
            .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "NodePort",
            "LoadBalancer",
            "ClusterIP",
            "ExternalName",
            "None",
            "Local",
            "Cluster",
            "IPv4",
            "IPv6",
            "SingleStack",
            "PreferDualStack",
            "RequireDualStack",
            "TCP",
            "UDP",
            "SCTP",
            "10.96.0.1",
            "10.96.0.10",
            "fd00:10:96::5",
            "127.0.0.1",
            "::",
            "224.0.0.1",
            "203.0.113.7",
            "",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,16}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A Service object shaped like the real thing, with values anywhere in their types.
fn service_object() -> impl Strategy<Value = Value> {
    let port = (
        prop::option::of(0i32..70_000),
        prop::option::of(prop::sample::select(vec![
            "TCP", "UDP", "SCTP", "tcp", "",
        ])),
        prop::option::of(prop_oneof![Just(-5i64), 0i64..70_000, Just(i64::MAX)]),
        prop::option::of("[a-z]{0,3}"),
    )
        .prop_map(|(port, protocol, node_port, name)| {
            json!({ "port": port, "protocol": protocol, "nodePort": node_port, "name": name })
        });
    (
        prop::option::of(prop::sample::select(vec![
            "ClusterIP",
            "NodePort",
            "LoadBalancer",
            "ExternalName",
            "nodeport",
        ])),
        prop::option::of(prop::collection::vec(leaf(), 0..3)),
        prop::option::of(prop::sample::select(vec![
            "SingleStack",
            "PreferDualStack",
            "RequireDualStack",
            "Dual",
        ])),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["IPv4", "IPv6", "IPv5"]),
            0..3,
        )),
        prop::collection::vec(port, 0..4),
        prop::option::of(leaf()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["Local", "Cluster", "Remote"])),
        prop::option::of(prop::collection::vec(leaf(), 0..3)),
    )
        .prop_map(
            |(kind, cluster_ips, policy, families, ports, health, allocate_lb, etp, external)| {
                json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": { "name": "generated" },
                    "spec": {
                        "type": kind,
                        "clusterIP": cluster_ips.as_ref().and_then(|ips| ips.first().cloned()),
                        "clusterIPs": cluster_ips,
                        "ipFamilyPolicy": policy,
                        "ipFamilies": families,
                        "ports": ports,
                        "healthCheckNodePort": health,
                        "allocateLoadBalancerNodePorts": allocate_lb,
                        "externalTrafficPolicy": etp,
                        "externalIPs": external,
                        "selector": { "app": "generated" },
                    }
                })
            },
        )
}

/// A valid review of `operation` around `object` (and `old`), as the apiserver sends it.
fn review_around(operation: &str, object: Value, old: Option<Value>, dry_run: bool) -> Vec<u8> {
    let mut review = fixture_json("service-create.json");
    review["request"]["operation"] = json!(operation);
    review["request"]["object"] = object;
    review["request"]["oldObject"] = old.unwrap_or(Value::Null);
    review["request"]["dryRun"] = json!(dry_run);
    serde_json::to_vec(&review).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_always_get_a_review(
        route in prop::sample::select(ROUTES.to_vec()),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let harness = Harness::new();
        let answer = runtime().block_on(harness.post(route, body));
        check(&answer, None)?;
    }

    #[test]
    fn corrupted_fixtures_always_get_a_review(
        route in prop::sample::select(ROUTES.to_vec()),
        name in prop::sample::select(vec![
            "service-create.json", "service-unicode.json", "endpoints-loopback.json",
            "endpointslice-service-ip.json", "service-delete.json",
        ]),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut body = fixture(name);
        for (at, byte) in flips {
            let at = at.index(body.len());
            body[at] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        let harness = Harness::new();
        let answer = runtime().block_on(harness.post(route, body));
        check(&answer, None)?;
    }

    #[test]
    fn arbitrary_json_bodies_always_get_a_review(
        route in prop::sample::select(ROUTES.to_vec()),
        body in json_value(),
    ) {
        let harness = Harness::new();
        let answer = runtime().block_on(harness.post(route, serde_json::to_vec(&body).unwrap()));
        check(&answer, None)?;
    }

    #[test]
    fn arbitrary_objects_in_a_valid_review_get_an_answer_with_the_uid(
        route in prop::sample::select(ROUTES.to_vec()),
        operation in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        object in prop_oneof![json_value(), service_object()],
        old in prop::option::of(prop_oneof![json_value(), service_object()]),
        dry_run in any::<bool>(),
    ) {
        let harness = Harness::new();
        let body = review_around(operation, object, old, dry_run);
        let answer = runtime().block_on(harness.post(route, body));
        check(&answer, Some("7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0001"))?;
    }

    #[test]
    fn generated_services_are_allocated_or_denied_with_a_field(
        object in service_object(),
        old in prop::option::of(service_object()),
    ) {
        let harness = Harness::new();
        let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
        let body = review_around(operation, object, old, false);
        let answer = runtime().block_on(harness.post(paths::MUTATE_SERVICES, body));
        check(&answer, Some("7f0b2a64-1c1e-4c59-9d3b-2f6f3b7f0001"))?;
        prop_assert_eq!(answer.status, StatusCode::OK);
        let response = answer.response();
        if response["allowed"] == false {
            let message = answer.message();
            prop_assert!(!message.is_empty());
        }
    }
}
