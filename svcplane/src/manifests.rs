//! `svcplane manifests`: everything needed to install svcplane, as `kubectl apply`-able
//! YAML generated from the same code that runs (no hand-kept YAML drifting from it).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use controllers::runtime::EnabledControllers;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, HostPathVolumeSource, Namespace, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use serde::Serialize;
use webhook::manifests::{Endpoint, Registration};

use crate::cli::{IdentityArgs, ManifestArgs};

const NAME: &str = "svcplane";
const TLS_SECRET: &str = "svcplane-webhook-tls";
/// The Lease electing the controllers' leader, in svcplane's namespace.
const CONTROLLERS_LEASE: &str = "svcplane-controllers";
/// The Lease electing the webhook replica that releases values, in svcplane's namespace.
const RELEASER_LEASE: &str = "svcplane-webhook-releaser";
const WEBHOOK_PORT: i32 = 9443;
const ADMIN_PORT: i32 = 8080;
/// The user of the distroless image's `nonroot`, given as a number so that the kubelet can
/// check `runAsNonRoot`.
const NONROOT_UID: i64 = 65532;
/// The ConfigMap holding `ca.crt`, the CA of the client certificate kube-apiserver
/// presents to the webhook.
const CALLERS_CONFIG_MAP: &str = "svcplane-webhook-callers";
const CALLERS_DIR: &str = "/etc/svcplane/callers";
/// Where the container reads its serving certificate (`tls.crt`, `tls.key`).
const TLS_DIR: &str = "/etc/svcplane/tls";
/// What kube-controller-manager's `--controllers` keeps besides `*`: the two controllers kubeadm
/// adds, since without bootstrapsigner no node can join and without tokencleaner expired
/// bootstrap tokens stay.
const KCM_CONTROLLERS_KEPT: &str = "*,bootstrapsigner,tokencleaner";

/// kube-controller-manager's flag that leaves to svcplane the controllers it runs
/// (`--controllers` of `manifests`), and only those.
pub fn kcm_controllers_flag(args: &ManifestArgs) -> String {
    let mut list = vec![KCM_CONTROLLERS_KEPT.to_string()];
    list.extend(
        args.controllers
            .controllers
            .enabled()
            .kube_controller_manager_exclusions(),
    );
    format!("--controllers={}", list.join(","))
}
/// kube-controller-manager's user: the sidecar runs with its kubeconfig.
const KCM_USER: &str = "system:kube-controller-manager";
/// kube-controller-manager's kubeconfig on a kubeadm control-plane node.
const KCM_KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";
/// The sidecar's admin port, on loopback (kube-controller-manager's pod is on the host's
/// network).
const SIDECAR_ADMIN_PORT: i32 = 8085;

/// Prints the manifests to stdout.
pub fn print(args: &ManifestArgs) -> Result<()> {
    print!("{}", render(args)?);
    Ok(())
}

/// The manifests as one YAML stream, or with `--admission-config` kube-apiserver's side.
pub fn render(args: &ManifestArgs) -> Result<String> {
    if args.admission_config {
        return admission_config(args);
    }
    let ca_bundle = match &args.ca_bundle_file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => Vec::new(),
    };
    let identity = &args.identity;
    let namespace = identity.namespace.as_str();
    let registration = Registration {
        endpoint: match &args.webhook_url {
            Some(url) => Endpoint::Url(url.clone()),
            None => Endpoint::Service {
                namespace: namespace.to_string(),
                name: NAME.to_string(),
                port: 443,
            },
        },
        namespace: namespace.to_string(),
        ca_bundle,
        // The process's default for the identity `run_args` passes it.
        trusted_endpoint_writers: webhook::manifests::trusted_endpoint_writers(
            namespace,
            &identity.service_account,
        ),
        validate_services: args.allowed_external_ip_cidrs.is_some(),
    };

    let mut out = header(args);
    let mut doc = |object: &dyn erased::Yaml| -> Result<()> {
        out.push_str("---\n");
        out.push_str(&object.yaml()?);
        Ok(())
    };
    doc(&self::namespace(namespace))?;
    doc(&webhook::manifests::crd())?;
    doc(&ServiceAccount {
        metadata: meta(&identity.service_account, Some(namespace)),
        ..ServiceAccount::default()
    })?;
    doc(&webhook::manifests::cluster_role())?;
    doc(&binding("svcplane-webhook", args))?;
    doc(&controllers_role(args.controllers.controllers.enabled()))?;
    doc(&binding("svcplane-controllers", args))?;
    doc(&lease_role(namespace))?;
    doc(&lease_binding(args))?;
    if args.webhook_url.is_none() {
        doc(&with_known_callers(deployment(args)))?;
        doc(&disruption_budget(namespace))?;
        doc(&network_policy(namespace))?;
        doc(&service(namespace))?;
    }
    doc(&webhook::manifests::mutating(&registration))?;
    doc(&webhook::manifests::validating(&registration))?;
    if args.webhook_url.is_some() {
        out.push_str(&sidecar_snippet(args)?);
    }
    Ok(out)
}

