//! What an operator installs: `svcplane manifests` must apply cleanly to a real apiserver.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use e2e::TestEnv;
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use svcplane::cli::{Cli, Command};

/// Server-side apply of every generated object (dry run; the Namespace for real, since
/// the namespaced objects need it to exist), under svcplane's field manager: on a cluster
/// where svcplane registered itself by URL (the local mode), the generated Service-based
/// configuration then replaces svcplane's own fields instead of conflicting with them.
pub async fn manifests_apply_cleanly(env: Arc<TestEnv>) -> Result<()> {
    let cli = Cli::try_parse_from([
        "svcplane",
        "manifests",
        "--service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/112",
        "--allowed-external-ip-cidrs=203.0.113.0/24",
    ])?;
    let Command::Manifests(args) = cli.command else {
        unreachable!()
    };
    let yaml = svcplane::manifests::render(&args)?;
    let client = env.client();
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut applied = Vec::new();
    for document in yaml.split("\n---\n").skip(1) {
        let object: DynamicObject =
            serde_yaml::from_str(document).context("a generated document")?;
        let types = object
            .types
            .clone()
            .context("a document without apiVersion/kind")?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let (resource, capabilities) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("the apiserver does not serve {gvk:?}"))?;
        let name = object
            .metadata
            .name
            .clone()
            .context("a document without a name")?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object
                    .metadata
                    .namespace
                    .clone()
                    .context("a namespaced object without namespace")?;
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let mut params = PatchParams::apply("svcplane").force();
        if gvk.kind != "Namespace" {
            params = params.dry_run();
        }
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .with_context(|| format!("applying {} {name}", gvk.kind))?;
        applied.push(format!("{}/{name}", gvk.kind));
    }
    anyhow::ensure!(applied.len() == 16, "applied {applied:?}");
    Ok(())
}
