//! The service mode: svcplane's Deployment, its disruption budget, network policy and
//! Service, and the callers it answers.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

use super::container::{
    admin_probe, client_ca_arg, container, locked_down, read_only_mount, runtime_default_seccomp,
};
use super::{
    ADMIN_PORT, CALLERS_CONFIG_MAP, CALLERS_DIR, NAME, NONROOT_UID, TLS_DIR, TLS_SECRET,
    WEBHOOK_PORT, labels, meta,
};
use crate::cli::ManifestArgs;

pub(super) fn deployment(args: &ManifestArgs) -> Deployment {
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

pub(super) fn pods_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels()),
        ..LabelSelector::default()
    }
}

/// At most one replica down at a time from voluntary disruptions (drains, upgrades): the
/// endpoint validation fails closed, so some replica must always answer.
pub(super) fn disruption_budget(namespace: &str) -> PodDisruptionBudget {
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
pub(super) fn network_policy(namespace: &str) -> NetworkPolicy {
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

pub(super) fn service(namespace: &str) -> Service {
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
pub(super) fn with_known_callers(mut deployment: Deployment) -> Deployment {
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
