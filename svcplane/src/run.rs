//! The long-running modes: wiring of the cluster client, the admin port, the controllers,
//! the webhook and shutdown on SIGTERM or Ctrl-C.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use plumbing::Readiness;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use webhook::runtime::{Releaser, WebhookConfig};
use webhook::server::admin::{self, Liveness};
use webhook::server::client_auth::ClientAuth;
use webhook::server::metrics::AdmissionMetrics;
use webhook::server::{ServerLimits, serve};
use webhook::state::{PoolConfig, UnconfirmedConfig};

use controllers::MaxEndpointsPerSlice;
use controllers::runtime::{ClientRate, ControllersConfig};
use plumbing::lease::{LeaderElectionConfig, LeaseElector};

use crate::cli::{
    ClusterArgs, ControllerFlags, ControllersArgs, LogArgs, LogFormat, RangeArgs, RunArgs,
    ServerLimitFlags, WebhookArgs, WebhookFlags,
};

/// Sets up tracing as asked on the command line.
pub fn init_logging(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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

/// Serves `/metrics`, `/livez` and `/readyz` (from `readiness`) on `address`; returns what
/// `/livez` answers from.
async fn serve_admin(
    address: SocketAddr,
    limits: ServerLimits,
    registry: Registry,
    readiness: Readiness,
) -> Result<Liveness> {
    let liveness = Liveness::default();
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the admin address {address}"))?;
    tracing::info!(%address, "admin port: /metrics /livez /readyz");
    let router = admin::router(Arc::new(registry), readiness.clone(), liveness.clone());
    tokio::spawn(async move {
        let forever = std::future::pending::<()>();
        if let Err(error) = serve(listener, None, router, limits, forever, Duration::ZERO).await {
            tracing::error!(%error, "admin server stopped");
        }
    });
    Ok(liveness)
}

fn webhook_config(
    ranges: &RangeArgs,
    flags: &WebhookFlags,
    limits: &ServerLimitFlags,
    releaser: Releaser,
) -> WebhookConfig {
    WebhookConfig {
        service_cluster_ip_ranges: ranges.service_cluster_ip_range.0.clone(),
        service_node_port_range: ranges.service_node_port_range,
        bind_address: flags.address,
        tls_cert_file: flags.tls_cert_file.clone(),
        tls_private_key_file: flags.tls_private_key_file.clone(),
        tls_reload_interval: std::time::Duration::from_secs(10),
        client_auth: flags.client_ca_file.clone().map(|ca_file| ClientAuth {
            ca_file,
            allowed_names: flags.client_cert_allowed_names.clone(),
        }),
        limits: limits.limits(),
        repair_interval: flags.repair_interval,
        allowed_external_ip_cidrs: flags.allowed_external_ip_cidrs.clone().map(|list| list.0),
        deny_foreign_pod_ips: flags.deny_foreign_pod_endpoints,
        trusted_endpoint_writers: flags.trusted_endpoint_writers().into_iter().collect(),
        shutdown_grace: std::time::Duration::from_secs(10),
        releaser,
        pool: PoolConfig {
            size: flags.allocation_pool_size,
            lifetime: flags.allocation_pool_lifetime,
        },
        unconfirmed: UnconfirmedConfig {
            timeout: flags.unconfirmed_allocation_timeout,
            per_namespace: flags.max_unconfirmed_per_namespace,
        },
        pod_name: flags.pod_name.clone().filter(|name| !name.is_empty()),
    }
}

/// Elects, on the `--releaser-lease` Lease, the one webhook replica that releases values.
fn elect_releaser(client: Client, lease: &str, shutdown: Shutdown) -> Result<Releaser> {
    let (namespace, name) = lease
        .split_once('/')
        .with_context(|| format!("--releaser-lease {lease:?} is not namespace/name"))?;
    let config = LeaderElectionConfig {
        lease_name: name.to_string(),
        lease_namespace: namespace.to_string(),
        ..LeaderElectionConfig::default()
    };
    let (active, releaser) = watch::channel(false);
    tokio::spawn(async move {
        let mut elector = LeaseElector::new(client, config);
        loop {
            tokio::select! {
                () = elector.acquire() => {}
                () = shutdown.clone().wait() => return,
            }
            tracing::info!("this replica now releases values and frees leaks");
            let _ = active.send(true);
            let lost = tokio::select! {
                reason = elector.hold() => Some(reason),
                () = shutdown.clone().wait() => None,
            };
            let _ = active.send(false);
            match lost {
                Some(reason) => {
                    tracing::warn!(%reason, "lost the releaser Lease; another replica releases")
                }
                None => {
                    let _ = elector.release().await;
                    return;
                }
            }
        }
    });
    Ok(Releaser::elected(releaser))
}

/// `svcplane webhook`.
pub async fn webhook(args: WebhookArgs) -> Result<()> {
    let client = client(&args.cluster).await?;
    let shutdown = Shutdown::on_signals()?;
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    let readiness = Readiness::default();
    let liveness = serve_admin(
        args.admin.admin_address,
        args.limits.limits(),
        registry,
        readiness.clone(),
    )
    .await?;
    let releaser = elect_releaser(
        client.clone(),
        &args.webhook.releaser_lease,
        shutdown.clone(),
    )?;
    webhook::runtime::run(
        client,
        webhook_config(&args.ranges, &args.webhook, &args.limits, releaser),
        metrics,
        readiness.gate("webhook"),
        liveness,
        shutdown.wait(),
    )
    .await?;
    tracing::info!("webhook stopped");
    Ok(())
}

/// The controllers' configuration the flags give (refused with a message when a value cannot
/// be used).
pub fn controllers_config(flags: &ControllerFlags) -> Result<ControllersConfig> {
    let list = &flags.selection.controllers;
    for entry in list.ignored() {
        tracing::info!(
            entry,
            "--controllers names a kube-controller-manager controller svcplane does not run: ignored"
        );
    }
    Ok(ControllersConfig {
        enabled: list.enabled(),
        concurrent_service_endpoint_syncs: flags.concurrent_service_endpoint_syncs,
        concurrent_endpoint_syncs: flags.concurrent_endpoint_syncs,
        endpointslice_updates_batch_period: flags.endpointslice_updates_batch_period,
        endpoint_updates_batch_period: flags.endpoint_updates_batch_period,
        max_endpoints_per_slice: MaxEndpointsPerSlice::new(flags.max_endpoints_per_slice)?,
        mirroring_concurrent_service_endpoint_syncs: flags
            .mirroring_concurrent_service_endpoint_syncs,
        mirroring_endpoint_updates_batch_period: flags.mirroring_endpointslice_updates_batch_period,
        client_rate: ClientRate::from_flags(flags.kube_api_qps, flags.kube_api_burst)
            .map_err(anyhow::Error::msg)?,
        leader_election: LeaderElectionConfig {
            enabled: flags.leader_elect,
            lease_name: flags.leader_elect_resource_name.clone(),
            lease_namespace: flags.leader_elect_resource_namespace.clone(),
            lease_duration: flags.leader_elect_lease_duration,
            renew_deadline: flags.leader_elect_renew_deadline,
            retry_period: flags.leader_elect_retry_period,
            ..LeaderElectionConfig::default()
        },
    })
}

/// `svcplane controllers`.
pub async fn controllers(args: ControllersArgs) -> Result<()> {
    // The flags are checked before the cluster is reached, so that a bad value is what the
    // error says.
    let config = controllers_config(&args.controllers)?;
    let client = client(&args.cluster).await?;
    let shutdown = Shutdown::on_signals()?;
    let mut registry = Registry::default();
    let controllers = controllers::runtime::run(client, config, &mut registry, shutdown.wait());
    serve_admin(
        args.admin.admin_address,
        args.limits.limits(),
        registry,
        controllers.readiness(),
    )
    .await?;
    controllers.await?;
    tracing::info!("controllers stopped");
    Ok(())
}

/// `svcplane run`: the controllers and the webhook in one process. Either failing stops
/// the process (a lost Lease included: the orchestrator restarts it, as for
/// kube-controller-manager).
pub async fn all(args: RunArgs) -> Result<()> {
    let config = controllers_config(&args.controllers)?;
    let client = client(&args.cluster).await?;
    let shutdown = Shutdown::on_signals()?;
    let mut registry = Registry::default();
    let controllers = controllers::runtime::run(
        client.clone(),
        config,
        &mut registry,
        shutdown.clone().wait(),
    );
    let metrics = AdmissionMetrics::register(&mut registry);
    // The pod's readiness is the webhook's alone: it routes admission reviews. A standby
    // that wins the controllers' Lease syncs their caches while its webhook keeps
    // answering; with the controllers' gate in, a failover left no replica ready for that
    // time, and the Endpoints check (failurePolicy Fail) refused every user's write.
    let readiness = Readiness::default();
    let webhook_ready = readiness.gate("webhook");
    let liveness = serve_admin(
        args.admin.admin_address,
        args.limits.limits(),
        registry,
        readiness,
    )
    .await?;
    let releaser = elect_releaser(
        client.clone(),
        &args.webhook.releaser_lease,
        shutdown.clone(),
    )?;
    let webhook = webhook::runtime::run(
        client,
        webhook_config(&args.ranges, &args.webhook, &args.limits, releaser),
        metrics,
        webhook_ready,
        liveness,
        shutdown.wait(),
    );
    tokio::try_join!(async { controllers.await.context("controllers") }, async {
        webhook.await.context("webhook")
    },)?;
    tracing::info!("stopped");
    Ok(())
}