/// What the stream expects of the cluster, as comments.
fn header(args: &ManifestArgs) -> String {
    let mut out = String::from("# svcplane: generated by `svcplane manifests`.\n");
    match &args.webhook_url {
        None => out.push_str(&format!(
            "# The webhook's serving certificate is expected in Secret {TLS_SECRET} (tls.crt,\n\
             # tls.key), e.g. from cert-manager; pass its CA with --ca-bundle-file. Only callers\n\
             # with a client certificate signed by the CA in ConfigMap {CALLERS_CONFIG_MAP}\n\
             # (ca.crt) are answered: give kube-apiserver one (`svcplane manifests\n\
             # --admission-config` prints its side). Then restart kube-controller-manager with\n\
             # {kcm_flag}\n\
             # (keep what its --controllers had beyond `*`: kubeadm's clusters have the two above).\n",
            kcm_flag = kcm_controllers_flag(args)
        )),
        Some(url) => out.push_str(&format!(
            "# The webhook is registered at {url}: svcplane runs in\n\
             # kube-controller-manager's static pod (the sidecar mode, at the end) with\n\
             # kube-controller-manager's credentials, so the bindings below also name its\n\
             # user, {KCM_USER}.\n"
        )),
    }
    out
}

mod erased {
    /// An object printable as YAML (lets one closure take every kind).
    pub trait Yaml {
        fn yaml(&self) -> anyhow::Result<String>;
    }

    impl<T: serde::Serialize> Yaml for T {
        fn yaml(&self) -> anyhow::Result<String> {
            Ok(serde_yaml::to_string(self)?)
        }
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())])
}

