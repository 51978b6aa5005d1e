//! Who svcplane is and what it may do: the ClusterRoles, Role and their bindings.

use controllers::runtime::EnabledControllers;
use k8s_openapi::api::flowcontrol::v1::{
    FlowDistinguisherMethod, FlowSchema, FlowSchemaSpec, PolicyRulesWithSubjects,
    PriorityLevelConfigurationReference, ResourcePolicyRule, ServiceAccountSubject,
    Subject as FlowSubject,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{CONTROLLERS_LEASE, KCM_USER, RELEASER_LEASE, meta};
use crate::cli::{IdentityArgs, ManifestArgs};

pub(super) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// What the controllers that run read and write: Services always; Pods for the Endpoints and
/// EndpointSlice controllers, Nodes for the EndpointSlice controller; Endpoints written by the
/// Endpoints controller and read by the mirroring controller; EndpointSlices written by the
/// EndpointSlice and mirroring controllers.
pub(super) fn controllers_role(enabled: EnabledControllers) -> ClusterRole {
    const READ: &[&str] = &["get", "list", "watch"];
    const WRITE: &[&str] = &["get", "list", "watch", "create", "update", "delete"];
    let mut read = vec!["services"];
    if enabled.endpoints || enabled.endpointslice {
        read.push("pods");
    }
    if enabled.endpointslice {
        read.push("nodes");
    }
    let mut rules = vec![rule(&[""], &read, READ)];
    if enabled.endpoints {
        rules.push(rule(&[""], &["endpoints"], WRITE));
    } else if enabled.mirroring {
        rules.push(rule(&[""], &["endpoints"], READ));
    }
    if enabled.endpointslice || enabled.mirroring {
        rules.push(rule(&["discovery.k8s.io"], &["endpointslices"], WRITE));
    }
    rules.push(rule(&["events.k8s.io"], &["events"], &["create", "patch"]));
    ClusterRole {
        metadata: meta("svcplane-controllers", None),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// Who svcplane runs as: its ServiceAccount, and in the sidecar mode (a webhook URL)
/// kube-controller-manager's user, whose kubeconfig the sidecar reads.
pub(super) fn subjects(args: &ManifestArgs) -> Vec<Subject> {
    let identity: &IdentityArgs = &args.identity;
    let mut subjects = vec![Subject {
        kind: "ServiceAccount".to_string(),
        name: identity.service_account.clone(),
        namespace: Some(identity.namespace.clone()),
        ..Subject::default()
    }];
    if args.webhook_url.is_some() {
        subjects.push(Subject {
            kind: "User".to_string(),
            name: KCM_USER.to_string(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        });
    }
    subjects
}

pub(super) fn binding(role: &str, args: &ManifestArgs) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(role, None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects(args)),
    }
}

/// svcplane's Leases live in its own namespace, not in kube-system: RBAC cannot limit
/// `create` to names (the name is not known before the object exists), so `create` is
/// granted only where nothing but svcplane's Leases belong, and `get`/`update` only on its
/// two Leases. kube-controller-manager's and kube-scheduler's Leases stay out of reach.
pub(super) fn lease_role(namespace: &str) -> Role {
    let mut update = rule(&["coordination.k8s.io"], &["leases"], &["get", "update"]);
    update.resource_names = Some(vec![
        CONTROLLERS_LEASE.to_string(),
        RELEASER_LEASE.to_string(),
    ]);
    Role {
        metadata: meta("svcplane-leader-election", Some(namespace)),
        rules: Some(vec![
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            update,
        ]),
    }
}

pub(super) fn lease_binding(args: &ManifestArgs) -> RoleBinding {
    RoleBinding {
        metadata: meta("svcplane-leader-election", Some(&args.identity.namespace)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "svcplane-leader-election".into(),
        },
        subjects: Some(subjects(args)),
    }
}

/// The FlowSchema that puts svcplane's ServiceAccount in API Priority and Fairness's
/// `workload-high`, where kube-controller-manager's controllers are, ahead of the
/// `service-accounts` schema (precedence 9000) that would leave it in `workload-low`. There,
/// tenants' ServiceAccounts sharing the level could throttle the allocation store's writes,
/// and with them every replica's admissions.
pub(super) fn flow_schema(identity: &IdentityArgs) -> FlowSchema {
    let all = |v: &str| vec![v.to_string()];
    FlowSchema {
        metadata: meta("svcplane", None),
        spec: FlowSchemaSpec {
            matching_precedence: Some(800),
            priority_level_configuration: PriorityLevelConfigurationReference {
                name: "workload-high".into(),
            },
            distinguisher_method: Some(FlowDistinguisherMethod {
                type_: "ByUser".into(),
            }),
            rules: Some(vec![PolicyRulesWithSubjects {
                subjects: vec![FlowSubject {
                    kind: "ServiceAccount".into(),
                    service_account: Some(ServiceAccountSubject {
                        name: identity.service_account.clone(),
                        namespace: identity.namespace.clone(),
                    }),
                    ..FlowSubject::default()
                }],
                resource_rules: Some(vec![ResourcePolicyRule {
                    api_groups: all("*"),
                    resources: all("*"),
                    verbs: all("*"),
                    cluster_scope: Some(true),
                    namespaces: Some(all("*")),
                }]),
                non_resource_rules: None,
            }]),
        },
        ..FlowSchema::default()
    }
}
