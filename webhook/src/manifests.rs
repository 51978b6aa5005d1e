//! The objects that install the webhook, generated from the code so they never drift from
//! it: the CRD, the webhook configurations and the RBAC the webhook needs.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::CustomResourceExt;
use kube::api::ObjectMeta;

use crate::server::paths;
use crate::state::RangeAllocation;

/// Name of both webhook configurations.
pub const CONFIGURATION_NAME: &str = "svcplane";
/// Namespaces labelled `svcplane.io/webhook: ignore` are never sent to the webhook, so it
/// cannot block its own recovery.
pub const IGNORE_LABEL: &str = "svcplane.io/webhook";

/// How the apiserver reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `https://host:port`, for a webhook outside the cluster network (a sidecar of the
    /// control plane, the local mode).
    Url(String),
    /// An in-cluster Service.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its port.
        port: i32,
    },
}

/// Where the webhook is and which CA signed its serving certificate.
#[derive(Clone, Debug)]
pub struct Registration {
    /// How the apiserver reaches it.
    pub endpoint: Endpoint,
    /// PEM of the CA that signed the serving certificate.
    pub ca_bundle: Vec<u8>,
    /// Users whose Endpoints/EndpointSlice writes are not sent for validation.
    pub trusted_endpoint_writers: Vec<String>,
    /// Whether to validate Services (the externalIPs allow-list).
    pub validate_services: bool,
}

impl Registration {
    fn client_config(&self, path: &str) -> WebhookClientConfig {
        let mut config = WebhookClientConfig {
            ca_bundle: Some(ByteString(self.ca_bundle.clone())),
            ..WebhookClientConfig::default()
        };
        match &self.endpoint {
            Endpoint::Url(base) => {
                config.url = Some(format!("{}{path}", base.trim_end_matches('/')))
            }
            Endpoint::Service {
                namespace,
                name,
                port,
            } => {
                config.service = Some(
                    k8s_openapi::api::admissionregistration::v1::ServiceReference {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        path: Some(path.to_string()),
                        port: Some(*port),
                    },
                );
            }
        }
        config
    }
}

fn rule(resources: &[&str], group: &str) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec!["v1".to_string()]),
        operations: Some(vec!["CREATE".to_string(), "UPDATE".to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        scope: Some("Namespaced".to_string()),
    }
}

fn not_ignored() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: IGNORE_LABEL.to_string(),
            operator: "NotIn".to_string(),
            values: Some(vec!["ignore".to_string()]),
        }]),
        ..LabelSelector::default()
    }
}

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "svcplane".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// The mutating configuration: allocation on Service create and update.
///
/// `failurePolicy: Ignore`: when no replica answers, the apiserver's own allocator still
/// allocates, and svcplane learns those values from the Service watch, so Services never
/// stop being created because svcplane is down.
pub fn mutating(registration: &Registration) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: metadata(CONFIGURATION_NAME),
        webhooks: Some(vec![MutatingWebhook {
            name: "allocate.services.svcplane.io".to_string(),
            client_config: registration.client_config(paths::MUTATE_SERVICES),
            rules: Some(vec![rule(&["services"], "")]),
            failure_policy: Some("Ignore".to_string()),
            match_policy: Some("Equivalent".to_string()),
            side_effects: "NoneOnDryRun".to_string(),
            timeout_seconds: Some(5),
            admission_review_versions: vec!["v1".to_string()],
            reinvocation_policy: Some("Never".to_string()),
            namespace_selector: Some(not_ignored()),
            ..MutatingWebhook::default()
        }]),
    }
}