/// svcplane's namespace. The webhooks leave it out by its name (no label needed): they
/// cannot block their own recovery.
fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(name, None),
        ..Namespace::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
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
fn controllers_role(enabled: EnabledControllers) -> ClusterRole {
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
fn subjects(args: &ManifestArgs) -> Vec<Subject> {
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

fn binding(role: &str, args: &ManifestArgs) -> ClusterRoleBinding {
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
fn lease_role(namespace: &str) -> Role {
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

fn lease_binding(args: &ManifestArgs) -> RoleBinding {
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

fn run_args(args: &ManifestArgs) -> Vec<String> {
    let namespace = &args.identity.namespace;
    let mut flags = vec![
        "run".to_string(),
        format!(
            "--service-cluster-ip-range={}",
            args.ranges.service_cluster_ip_range
        ),
        format!(
            "--service-node-port-range={}",
            args.ranges.service_node_port_range
        ),
        format!("--tls-cert-file={TLS_DIR}/tls.crt"),
        format!("--tls-private-key-file={TLS_DIR}/tls.key"),
        "--log-format=json".to_string(),
        format!("--namespace={namespace}"),
        format!("--service-account={}", args.identity.service_account),
        format!("--leader-elect-resource-namespace={namespace}"),
        format!("--leader-elect-resource-name={CONTROLLERS_LEASE}"),
        format!("--releaser-lease={namespace}/{RELEASER_LEASE}"),
    ];
    if let Some(cidrs) = &args.allowed_external_ip_cidrs {
        let list: Vec<String> = cidrs.0.iter().map(ToString::to_string).collect();
        flags.push(format!("--allowed-external-ip-cidrs={}", list.join(",")));
    }
    let controllers = &args.controllers.controllers;
    if !controllers.is_default() {
        flags.push(format!("--controllers={controllers}"));
    }
    flags
}

/// svcplane's container as both modes run it: `svcplane run` with the common flags, then
/// `extra`; its pod's name in `POD_NAME` (it names the replica's pool entry); svcplane's
/// requests.
fn container(args: &ManifestArgs, extra: impl IntoIterator<Item = String>) -> Container {
    let mut flags = run_args(args);
    flags.extend(extra);
    Container {
        name: NAME.to_string(),
        image: Some(args.image.clone()),
        args: Some(flags),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(resources()),
        ..Container::default()
    }
}

/// Nothing svcplane does not need, as `user`: no capabilities, no privilege escalation, a
/// read-only root filesystem, the RuntimeDefault seccomp profile.
fn locked_down(user: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(user != 0),
        run_as_user: Some(user),
        run_as_group: Some(user),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

/// An HTTP probe of the admin port's `path` (`/livez`, `/readyz`).
fn admin_probe(path: &str, port: IntOrString, host: Option<&str>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port,
            host: host.map(str::to_string),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    }
}

fn read_only_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The flag requiring callers' certificates signed by the CA in [`CALLERS_DIR`].
fn client_ca_arg() -> String {
    format!("--client-ca-file={CALLERS_DIR}/ca.crt")
}

fn deployment(args: &ManifestArgs) -> Deployment {
    let admin = || IntOrString::String("admin".into());
    let container = Container {
        ports: Some(vec![
            ContainerPort {
                name: Some("webhook".into()),
                container_port: WEBHOOK_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                ..ContainerPort::default()
            },
        ]),
        security_context: Some(locked_down(NONROOT_UID)),
        liveness_probe: Some(admin_probe("/livez", admin(), None)),
        readiness_probe: Some(admin_probe("/readyz", admin(), None)),
        volume_mounts: Some(vec![read_only_mount("tls", TLS_DIR)]),
        ..container(args, [])
    };
    Deployment {
        metadata: meta(NAME, Some(&args.identity.namespace)),
        spec: DeploymentSpec {
            replicas: Some(args.replicas),
            selector: pods_selector(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(args.identity.service_account.clone()),
                    priority_class_name: Some("system-cluster-critical".into()),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NONROOT_UID),
                        run_as_group: Some(NONROOT_UID),
                        fs_group: Some(NONROOT_UID),
                        seccomp_profile: Some(runtime_default_seccomp()),
                        ..PodSecurityContext::default()
                    }),
                    // Replicas on different nodes, so that one node's loss leaves the
                    // fail-closed endpoint validation answered.
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(pods_selector()),
                        ..TopologySpreadConstraint::default()
                    }]),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        label_selector: Some(pods_selector()),
                                        topology_key: "kubernetes.io/hostname".into(),
                                        ..PodAffinityTerm::default()
                                    },
                                },
                            ]),
                            ..PodAntiAffinity::default()
                        }),
                        ..Affinity::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "tls".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(TLS_SECRET.into()),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn pods_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels()),
        ..LabelSelector::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// Requests for a cluster of a few thousand pods and Services (the caches and the
/// allocation bitmaps); the memory limit leaves room for a relist, and no CPU limit, so that
/// admissions are never throttled.
fn resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
        limits: Some(quantities(&[("memory", "512Mi")])),
        ..ResourceRequirements::default()
    }
}

