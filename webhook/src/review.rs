//! AdmissionReview in and out, and denials worded the way kube-apiserver words its own
//! validation errors, so a kubectl user reads which field is wrong and why.

use std::fmt;

use axum::http::StatusCode;
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND,
};
use kube::core::response::{StatusCause, StatusDetails, StatusSummary};

/// An admission request with its object left untyped until a handler knows its kind.
pub type Request = AdmissionRequest<DynamicObject>;

/// A problem with one field of the object under admission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, as kubectl shows it: `spec.ports[1].nodePort`.
    pub field: String,
    /// What kind of problem, with the offending value where there is one to show.
    pub kind: FieldErrorKind,
    /// Why it is refused, in words a user can act on (may be empty when the kind says it).
    pub detail: String,
}

/// The kinds of field errors kube-apiserver reports, worded as it words them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Invalid value: <value>`; the value as kube-apiserver prints it (quoted strings).
    Invalid(String),
    /// `Forbidden`.
    Forbidden,
    /// `Required value`.
    Required,
    /// `Duplicate value: <value>`.
    Duplicate(String),
    /// `Unsupported value: <value>`, the detail listing the supported values.
    NotSupported(String),
}

impl FieldError {
    /// `field: Invalid value: "value": detail`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid(format!("{:?}", value.to_string())),
            detail: detail.into(),
        }
    }

    /// `field: Invalid value: 0: detail`, for a number (printed without quotes).
    pub fn invalid_number(field: impl Into<String>, value: i64, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value.to_string()),
            detail: detail.into(),
        }
    }

    /// `field: Invalid value: ["a","b"]: detail`, for a list of strings (printed as JSON,
    /// as kube-apiserver prints a list).
    pub fn invalid_list(
        field: impl Into<String>,
        values: &[String],
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid(serde_json::to_string(values).unwrap_or_default()),
            detail: detail.into(),
        }
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }

    /// `field: Required value`.
    pub fn required(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: String::new(),
        }
    }

    /// `field: Unsupported value: "value": supported values: "a", "b"` (`field.NotSupported`
    /// in apimachinery, the supported values in the order given).
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(format!("{value:?}")),
            detail: format!("supported values: {}", supported.join(", ")),
        }
    }

    /// `field: Duplicate value: value`, `value` as kube-apiserver prints it.
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Duplicate(value.into()),
            detail: String::new(),
        }
    }
}

impl FieldError {
    /// The error without its field, as kube-apiserver writes it in a status cause
    /// (`ErrorBody` in apimachinery's `field` package).
    pub fn body(&self) -> String {
        let head = match &self.kind {
            FieldErrorKind::Invalid(value) => format!("Invalid value: {value}"),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Duplicate(value) => format!("Duplicate value: {value}"),
            FieldErrorKind::NotSupported(value) => format!("Unsupported value: {value}"),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }

    /// The cause type kube-apiserver gives this error in a status.
    pub fn cause_type(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::NotSupported(_) => "FieldValueNotSupported",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Decodes an AdmissionReview body into its request. Only `admission.k8s.io/v1` is
/// accepted: it is the one version the webhook configurations list, and the response
/// repeats the request's apiVersion and kind, so anything else would get an answer that is
/// not an AdmissionReview.
pub fn decode(body: &[u8]) -> Result<Request, String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|error| format!("malformed AdmissionReview: {error}"))?;
    let types = &review.types;
    if types.api_version != META_API_VERSION_V1 || types.kind != META_KIND {
        return Err(format!(
            "malformed AdmissionReview: expected apiVersion {META_API_VERSION_V1} and kind {META_KIND}, got {:?} and {:?}",
            types.api_version, types.kind
        ));
    }
    review
        .try_into()
        .map_err(|_| "malformed AdmissionReview: it has no request".to_string())
}

/// Answers an AdmissionReview body with `admit`'s response. A body that is not an
/// AdmissionReview gets HTTP 400 and a review that denies with the reason.
pub fn respond(
    body: &[u8],
    admit: impl FnOnce(&Request) -> AdmissionResponse,
) -> (StatusCode, AdmissionReview<DynamicObject>) {
    match decode(body) {
        Ok(request) => (StatusCode::OK, admit(&request).into_review()),
        Err(reason) => respond_invalid(reason),
    }
}

/// The answer to a body that is not an AdmissionReview: HTTP 400 and a review that denies
/// with the reason.
pub fn respond_invalid(reason: String) -> (StatusCode, AdmissionReview<DynamicObject>) {
    tracing::warn!(%reason, "refused a request that is not an AdmissionReview");
    (
        StatusCode::BAD_REQUEST,
        AdmissionResponse::invalid(reason).into_review(),
    )
}

/// Denies `request` as kube-apiserver refuses an invalid object (`NewInvalid` in
/// apimachinery's `api/errors`): HTTP 422, reason `Invalid`, message
/// `<Kind> "<name>" is invalid: <field errors>`, and details naming the kind, the object
/// and one cause per field error.
pub fn deny_invalid(request: &Request, errors: &[FieldError]) -> AdmissionResponse {
    let kind = &request.kind.kind;
    let group = &request.kind.group;
    // schema.GroupKind's String(): the kind alone for the core group.
    let qualified_kind = if group.is_empty() {
        kind.clone()
    } else {
        format!("{kind}.{group}")
    };
    let name = object_name(request);
    let causes = match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut response = AdmissionResponse::from(request)
        .deny(format!("{qualified_kind} {name:?} is invalid: {causes}"));
    response.result.code = StatusCode::UNPROCESSABLE_ENTITY.as_u16();
    response.result.reason = "Invalid".to_string();
    response.result.status = Some(StatusSummary::Failure);
    response.result.details = Some(StatusDetails {
        name,
        group: group.clone(),
        kind: kind.clone(),
        uid: String::new(),
        causes: errors
            .iter()
            .map(|error| StatusCause {
                reason: error.cause_type().to_string(),
                message: error.body(),
                field: error.field.clone(),
            })
            .collect(),
        retry_after_seconds: 0,
    });
    response
}

/// Admission could not decide for a reason of svcplane's own (the allocation state could
/// not be read or written, the store stopped). The server answers it with HTTP 500 and no
/// AdmissionReview, so that kube-apiserver applies the webhook's failurePolicy: a denial
/// would refuse every Service create for as long as the fault lasts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InternalError(pub String);

/// Marks `response` as not a decision: admission failed for `message`, an internal reason.
/// [`internal_error_of`] finds it again; the server turns it into HTTP 500.
pub fn internal_error(response: AdmissionResponse, message: &str) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = StatusCode::INTERNAL_SERVER_ERROR.as_u16();
    response.result.reason = INTERNAL_ERROR_REASON.to_string();
    response.result.status = Some(StatusSummary::Failure);
    response
}