/// The validating configuration: user-written Endpoints and EndpointSlices, and Services'
/// externalIPs when an allow-list is configured.
///
/// `failurePolicy: Fail` for endpoints: the check is a security boundary. Writes of the
/// endpoint controllers are excluded by a match condition, so a webhook outage never stops
/// Endpoints and EndpointSlices from following pods.
pub fn validating(registration: &Registration) -> ValidatingWebhookConfiguration {
    let trusted = registration
        .trusted_endpoint_writers
        .iter()
        .map(|user| format!("'{}'", user.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    let mut webhooks = vec![ValidatingWebhook {
        name: "endpoints.svcplane.io".to_string(),
        client_config: registration.client_config(paths::VALIDATE_ENDPOINTS),
        rules: Some(vec![
            rule(&["endpoints"], ""),
            rule(&["endpointslices"], "discovery.k8s.io"),
        ]),
        failure_policy: Some("Fail".to_string()),
        match_policy: Some("Equivalent".to_string()),
        side_effects: "None".to_string(),
        timeout_seconds: Some(5),
        admission_review_versions: vec!["v1".to_string()],
        namespace_selector: Some(not_ignored()),
        match_conditions: Some(vec![MatchCondition {
            name: "not-an-endpoint-controller".to_string(),
            expression: format!("!(request.userInfo.username in [{trusted}])"),
        }]),
        ..ValidatingWebhook::default()
    }];
    if registration.validate_services {
        webhooks.push(ValidatingWebhook {
            name: "services.svcplane.io".to_string(),
            client_config: registration.client_config(paths::VALIDATE_SERVICES),
            rules: Some(vec![rule(&["services"], "")]),
            failure_policy: Some("Fail".to_string()),
            match_policy: Some("Equivalent".to_string()),
            side_effects: "None".to_string(),
            timeout_seconds: Some(5),
            admission_review_versions: vec!["v1".to_string()],
            namespace_selector: Some(not_ignored()),
            ..ValidatingWebhook::default()
        });
    }
    ValidatingWebhookConfiguration {
        metadata: metadata(CONFIGURATION_NAME),
        webhooks: Some(webhooks),
    }
}

/// The `RangeAllocation` CRD.
pub fn crd() -> CustomResourceDefinition {
    RangeAllocation::crd()
}

/// What the webhook may do, and nothing more: its own state, reading Services and Pods,
/// and recording events.
pub fn cluster_role() -> ClusterRole {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    };
    ClusterRole {
        metadata: metadata("svcplane-webhook"),
        rules: Some(vec![
            rule(
                &["svcplane.io"],
                &["rangeallocations"],
                &["get", "list", "watch", "create", "update"],
            ),
            rule(&[""], &["services", "pods"], &["get", "list", "watch"]),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        ]),
        ..ClusterRole::default()
    }
}

/// The in-tree endpoint controllers' identities and svcplane's, trusted by default.
pub fn default_trusted_endpoint_writers() -> Vec<String> {
    [
        "system:kube-controller-manager",
        "system:serviceaccount:kube-system:endpoint-controller",
        "system:serviceaccount:kube-system:endpointslice-controller",
        "system:serviceaccount:kube-system:endpointslicemirroring-controller",
        "system:serviceaccount:svcplane-system:svcplane",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// What kube-apiserver needs to present a client certificate to the webhook, which
/// requires one when given `--client-ca-file`: an AdmissionConfiguration (its
/// `--admission-control-config-file`) pointing both webhook admission plugins at a
/// kubeconfig whose user, named after the webhook's host, holds the certificate.
#[derive(Clone, Debug)]
pub struct AdmissionClientConfig {
    /// The webhook's host as kube-apiserver calls it: `<service>.<namespace>.svc` for an
    /// in-cluster Service, `host:port` for a URL, or `*` for every webhook.
    pub webhook_host: String,
    /// The client certificate (PEM) kube-apiserver presents.
    pub client_certificate: std::path::PathBuf,
    /// Its private key (PEM).
    pub client_key: std::path::PathBuf,
    /// Where the kubeconfig below is written, as kube-apiserver reads it.
    pub kubeconfig_path: std::path::PathBuf,
}

impl AdmissionClientConfig {
    /// The kubeconfig: one user per webhook host, with the client certificate.
    pub fn kubeconfig(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "users": [{
                "name": self.webhook_host,
                "user": {
                    "client-certificate": self.client_certificate,
                    "client-key": self.client_key,
                },
            }],
        })
    }

    /// The AdmissionConfiguration (apiserver.config.k8s.io/v1).
    pub fn admission_configuration(&self) -> serde_json::Value {
        let plugin = |name: &str| {
            serde_json::json!({
                "name": name,
                "configuration": {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "WebhookAdmissionConfiguration",
                    "kubeConfigFile": self.kubeconfig_path,
                },
            })
        };
        serde_json::json!({
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [plugin("ValidatingAdmissionWebhook"), plugin("MutatingAdmissionWebhook")],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            endpoint: Endpoint::Url("https://127.0.0.1:9443/".to_string()),
            ca_bundle: b"-----BEGIN CERTIFICATE-----".to_vec(),
            trusted_endpoint_writers: default_trusted_endpoint_writers(),
            validate_services: false,
        }
    }

    #[test]
    fn the_mutating_webhook_points_at_the_allocation_route_and_fails_open() {
        let config = mutating(&registration());
        let hook = &config.webhooks.unwrap()[0];
        assert_eq!(
            hook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate/services")
        );
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(hook.side_effects, "NoneOnDryRun");
    }

    #[test]
    fn endpoint_controllers_are_excluded_by_a_match_condition() {
        let config = validating(&registration());
        let hooks = config.webhooks.unwrap();
        assert_eq!(
            hooks.len(),
            1,
            "Services are validated only with an allow-list"
        );
        let condition = &hooks[0].match_conditions.as_ref().unwrap()[0];
        assert!(
            condition
                .expression
                .starts_with("!(request.userInfo.username in ['system:kube-controller-manager', ")
        );
    }

    #[test]
    fn the_crd_is_cluster_scoped_and_named_after_the_kind() {
        let crd = crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("rangeallocations.svcplane.io")
        );
        assert_eq!(crd.spec.scope, "Cluster");
    }
}
