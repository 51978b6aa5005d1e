//! `svcplane manifests`: everything needed to install svcplane, as `kubectl apply`-able
//! YAML generated from the same code that runs (no hand-kept YAML drifting from it).

mod container;
mod deployment;
mod rbac;
mod sidecar;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::ObjectMeta;
use webhook::manifests::{Endpoint, Registration};

use crate::cli::ManifestArgs;
use deployment::{deployment, disruption_budget, network_policy, service, with_known_callers};
use rbac::{binding, controllers_role, flow_schema, lease_binding, lease_role};
use sidecar::{admission_config, sidecar_snippet};

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
    doc(&flow_schema(identity))?;
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
