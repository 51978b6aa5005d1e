//! The long-running modes: wiring of the cluster client, the admin port, the controllers,
//! the webhook and shutdown on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use webhook::runtime::WebhookConfig;
use webhook::server::admin::{self, Readiness};
use webhook::server::metrics::AdmissionMetrics;

use crate::cli::{
    ClusterArgs, ControllersArgs, LogArgs, LogFormat, RangeArgs, RunArgs, WebhookArgs, WebhookFlags,
};

/// Sets up tracing as asked on the command line.
pub fn init_logging(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A client for the cluster of `--kubeconfig`, else the usual lookup.
pub async fn client(args: &ClusterArgs) -> Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Ok(Client::try_from(config)?)
}

/// Resolves once SIGTERM or SIGINT arrives; every clone sees it.
#[derive(Clone)]
struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    fn on_signals() -> Result<Self> {
        let (tx, rx) = watch::channel(false);
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
            }
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    async fn wait(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

async fn serve_admin(address: SocketAddr, registry: Registry, readiness: Readiness) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the admin address {address}"))?;
    tracing::info!(%address, "admin port: /metrics /livez /readyz");
    let router = admin::router(Arc::new(registry), readiness);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "admin server stopped");
        }
    });
    Ok(())
}

fn webhook_config(ranges: &RangeArgs, flags: &WebhookFlags) -> WebhookConfig {
    WebhookConfig {
        service_cluster_ip_ranges: ranges.service_cluster_ip_range.0.clone(),
        service_node_port_range: ranges.service_node_port_range,
        bind_address: flags.address,
        tls_cert_file: flags.tls_cert_file.clone(),
        tls_private_key_file: flags.tls_private_key_file.clone(),
        tls_reload_interval: std::time::Duration::from_secs(10),
        repair_interval: flags.repair_interval,
        allowed_external_ip_cidrs: flags.allowed_external_ip_cidrs.clone().map(|list| list.0),
        deny_foreign_pod_ips: flags.deny_foreign_pod_endpoints,
        trusted_endpoint_writers: flags.trusted_endpoint_writers.iter().cloned().collect(),
        shutdown_grace: std::time::Duration::from_secs(10),
    }
}

/// `svcplane webhook`.
pub async fn webhook(args: WebhookArgs) -> Result<()> {
    let client = client(&args.cluster).await?;
    let shutdown = Shutdown::on_signals()?;
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    let readiness = Readiness::default();
    serve_admin(args.admin.admin_address, registry, readiness.clone()).await?;
    webhook::runtime::run(
        client,
        webhook_config(&args.ranges, &args.webhook),
        metrics,
        readiness,
        shutdown.wait(),
    )
    .await?;
    tracing::info!("webhook stopped");
    Ok(())
}

/// `svcplane controllers`.
pub async fn controllers(_args: ControllersArgs) -> Result<()> {
    anyhow::bail!("the controllers are not wired into this binary yet (issue #4)")
}

/// `svcplane run`.
pub async fn all(_args: RunArgs) -> Result<()> {
    anyhow::bail!(
        "`run` needs the controllers, not wired into this binary yet (issue #4); use `svcplane webhook`"
    )
}
