//! The cluster an e2e test binary runs against: a local control plane it starts, or the
//! cluster `KUBECONFIG` names (kind, a real cluster).

use std::path::PathBuf;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;

use crate::control_plane::{self, ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS};
use crate::svcplane::{self, WebhookReplica};

/// The cluster of one test binary. Tests share it and each works in its own namespace.
pub struct TestEnv {
    // Stopped before the cluster it talks to.
    webhook: tokio::sync::OnceCell<WebhookReplica>,
    cluster: Cluster,
    client: Client,
}

enum Cluster {
    Local(Box<ControlPlane>),
    External(PathBuf),
}

impl TestEnv {
    /// Uses the cluster of `$KUBECONFIG` when set, else starts a local control plane.
    pub async fn start() -> Result<Self> {
        match std::env::var_os("KUBECONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                let client = control_plane::client_from_kubeconfig(&path).await?;
                tracing::info!(kubeconfig = %path.display(), "using the cluster of KUBECONFIG");
                Ok(Self {
                    cluster: Cluster::External(path),
                    client,
                    webhook: tokio::sync::OnceCell::new(),
                })
            }
            None => {
                let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
                let client = plane.client().await?;
                tracing::info!(url = %plane.url(), "local control plane ready");
                Ok(Self {
                    cluster: Cluster::Local(Box::new(plane)),
                    client,
                    webhook: tokio::sync::OnceCell::new(),
                })
            }
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The local control plane, or `None` on an external cluster.
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        match &self.cluster {
            Cluster::Local(plane) => Some(plane),
            Cluster::External(_) => None,
        }
    }

    /// The kubeconfig of this cluster.
    pub fn kubeconfig(&self) -> PathBuf {
        match &self.cluster {
            Cluster::Local(plane) => plane.kubeconfig().to_path_buf(),
            Cluster::External(path) => path.clone(),
        }
    }

    /// Makes sure the in-tree endpoint controllers maintain Endpoints and EndpointSlices:
    /// starts kube-controller-manager with only them on a local control plane. An external
    /// cluster runs its own controllers.
    pub fn run_reference_endpoint_controllers(&self) -> Result<()> {
        match &self.cluster {
            Cluster::Local(plane) if !plane.controller_manager_running() => {
                plane.start_controller_manager(ENDPOINT_CONTROLLERS)
            }
            _ => Ok(()),
        }
    }

    /// Makes sure svcplane's webhook admits this cluster's Services and endpoints: on a
    /// local control plane, starts a replica in this process (once) and registers it; an
    /// external cluster must have svcplane installed.
    pub async fn ensure_svcplane_webhook(&self) -> Result<()> {
        match &self.cluster {
            Cluster::Local(plane) => {
                self.webhook
                    .get_or_try_init(|| async {
                        svcplane::install_crd(&self.client).await?;
                        let config = svcplane::webhook_config(plane)?;
                        let replica = svcplane::start_replica(self.client.clone(), config).await?;
                        let ca = std::fs::read(plane.dir().join("ca.crt"))?;
                        svcplane::register(&self.client, &replica.url, ca, false).await?;
                        svcplane::wait_until_called(&self.client, replica.admin).await?;
                        anyhow::Ok(replica)
                    })
                    .await?;
                Ok(())
            }
            Cluster::External(_) => {
                let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
                anyhow::ensure!(
                    api.get_opt(webhook::manifests::CONFIGURATION_NAME)
                        .await?
                        .is_some(),
                    "svcplane's webhook is not registered on this cluster: install svcplane first"
                );
                Ok(())
            }
        }
    }

    /// A new namespace named `<prefix>-<random>`, deleted when the returned guard drops.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                labels: Some([("svcplane.io/e2e".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = api
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating a namespace {prefix}-*"))?;
        let name = created.metadata.name.context("namespace without a name")?;
        Ok(TestNamespace {
            name,
            client: self.client.clone(),
        })
    }
}

/// A namespace of one test.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// The API of a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Left behind only on an external cluster when the runtime is gone.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let name = std::mem::take(&mut self.name);
            runtime.spawn(async move {
                if let Err(error) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::warn!(namespace = %name, %error, "could not delete test namespace");
                }
            });
        }
    }
}

/// Creates the namespace `name` (for a control plane of one's own; [`TestEnv::namespace`]
/// makes one per test on a shared cluster).
pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}
