//! The sidecar mode and kube-apiserver's side: the admission configuration with the
//! webhook's client certificate, and svcplane as a patch of kube-controller-manager's static
//! pod.

use anyhow::Result;
use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::container::{admin_probe, client_ca_arg, container, locked_down, read_only_mount};
use super::{CALLERS_CONFIG_MAP, CALLERS_DIR, NAME, TLS_DIR, WEBHOOK_PORT, kcm_controllers_flag};
use crate::cli::ManifestArgs;

/// kube-controller-manager's kubeconfig on a kubeadm control-plane node.
pub(super) const KCM_KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";
/// The sidecar's admin port, on loopback (kube-controller-manager's pod is on the host's
/// network).
pub(super) const SIDECAR_ADMIN_PORT: i32 = 8085;

/// kube-apiserver's side of the webhook's client authentication.
pub(super) fn admission_config(args: &ManifestArgs) -> Result<String> {
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
pub(super) struct StaticPodPatch {
    spec: PodSpec,
}

/// The sidecar mode: svcplane in kube-controller-manager's static pod, reading that pod's
/// kubeconfig (root's alone, hence user 0 with no capabilities), its serving certificate and
/// callers' CA from host directories under `--admission-config-dir`, listening on loopback.
pub(super) fn sidecar_patch(args: &ManifestArgs) -> StaticPodPatch {
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
pub(super) const SIDECAR_PATCH_MARKER: &str = "# --- kube-controller-manager+strategic.yaml";

/// The sidecar mode's steps and patch, as comments.
pub(super) fn sidecar_snippet(args: &ManifestArgs) -> Result<String> {
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