/// The internal error [`internal_error`] marked `response` with, if any.
pub fn internal_error_of(response: &AdmissionResponse) -> Option<InternalError> {
    let result = &response.result;
    (!response.allowed
        && result.code == StatusCode::INTERNAL_SERVER_ERROR.as_u16()
        && result.reason == INTERNAL_ERROR_REASON)
        .then(|| InternalError(result.message.clone()))
}

const INTERNAL_ERROR_REASON: &str = "InternalError";

/// The name of the object under admission; for a create with `generateName`, that prefix.
pub fn object_name(request: &Request) -> String {
    if !request.name.is_empty() {
        return request.name.clone();
    }
    request
        .object
        .as_ref()
        .and_then(|o| o.metadata.generate_name.clone())
        .unwrap_or_default()
}

/// Converts the request's object to `K`; `Err` explains what is missing or malformed.
pub fn typed_object<K: TypedObject>(request: &Request) -> Result<Option<K>, String> {
    request
        .object
        .as_ref()
        .map(|object| {
            typed(object).map_err(|error| {
                format!(
                    "the {} in the request is malformed: {error}",
                    request.kind.kind
                )
            })
        })
        .transpose()
}

/// Converts the request's old object (updates) to `K`.
pub fn typed_old_object<K: TypedObject>(request: &Request) -> Result<Option<K>, String> {
    request
        .old_object
        .as_ref()
        .map(|object| {
            typed(object).map_err(|error| {
                format!(
                    "the old {} in the request is malformed: {error}",
                    request.kind.kind
                )
            })
        })
        .transpose()
}

/// What [`typed_object`] converts to: a Kubernetes object with standard metadata.
pub trait TypedObject:
    serde::de::DeserializeOwned
    + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
{
}

impl<K> TypedObject for K where
    K: serde::de::DeserializeOwned
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
{
}

