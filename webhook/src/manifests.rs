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
use crate::validate::endpoints::{APISERVER_USER, KUBERNETES_SERVICE};

/// Name of both webhook configurations.
pub const CONFIGURATION_NAME: &str = "svcplane";
/// The namespace svcplane is installed into unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "svcplane-system";
/// The ServiceAccount svcplane runs as unless told otherwise.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "svcplane";
/// The label kube-apiserver sets on every namespace to its name; no one can change it, so a
/// namespace selector on it cannot be met by relabelling a namespace.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

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
    /// svcplane's own namespace: the only one never sent to the webhooks, so that they
    /// cannot block their own recovery.
    pub namespace: String,
    /// PEM of the CA that signed the serving certificate.
    pub ca_bundle: Vec<u8>,
    /// Users whose Endpoints/EndpointSlice writes are not sent for validation: give the
    /// process's list ([`trusted_endpoint_writers`] unless configured otherwise).
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

/// Every namespace but svcplane's own. Selected by the immutable name label: a label users
/// may set would let any namespace admin switch the checks off for their namespace.
fn not_svcplanes_namespace(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.to_string(),
            operator: "NotIn".to_string(),
            values: Some(vec![namespace.to_string()]),
        }]),
        ..LabelSelector::default()
    }
}

/// `text` as a CEL string literal.
fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The match conditions of the endpoint validation: writes of the trusted users, and
/// kube-apiserver's own reconciliation of the `kubernetes` Service's endpoints, are never
/// sent (the latter must not stop when svcplane is down). `admit_endpoints` skips the same.
fn endpoint_match_conditions(trusted_writers: &[String]) -> Vec<MatchCondition> {
    let trusted = trusted_writers
        .iter()
        .map(|user| cel_string(user))
        .collect::<Vec<_>>()
        .join(", ");
    let (namespace, name) = KUBERNETES_SERVICE;
    vec![
        MatchCondition {
            name: "not-an-endpoint-controller".to_string(),
            expression: format!("!(request.userInfo.username in [{trusted}])"),
        },
        MatchCondition {
            name: "not-the-apiservers-own-endpoints".to_string(),
            expression: format!(
                "!(request.userInfo.username == {} && request.namespace == {} && request.name == {})",
                cel_string(APISERVER_USER),
                cel_string(namespace),
                cel_string(name)
            ),
        },
    ]
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
            namespace_selector: Some(not_svcplanes_namespace(&registration.namespace)),
            ..MutatingWebhook::default()
        }]),
    }
}

/// The validating configuration: user-written Endpoints and EndpointSlices, and Services'
/// externalIPs when an allow-list is configured.
///
/// `failurePolicy: Fail` for endpoints: the check is a security boundary. Writes of the
/// endpoint controllers and kube-apiserver's own `default/kubernetes` endpoints are
/// excluded by match conditions, so a webhook outage never stops Endpoints and
/// EndpointSlices from following pods and apiservers.
pub fn validating(registration: &Registration) -> ValidatingWebhookConfiguration {
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
        namespace_selector: Some(not_svcplanes_namespace(&registration.namespace)),
        match_conditions: Some(endpoint_match_conditions(
            &registration.trusted_endpoint_writers,
        )),
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
            namespace_selector: Some(not_svcplanes_namespace(&registration.namespace)),
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

/// What the webhook may do, and nothing more: its own state, reading Services, Pods,
/// ServiceCIDRs and IPAddresses, and recording events.
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
            rule(
                &["networking.k8s.io"],
                &["servicecidrs", "ipaddresses"],
                &["get", "list", "watch"],
            ),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        ]),
        ..ClusterRole::default()
    }
}

/// The users whose endpoint writes are trusted by default: the in-tree endpoint
/// controllers' and svcplane's own, ServiceAccount `service_account` of `namespace`. The
/// process's default and the manifests' match condition both come from here.
pub fn trusted_endpoint_writers(namespace: &str, service_account: &str) -> Vec<String> {
    let mut users: Vec<String> = [
        "system:kube-controller-manager",
        "system:serviceaccount:kube-system:endpoint-controller",
        "system:serviceaccount:kube-system:endpointslice-controller",
        "system:serviceaccount:kube-system:endpointslicemirroring-controller",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    users.push(format!(
        "system:serviceaccount:{namespace}:{service_account}"
    ));
    users
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
            namespace: "svcplane".to_string(),
            ca_bundle: b"-----BEGIN CERTIFICATE-----".to_vec(),
            trusted_endpoint_writers: trusted_endpoint_writers("svcplane", "controller"),
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
        let conditions: Vec<(&str, &str)> = hooks[0]
            .match_conditions
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.expression.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                (
                    "not-an-endpoint-controller",
                    "!(request.userInfo.username in ['system:kube-controller-manager', \
                     'system:serviceaccount:kube-system:endpoint-controller', \
                     'system:serviceaccount:kube-system:endpointslice-controller', \
                     'system:serviceaccount:kube-system:endpointslicemirroring-controller', \
                     'system:serviceaccount:svcplane:controller'])"
                ),
                (
                    "not-the-apiservers-own-endpoints",
                    "!(request.userInfo.username == 'system:apiserver' && request.namespace == 'default' && request.name == 'kubernetes')"
                ),
            ]
        );
    }

    #[test]
    fn only_svcplanes_namespace_is_left_out_and_by_its_immutable_name() {
        let registration = Registration {
            validate_services: true,
            ..registration()
        };
        let mutating = mutating(&registration).webhooks.unwrap();
        let validating = validating(&registration).webhooks.unwrap();
        let selectors: Vec<_> = mutating
            .iter()
            .map(|h| h.namespace_selector.clone())
            .chain(validating.iter().map(|h| h.namespace_selector.clone()))
            .collect();
        let expected = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_string(),
                operator: "NotIn".to_string(),
                values: Some(vec!["svcplane".to_string()]),
            }]),
            match_labels: None,
        };
        assert_eq!(selectors, vec![Some(expected); 3]);
    }

    #[test]
    fn cel_strings_are_quoted_and_escaped() {
        assert_eq!(cel_string("system:apiserver"), "'system:apiserver'");
        assert_eq!(cel_string(r"a'b\c"), r"'a\'b\\c'");
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