/// At most one replica down at a time from voluntary disruptions (drains, upgrades): the
/// endpoint validation fails closed, so some replica must always answer.
fn disruption_budget(namespace: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(NAME, Some(namespace)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(pods_selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Only the webhook port (called by kube-apiserver, whose source address is not known in
/// general) and the admin port (probes, metrics) reach svcplane's pods. Egress is left
/// open: svcplane calls kube-apiserver, wherever it is.
fn network_policy(namespace: &str) -> NetworkPolicy {
    let port = |number: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    NetworkPolicy {
        metadata: meta(NAME, Some(namespace)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods_selector()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![port(WEBHOOK_PORT), port(ADMIN_PORT)]),
                ..NetworkPolicyIngressRule::default()
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn service(namespace: &str) -> Service {
    Service {
        metadata: meta(NAME, Some(namespace)),
        spec: Some(ServiceSpec {
            selector: Some(labels()),
            ports: Some(vec![ServicePort {
                name: Some("webhook".into()),
                port: 443,
                target_port: Some(IntOrString::String("webhook".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The webhook requires kube-apiserver's client certificate: the CA comes from a
/// ConfigMap, reloaded when it changes.
fn with_known_callers(mut deployment: Deployment) -> Deployment {
    if let Some(pod) = deployment.spec.template.spec.as_mut() {
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: "callers".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CALLERS_CONFIG_MAP.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        for container in &mut pod.containers {
            container
                .args
                .get_or_insert_with(Vec::new)
                .push(client_ca_arg());
            container
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(read_only_mount("callers", CALLERS_DIR));
        }
    }
    deployment
}

/// kube-apiserver's side of the webhook's client authentication.
fn admission_config(args: &ManifestArgs) -> Result<String> {
    let dir = &args.admission_config_dir;
    let webhook_host = match &args.webhook_url {
        Some(url) => url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        None => format!("{NAME}.{}.svc", args.identity.namespace),
    };
    let config = webhook::manifests::AdmissionClientConfig {
        webhook_host,
        client_certificate: dir.join("webhook-client.crt"),
        client_key: dir.join("webhook-client.key"),
        kubeconfig_path: dir.join("webhook-client.kubeconfig"),
    };
    let callers_ca = match &args.webhook_url {
        None => format!(
            "in ConfigMap {CALLERS_CONFIG_MAP} (key ca.crt) in\n\
             # namespace {}",
            args.identity.namespace
        ),
        Some(_) => format!(
            "in {}/callers/ca.crt\n\
             # (the sidecar's)",
            dir.display()
        ),
    };
    Ok(format!(
        "# kube-apiserver's client certificate for svcplane's webhook. Issue webhook-client.crt\n\
         # and .key from a CA of their own (not the cluster CA: every client certificate of the\n\
         # cluster would pass), put that CA {callers_ca}, write the two documents below to the\n\
         # control-plane nodes and start kube-apiserver with\n\
         # --admission-control-config-file={admission}.\n\
         # Already using an AdmissionConfiguration? Add the two plugins to it.\n\
         # --- {kubeconfig}\n{}---\n# {admission}\n{}",
        serde_yaml::to_string(&config.kubeconfig())?,
        serde_yaml::to_string(&config.admission_configuration())?,
        kubeconfig = config.kubeconfig_path.display(),
        admission = dir.join("admission-config.yaml").display(),
    ))
}

/// The sidecar container and its volumes, as a strategic merge patch of
/// kube-controller-manager's static pod (what kubeadm's `--patches` takes).
#[derive(Serialize)]
struct StaticPodPatch {
    spec: PodSpec,
}

/// The sidecar mode: svcplane in kube-controller-manager's static pod, reading that pod's
/// kubeconfig (root's alone, hence user 0 with no capabilities), its serving certificate and
/// callers' CA from host directories under `--admission-config-dir`, listening on loopback.
fn sidecar_patch(args: &ManifestArgs) -> StaticPodPatch {
    let node_dir = &args.admission_config_dir;
    let host_path = |name: &str, path: String, type_: &str| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path,
            type_: Some(type_.into()),
        }),
        ..Volume::default()
    };
    let admin = || IntOrString::Int(SIDECAR_ADMIN_PORT);
    let loopback = Some("127.0.0.1");
    let sidecar = Container {
        security_context: Some(locked_down(0)),
        liveness_probe: Some(admin_probe("/livez", admin(), loopback)),
        readiness_probe: Some(admin_probe("/readyz", admin(), loopback)),
        volume_mounts: Some(vec![
            read_only_mount("svcplane-tls", TLS_DIR),
            read_only_mount("svcplane-callers", CALLERS_DIR),
            read_only_mount("svcplane-kubeconfig", KCM_KUBECONFIG),
        ]),
        ..container(
            args,
            [
                format!("--webhook-address=127.0.0.1:{WEBHOOK_PORT}"),
                format!("--admin-address=127.0.0.1:{SIDECAR_ADMIN_PORT}"),
                format!("--kubeconfig={KCM_KUBECONFIG}"),
                client_ca_arg(),
            ],
        )
    };
    StaticPodPatch {
        spec: PodSpec {
            containers: vec![sidecar],
            volumes: Some(vec![
                host_path(
                    "svcplane-tls",
                    node_dir.join("tls").display().to_string(),
                    "Directory",
                ),
                host_path(
                    "svcplane-callers",
                    node_dir.join("callers").display().to_string(),
                    "Directory",
                ),
                host_path("svcplane-kubeconfig", KCM_KUBECONFIG.into(), "File"),
            ]),
            ..PodSpec::default()
        },
    }
}

/// The line before the sidecar's patch in the comments (scripts find the patch after it).
const SIDECAR_PATCH_MARKER: &str = "# --- kube-controller-manager+strategic.yaml";

/// The sidecar mode's steps and patch, as comments.
fn sidecar_snippet(args: &ManifestArgs) -> Result<String> {
    let node_dir = args.admission_config_dir.display();
    let url = args.webhook_url.as_deref().unwrap_or_default();
    let mut out = format!(
        "# Sidecar mode (a kubeadm cluster): svcplane in kube-controller-manager's static pod on\n\
         # every control-plane node, its webhook on 127.0.0.1:{WEBHOOK_PORT}, its admin port on\n\
         # 127.0.0.1:{SIDECAR_ADMIN_PORT}. Apply everything above, then on every control-plane node:\n\
         # 1. Put the webhook's serving certificate (for 127.0.0.1, from the --ca-bundle-file CA)\n\
         #    in {node_dir}/tls/ (tls.crt, tls.key) and the CA of kube-apiserver's client\n\
         #    certificate in {node_dir}/callers/ca.crt; kube-apiserver's side comes from\n\
         #    `svcplane manifests --admission-config --webhook-url={url}`.\n\
         # 2. In /etc/kubernetes/manifests/kube-controller-manager.yaml, replace\n\
         #    kube-controller-manager's --controllers with (kubeadm:\n\
         #    controllerManager.extraArgs in its ClusterConfiguration)\n\
         #      {kcm_flag}\n\
         # 3. Merge this strategic merge patch into that static pod: kubeadm takes it as\n\
         #    kube-controller-manager+strategic.yaml in its --patches directory (which survives\n\
         #    `kubeadm upgrade`); by hand: kubectl patch --local --type=strategic\n\
         #    --patch-file=<this patch> -f kube-controller-manager.yaml -o yaml\n\
         {SIDECAR_PATCH_MARKER}\n",
        kcm_flag = kcm_controllers_flag(args)
    );
    for line in serde_yaml::to_string(&sidecar_patch(args))?.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str]) -> ManifestArgs {
        let argv = [
            "svcplane",
            "manifests",
            "--service-cluster-ip-range=10.96.0.0/12",
        ];
        let cli = Cli::try_parse_from(argv.iter().chain(extra.iter())).unwrap();
        match cli.command {
            Command::Manifests(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_document_is_a_kubernetes_object() {
        let yaml = render(&args(&[])).unwrap();
        let kinds: Vec<String> = yaml
            .split("\n---\n")
            .skip(1)
            .map(|doc| {
                let value: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
                value["kind"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "PodDisruptionBudget",
                "NetworkPolicy",
                "Service",
                "MutatingWebhookConfiguration",
                "ValidatingWebhookConfiguration",
            ]
        );
        assert!(yaml.contains("--service-cluster-ip-range=10.96.0.0/12"));
    }

    /// The documents of `yaml`, parsed.
    fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
        yaml.split("\n---\n")
            .skip(1)
            .map(|doc| serde_yaml::from_str(doc).unwrap())
            .collect()
    }

    fn document<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
        docs.iter()
            .find(|doc| doc["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    }

    fn strings(value: &serde_yaml::Value) -> Vec<String> {
        value
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// The users the match condition of the endpoint validation leaves out.
    fn users_in_match_condition(docs: &[serde_yaml::Value]) -> Vec<String> {
        let hooks = &document(docs, "ValidatingWebhookConfiguration")["webhooks"];
        let condition = hooks[0]["matchConditions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str() == Some("not-an-endpoint-controller"))
            .unwrap()["expression"]
            .as_str()
            .unwrap()
            .to_string();
        let list = condition
            .strip_prefix("!(request.userInfo.username in [")
            .and_then(|rest| rest.strip_suffix("])"))
            .unwrap();
        list.split(", ")
            .map(|quoted| quoted.trim_matches('\'').to_string())
            .collect()
    }

    #[test]
    fn the_process_trusts_exactly_the_writers_the_match_condition_leaves_out() {
        for extra in [
            &[][..],
            &["--namespace=platform", "--service-account=endpoints-guard"][..],
        ] {
            let docs = documents(&render(&args(extra)).unwrap());
            let container =
                &document(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
            let argv = std::iter::once("svcplane".to_string())
                .chain(strings(&container["args"]))
                .collect::<Vec<_>>();
            let Command::Run(run) = Cli::try_parse_from(&argv).unwrap().command else {
                panic!("the Deployment does not run `svcplane run`")
            };
            let trusted = run.webhook.trusted_endpoint_writers();
            assert_eq!(users_in_match_condition(&docs), trusted, "{extra:?}");
            let service_account = &document(&docs, "ServiceAccount")["metadata"];
            assert!(trusted.contains(&format!(
                "system:serviceaccount:{}:{}",
                service_account["namespace"].as_str().unwrap(),
                service_account["name"].as_str().unwrap()
            )));
        }
    }

    #[test]
    fn only_svcplanes_namespace_is_exempt_and_no_label_can_exempt_another() {
        let yaml = render(&args(&["--namespace=platform"])).unwrap();
        assert!(!yaml.contains("svcplane.io/webhook"), "{yaml}");
        let docs = documents(&yaml);
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            for hook in document(&docs, kind)["webhooks"].as_sequence().unwrap() {
                let requirements = &hook["namespaceSelector"]["matchExpressions"];
                assert_eq!(requirements.as_sequence().unwrap().len(), 1);
                assert_eq!(
                    requirements[0]["key"].as_str(),
                    Some("kubernetes.io/metadata.name")
                );
                assert_eq!(requirements[0]["operator"].as_str(), Some("NotIn"));
                assert_eq!(strings(&requirements[0]["values"]), ["platform"]);
            }
        }
    }

    #[test]
    fn leases_are_svcplanes_own_and_only_those_may_be_updated() {
        let docs = documents(&render(&args(&["--namespace=platform"])).unwrap());
        let role = document(&docs, "Role");
        assert_eq!(role["metadata"]["namespace"].as_str(), Some("platform"));
        let rules: Vec<(Vec<String>, Option<Vec<String>>)> = role["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| (strings(&r["verbs"]), r.get("resourceNames").map(strings)))
            .collect();
        assert_eq!(
            rules,
            [
                (vec!["create".to_string()], None),
                (
                    vec!["get".to_string(), "update".to_string()],
                    Some(vec![
                        "svcplane-controllers".to_string(),
                        "svcplane-webhook-releaser".to_string()
                    ])
                ),
            ]
        );
        assert_eq!(
            document(&docs, "RoleBinding")["metadata"]["namespace"].as_str(),
            Some("platform")
        );
        let args = strings(
            &document(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"],
        );
        for flag in [
            "--leader-elect-resource-namespace=platform",
            "--leader-elect-resource-name=svcplane-controllers",
            "--releaser-lease=platform/svcplane-webhook-releaser",
        ] {
            assert!(args.contains(&flag.to_string()), "{flag} not in {args:?}");
        }
    }

    #[test]
    fn the_deployment_is_locked_down_spread_and_budgeted() {
        let docs = documents(&render(&args(&[])).unwrap());
        let pod = &document(&docs, "Deployment")["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
        assert_eq!(security["runAsUser"].as_i64(), Some(65532));
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(
            security["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault")
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault")
        );
        let resources = &container["resources"];
        assert_eq!(resources["requests"]["cpu"].as_str(), Some("100m"));
        assert_eq!(resources["requests"]["memory"].as_str(), Some("128Mi"));
        assert_eq!(resources["limits"]["memory"].as_str(), Some("512Mi"));
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"].as_str(),
            Some("kubernetes.io/hostname")
        );
        assert_eq!(
            pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0]["podAffinityTerm"]["topologyKey"]
                .as_str(),
            Some("kubernetes.io/hostname")
        );
        let budget = &document(&docs, "PodDisruptionBudget")["spec"];
        assert_eq!(budget["maxUnavailable"].as_i64(), Some(1));
        assert_eq!(
            budget["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
            Some("svcplane")
        );
        let policy = &document(&docs, "NetworkPolicy")["spec"];
        assert_eq!(strings(&policy["policyTypes"]), ["Ingress"]);
        let ports: Vec<i64> = policy["ingress"][0]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect();
        assert_eq!(ports, [9443, 8080]);
        assert!(policy["ingress"][0].get("from").is_none());
    }

    #[test]
    fn the_deployment_requires_known_callers_and_the_apiserver_side_is_printed() {
        let yaml = render(&args(&[])).unwrap();
        assert!(
            yaml.contains("--client-ca-file=/etc/svcplane/callers/ca.crt"),
            "{yaml}"
        );
        assert!(yaml.contains("name: svcplane-webhook-callers"), "{yaml}");

        let apiserver = render(&args(&["--admission-config"])).unwrap();
        let docs: Vec<serde_yaml::Value> = apiserver
            .split("\n---\n")
            .map(|doc| serde_yaml::from_str(doc).unwrap())
            .collect();
        assert_eq!(docs[0]["kind"], "Config");
        assert_eq!(docs[0]["users"][0]["name"], "svcplane.svcplane-system.svc");
        assert_eq!(docs[1]["kind"], "AdmissionConfiguration");
        assert_eq!(
            docs[1]["plugins"][1]["configuration"]["kubeConfigFile"],
            "/etc/kubernetes/svcplane/webhook-client.kubeconfig"
        );
        let sidecar = render(&args(&[
            "--admission-config",
            "--webhook-url=https://127.0.0.1:9443",
        ]))
        .unwrap();
        assert!(sidecar.contains("127.0.0.1:9443"), "{sidecar}");
    }

    /// The Cluster/RoleBindings' subjects, as `kind/name`.
    fn binding_subjects(docs: &[serde_yaml::Value]) -> Vec<Vec<String>> {
        docs.iter()
            .filter(|doc| doc["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
            .map(|doc| {
                doc["subjects"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        format!(
                            "{}/{}",
                            s["kind"].as_str().unwrap(),
                            s["name"].as_str().unwrap()
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_sidecar_mode_leaves_the_deployment_out_and_binds_kube_controller_managers_user() {
        let service_mode = documents(&render(&args(&[])).unwrap());
        let sidecar_mode =
            documents(&render(&args(&["--webhook-url=https://127.0.0.1:9443"])).unwrap());
        let kinds = |docs: &[serde_yaml::Value]| {
            docs.iter()
                .map(|doc| doc["kind"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let left_out: Vec<String> = kinds(&service_mode)
            .into_iter()
            .filter(|kind| !kinds(&sidecar_mode).contains(kind))
            .collect();
        assert_eq!(
            left_out,
            [
                "Deployment",
                "PodDisruptionBudget",
                "NetworkPolicy",
                "Service"
            ]
        );
        let account = "ServiceAccount/svcplane".to_string();
        let kcm = format!("User/{KCM_USER}");
        assert_eq!(
            binding_subjects(&service_mode),
            vec![vec![account.clone()]; 3]
        );
        assert_eq!(binding_subjects(&sidecar_mode), vec![vec![account, kcm]; 3]);
    }

    /// The patch after [`SIDECAR_PATCH_MARKER`], uncommented as a user would.
    fn sidecar_patch_of(yaml: &str) -> serde_yaml::Value {
        let (_, patch) = yaml.split_once(SIDECAR_PATCH_MARKER).unwrap();
        let uncommented: String = patch
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .map(|line| format!("{line}\n"))
            .collect();
        serde_yaml::from_str(&uncommented).unwrap()
    }

    #[test]
    fn the_sidecar_runs_with_the_callers_ca_and_kube_controller_managers_kubeconfig() {
        let sidecar = args(&["--webhook-url=https://127.0.0.1:9443"]);
        let yaml = render(&sidecar).unwrap();
        assert!(
            yaml.contains(&format!("#      {}\n", kcm_controllers_flag(&sidecar))),
            "{yaml}"
        );
        let patch = sidecar_patch_of(&yaml);
        let container = &patch["spec"]["containers"][0];
        assert_eq!(container["name"].as_str(), Some("svcplane"));
        let argv = std::iter::once("svcplane".to_string())
            .chain(strings(&container["args"]))
            .collect::<Vec<_>>();
        let Command::Run(run) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("the sidecar does not run `svcplane run`")
        };
        assert_eq!(run.webhook.address.to_string(), "127.0.0.1:9443");
        assert!(run.admin.admin_address.ip().is_loopback());
        assert!(
            run.webhook
                .trusted_endpoint_writers()
                .contains(&KCM_USER.to_string())
        );

        // Every file the flags name is under a mount of a host directory or file.
        let mounts: Vec<(String, String)> = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["readOnly"].as_bool(), Some(true));
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["mountPath"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let host_volumes: Vec<String> = patch["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|v| v["hostPath"]["path"].as_str().is_some())
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        let files = [
            run.webhook.tls_cert_file.clone(),
            run.webhook.tls_private_key_file.clone(),
            run.webhook
                .client_ca_file
                .clone()
                .expect("--client-ca-file"),
            run.cluster.kubeconfig.clone().expect("--kubeconfig"),
        ];
        for file in files {
            let (volume, _) = mounts
                .iter()
                .find(|(_, path)| file.starts_with(path))
                .unwrap_or_else(|| panic!("{} is not mounted: {mounts:?}", file.display()));
            assert!(host_volumes.contains(volume), "{volume} is not a host path");
        }
        assert_eq!(
            run.cluster.kubeconfig.unwrap().display().to_string(),
            KCM_KUBECONFIG
        );

        // Root, to read kube-controller-manager's kubeconfig (0600), and nothing more.
        let security = &container["securityContext"];
        assert_eq!(security["runAsUser"].as_i64(), Some(0));
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(
            container["readinessProbe"]["httpGet"]["host"].as_str(),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn kube_controller_manager_keeps_the_controllers_kubeadm_adds() {
        let flag = kcm_controllers_flag(&args(&[]));
        let controllers: Vec<&str> = flag
            .strip_prefix("--controllers=")
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(
            controllers,
            [
                "*",
                "bootstrapsigner",
                "tokencleaner",
                "-endpoints-controller",
                "-endpointslice-controller",
                "-endpointslice-mirroring-controller"
            ]
        );
        let yaml = render(&args(&[])).unwrap();
        assert!(yaml.contains(&flag));
        assert!(
            !yaml.contains("- --controllers="),
            "svcplane runs its default"
        );
    }

    /// kube-controller-manager turns off exactly what svcplane runs; svcplane's container is
    /// given the same list; RBAC follows.
    #[test]
    fn the_controllers_svcplane_runs_are_the_ones_kube_controller_manager_leaves() {
        let only_slices = args(&["--controllers=*,-endpoints-controller"]);
        assert_eq!(
            kcm_controllers_flag(&only_slices),
            "--controllers=*,bootstrapsigner,tokencleaner,-endpointslice-controller,-endpointslice-mirroring-controller"
        );
        let yaml = render(&only_slices).unwrap();
        let docs = documents(&yaml);
        let deployment = document(&docs, "Deployment");
        let container_args =
            strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(
            container_args.contains(&"--controllers=*,-endpoints-controller".to_string()),
            "{container_args:?}"
        );
        let role = docs
            .iter()
            .find(|d| {
                d["metadata"]["name"].as_str() == Some("svcplane-controllers")
                    && d["kind"].as_str() == Some("ClusterRole")
            })
            .unwrap();
        let endpoints_rules: Vec<_> = role["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|r| strings(&r["resources"]).contains(&"endpoints".to_string()))
            .collect();
        assert_eq!(endpoints_rules.len(), 1);
        assert_eq!(
            strings(&endpoints_rules[0]["verbs"]),
            ["get", "list", "watch"]
        );

        let sidecar = render(&args(&[
            "--webhook-url=https://127.0.0.1:9443",
            "--controllers=endpointslice-mirroring-controller",
        ]))
        .unwrap();
        assert!(
            sidecar.contains(
                "--controllers=*,bootstrapsigner,tokencleaner,-endpointslice-mirroring-controller\n"
            ),
            "{sidecar}"
        );
        assert!(sidecar.contains("--controllers=endpointslice-mirroring-controller"));
    }

    #[test]
    fn the_url_mode_registers_loopback() {
        let yaml = render(&args(&["--webhook-url=https://127.0.0.1:9443"])).unwrap();
        assert!(
            yaml.contains("url: https://127.0.0.1:9443/mutate/services"),
            "{yaml}"
        );
    }
}