/// `object` as a `K`: its fields other than the metadata read straight from the decoded
/// JSON, its metadata (managedFields and all, already typed) moved over as it is, instead
/// of a round trip of the whole object through a JSON tree.
fn typed<K: TypedObject>(object: &DynamicObject) -> serde_json::Result<K> {
    use serde::de::Error;
    if let Some(types) = &object.types
        && (types.api_version != K::API_VERSION || types.kind != K::KIND)
    {
        return Err(serde_json::Error::custom(format!(
            "expected apiVersion {} and kind {}, got {:?} and {:?}",
            K::API_VERSION,
            K::KIND,
            types.api_version,
            types.kind
        )));
    }
    // An object built in code (not decoded) may have no fields besides its metadata.
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let fields = if object.data.is_null() {
        &empty
    } else {
        &object.data
    };
    let mut typed = K::deserialize(fields)?;
    *typed.metadata_mut() = object.metadata.clone();
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct conversion gives what a round trip of the whole object through JSON gave.
    #[test]
    fn a_typed_object_equals_the_json_round_trip() {
        let body = include_bytes!("../tests/data/service-create.json");
        let mut review: serde_json::Value = serde_json::from_slice(body).unwrap();
        // With managedFields, as kube-apiserver sends them.
        review["request"]["object"]["metadata"]["managedFields"] = serde_json::json!([{
            "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": { "f:spec": { "f:ports": {} } }
        }]);
        let request = decode(&serde_json::to_vec(&review).unwrap()).unwrap();
        let direct: k8s_openapi::api::core::v1::Service = typed_object(&request).unwrap().unwrap();
        let object = request.object.as_ref().unwrap();
        let round_trip: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::to_value(object).unwrap()).unwrap();
        assert_eq!(direct, round_trip);
        assert!(direct.metadata.managed_fields.is_some() && direct.spec.is_some());
    }

    #[test]
    fn field_errors_read_like_apiserver_validation() {
        assert_eq!(
            FieldError::invalid(
                "spec.ports[1].nodePort",
                30080,
                "provided port is already allocated"
            )
            .to_string(),
            "spec.ports[1].nodePort: Invalid value: \"30080\": provided port is already allocated"
        );
        assert_eq!(
            FieldError::forbidden("spec.externalIPs", "externalIPs are not allowed").to_string(),
            "spec.externalIPs: Forbidden: externalIPs are not allowed"
        );
    }

    #[test]
    fn a_denial_of_a_grouped_kind_names_the_group_and_lists_each_cause() {
        let request: Request = serde_json::from_value(serde_json::json!({
            "uid": "u",
            "kind": { "group": "discovery.k8s.io", "version": "v1", "kind": "EndpointSlice" },
            "resource": { "group": "discovery.k8s.io", "version": "v1", "resource": "endpointslices" },
            "name": "web-abc",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {},
        }))
        .unwrap();
        let errors = [
            FieldError::invalid(
                "endpoints[0].addresses[0]",
                "127.0.0.1",
                "may not be in the loopback range",
            ),
            FieldError::required("addressType"),
        ];
        let response = deny_invalid(&request, &errors);
        assert_eq!(
            response.result.message,
            "EndpointSlice.discovery.k8s.io \"web-abc\" is invalid: [endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range, addressType: Required value]"
        );
        let details = response.result.details.unwrap();
        assert_eq!(
            (
                details.group.as_str(),
                details.kind.as_str(),
                details.name.as_str()
            ),
            ("discovery.k8s.io", "EndpointSlice", "web-abc")
        );
        let causes: Vec<(&str, &str, &str)> = details
            .causes
            .iter()
            .map(|c| (c.reason.as_str(), c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            causes,
            [
                (
                    "FieldValueInvalid",
                    "endpoints[0].addresses[0]",
                    "Invalid value: \"127.0.0.1\": may not be in the loopback range"
                ),
                ("FieldValueRequired", "addressType", "Required value"),
            ]
        );
    }

    #[test]
    fn required_duplicate_and_numeric_values_read_like_apiserver_validation() {
        assert_eq!(
            FieldError::required("spec.ports[0].name").to_string(),
            "spec.ports[0].name: Required value"
        );
        assert_eq!(
            FieldError::duplicate("spec.ports[1].name", "\"http\"").to_string(),
            "spec.ports[1].name: Duplicate value: \"http\""
        );
        assert_eq!(
            FieldError::invalid_number(
                "spec.ports[0].port",
                0,
                "must be between 1 and 65535, inclusive"
            )
            .to_string(),
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
    }

    #[test]
    fn only_v1_admission_reviews_are_decoded() {
        let review = |api_version: &str, kind: &str| {
            serde_json::json!({
                "apiVersion": api_version,
                "kind": kind,
                "request": {
                    "uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
                    "kind": { "group": "", "version": "v1", "kind": "Service" },
                    "resource": { "group": "", "version": "v1", "resource": "services" },
                    "operation": "CREATE",
                    "userInfo": {},
                }
            })
            .to_string()
        };
        let request = decode(review("admission.k8s.io/v1", "AdmissionReview").as_bytes()).unwrap();
        assert_eq!(request.types.kind, "AdmissionReview");
        assert_eq!(
            decode(review("v1", "Pod").as_bytes()).unwrap_err(),
            "malformed AdmissionReview: expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got \"v1\" and \"Pod\""
        );
        assert!(decode(review("admission.k8s.io/v1beta1", "AdmissionReview").as_bytes()).is_err());
    }

    #[test]
    fn internal_errors_are_told_apart_from_denials() {
        let response = AdmissionResponse::invalid("x");
        assert_eq!(internal_error_of(&response), None);
        let marked = internal_error(response, "the allocation state is unreachable");
        assert_eq!(
            internal_error_of(&marked),
            Some(InternalError(
                "the allocation state is unreachable".to_string()
            ))
        );
    }

    #[test]
    fn garbage_gets_a_well_formed_denial() {
        let (status, review) = respond(b"{not json", |_| unreachable!());
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let response = review.response.unwrap();
        assert!(!response.allowed);
        assert!(
            response
                .result
                .message
                .starts_with("malformed AdmissionReview")
        );
    }
}
