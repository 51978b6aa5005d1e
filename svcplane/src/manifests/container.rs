//! svcplane's container as both modes run it, and the pieces of it they share.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CALLERS_DIR, CONTROLLERS_LEASE, NAME, RELEASER_LEASE, TLS_DIR};
use crate::cli::ManifestArgs;

pub(super) fn run_args(args: &ManifestArgs) -> Vec<String> {
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
pub(super) fn container(args: &ManifestArgs, extra: impl IntoIterator<Item = String>) -> Container {
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
pub(super) fn locked_down(user: i64) -> SecurityContext {
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
pub(super) fn admin_probe(path: &str, port: IntOrString, host: Option<&str>) -> Probe {
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

pub(super) fn read_only_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The flag requiring callers' certificates signed by the CA in [`CALLERS_DIR`].
pub(super) fn client_ca_arg() -> String {
    format!("--client-ca-file={CALLERS_DIR}/ca.crt")
}

pub(super) fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// Requests for a cluster of a few thousand pods and Services (the caches and the
/// allocation bitmaps); the memory limit leaves room for a relist, and no CPU limit, so that
/// admissions are never throttled.
pub(super) fn resources() -> ResourceRequirements {
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
