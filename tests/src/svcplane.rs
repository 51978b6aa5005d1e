//! svcplane's webhook against a local control plane, registered with its apiserver: run
//! in-process (the e2e suite) or as svcplane's own binary (the local mode, the benchmark).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use plumbing::Readiness;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webhook::manifests::{self, Endpoint, Registration};
use webhook::runtime::{Releaser, WebhookConfig};
use webhook::server::ServerLimits;
use webhook::server::admin::{self, Liveness};
use webhook::server::client_auth::ClientAuth;
use webhook::server::metrics::AdmissionMetrics;
use webhook::state::{PoolConfig, UnconfirmedConfig};

use crate::certs::WEBHOOK_CLIENT_NAME;
use crate::control_plane::{ControlPlane, free_port};
use crate::process::Process;
use crate::wait;

/// The field manager of what svcplane applies.
const MANAGER: &str = "svcplane";

/// A webhook replica running in this process. Stops when dropped.
pub struct WebhookReplica {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The plain-HTTP admin address (`/metrics`, `/readyz`).
    pub admin: SocketAddr,
    readiness: Readiness,
    /// What its `/livez` answers.
    pub liveness: Liveness,
    shutdown: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl WebhookReplica {
    /// Whether it reports ready.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Stops it the way SIGKILL would: no grace for in-flight requests.
    pub fn kill(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for WebhookReplica {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The webhook configuration matching `plane`'s apiserver flags, serving with the
/// apiserver's loopback certificate (signed by the plane's CA).
pub fn webhook_config(plane: &ControlPlane) -> Result<WebhookConfig> {
    let config = plane.config();
    Ok(WebhookConfig {
        service_cluster_ip_ranges: config
            .service_cluster_ip_range
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?,
        service_node_port_range: config.service_node_port_range.parse()?,
        bind_address: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
        tls_cert_file: plane.dir().join("apiserver.crt"),
        tls_private_key_file: plane.dir().join("apiserver.key"),
        tls_reload_interval: Duration::from_secs(10),
        // Only kube-apiserver may call, as in production.
        client_auth: Some(ClientAuth {
            ca_file: plane.webhook_client_ca_file(),
            allowed_names: vec![WEBHOOK_CLIENT_NAME.to_string()],
        }),
        limits: ServerLimits::default(),
        repair_interval: Duration::from_secs(180),
        allowed_external_ip_cidrs: None,
        deny_foreign_pod_ips: true,
        trusted_endpoint_writers: default_trusted_endpoint_writers().into_iter().collect(),
        shutdown_grace: Duration::from_secs(5),
        releaser: Releaser::always(),
        pool: PoolConfig {
            size: 128,
            lifetime: Duration::from_secs(60),
        },
        // Shorter than the default (75 s, above kube-apiserver's request timeout): the
        // suites' local control planes run no admission webhook but svcplane's, and the
        // allocation differences wait for refused requests' values to be given back.
        unconfirmed: UnconfirmedConfig {
            timeout: Duration::from_secs(30),
            ..UnconfirmedConfig::default()
        },
        pod_name: None,
    })
}

/// The trusted endpoint writers of svcplane installed with the default namespace and
/// ServiceAccount: the replicas' and the registration's.
pub fn default_trusted_endpoint_writers() -> Vec<String> {
    manifests::trusted_endpoint_writers(
        manifests::DEFAULT_NAMESPACE,
        manifests::DEFAULT_SERVICE_ACCOUNT,
    )
}

/// Installs the CRD and waits until it is served.
pub async fn install_crd(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = manifests::crd();
    let name = crd.meta().name.clone().context("CRD without a name")?;
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the RangeAllocation CRD")?;
    wait::until(format!("CRD {name} established"), || async {
        let crd = api.get(&name).await?;
        let established = crd
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(if established {
            Ok(())
        } else {
            Err("not established")
        })
    })
    .await
}

/// Starts a webhook replica with `config` and waits until it is ready.
pub async fn start_replica(client: Client, config: WebhookConfig) -> Result<WebhookReplica> {
    let mut registry = Registry::default();
    let metrics = AdmissionMetrics::register(&mut registry);
    let (readiness, liveness) = (Readiness::default(), Liveness::default());
    let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let admin_listener = tokio::net::TcpListener::bind(admin_addr).await?;
    let admin_router = admin::router(Arc::new(registry), readiness.clone(), liveness.clone());
    let admin_task = tokio::spawn(async move {
        let _ = axum::serve(admin_listener, admin_router).await;
    });

    let (shutdown, on_shutdown) = oneshot::channel::<()>();
    let url = format!("https://{}", config.bind_address);
    let (run_readiness, run_liveness) = (readiness.gate("webhook"), liveness.clone());
    let webhook_task = tokio::spawn(async move {
        let stop = async move {
            let _ = on_shutdown.await;
        };
        if let Err(error) =
            webhook::runtime::run(client, config, metrics, run_readiness, run_liveness, stop).await
        {
            tracing::error!(%error, "webhook replica stopped");
        }
    });
    let replica = WebhookReplica {
        url,
        admin: admin_addr,
        readiness,
        liveness,
        shutdown: Some(shutdown),
        tasks: vec![webhook_task, admin_task],
    };
    wait::until("the webhook replica ready", || async {
        Ok(if replica.is_ready() {
            Ok(())
        } else {
            Err("not ready")
        })
    })
    .await?;
    Ok(replica)
}

/// svcplane's own binary serving the webhook of a local control plane. Stops when dropped.
pub struct BinaryReplica {
    /// The running `svcplane` process; its log is `svcplane.log` in the plane's directory.
    pub process: Process,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The plain-HTTP admin address (`/metrics`, `/readyz`).
    pub admin: SocketAddr,
}

/// Starts `svcplane <mode>` (`webhook` or `run`, with `extra_flags`) for `plane`: installs
/// the CRD, waits for `/readyz`, registers the webhook with the plane's CA and waits until
/// the apiserver calls it.
pub async fn start_binary(
    plane: &ControlPlane,
    binary: &Path,
    mode: &str,
    extra_flags: &[String],
) -> Result<BinaryReplica> {
    let client = plane.client().await?;
    install_crd(&client).await?;
    let webhook_port = free_port()?;
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let config = plane.config();
    let mut flags = vec![
        mode.to_string(),
        format!("--kubeconfig={}", plane.kubeconfig().display()),
        format!(
            "--service-cluster-ip-range={}",
            config.service_cluster_ip_range
        ),
        format!(
            "--service-node-port-range={}",
            config.service_node_port_range
        ),
        format!(
            "--tls-cert-file={}",
            plane.dir().join("apiserver.crt").display()
        ),
        format!(
            "--tls-private-key-file={}",
            plane.dir().join("apiserver.key").display()
        ),
        format!("--webhook-address=127.0.0.1:{webhook_port}"),
        format!(
            "--client-ca-file={}",
            plane.webhook_client_ca_file().display()
        ),
        format!("--client-cert-allowed-names={WEBHOOK_CLIENT_NAME}"),
        format!("--admin-address={admin}"),
    ];
    flags.extend_from_slice(extra_flags);
    let mut process = Process::spawn("svcplane", binary, &flags, plane.dir())?;
    wait::until("svcplane ready (/readyz)", || {
        let running = process.check_running();
        async move {
            running?;
            Ok(match http_get(admin, "/readyz").await {
                Ok(body) if body.trim() == "ok" => Ok(()),
                Ok(body) => Err(body),
                Err(error) => Err(error.to_string()),
            })
        }
    })
    .await?;
    let url = format!("https://127.0.0.1:{webhook_port}");
    let ca = std::fs::read(plane.dir().join("ca.crt"))?;
    register(&client, &url, ca, false).await?;
    wait_until_called(&client, admin).await?;
    Ok(BinaryReplica {
        process,
        url,
        admin,
    })
}

/// Registers the webhook at `url` with the apiserver (both configurations).
pub async fn register(
    client: &Client,
    url: &str,
    ca_bundle: Vec<u8>,
    validate_services: bool,
) -> Result<()> {
    let registration = Registration {
        endpoint: Endpoint::Url(url.to_string()),
        namespace: manifests::DEFAULT_NAMESPACE.to_string(),
        ca_bundle,
        trusted_endpoint_writers: default_trusted_endpoint_writers(),
        validate_services,
    };
    let params = PatchParams::apply(MANAGER).force();
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mutating
        .patch(
            manifests::CONFIGURATION_NAME,
            &params,
            &Patch::Apply(&manifests::mutating(&registration)),
        )
        .await
        .context("registering the mutating webhook")?;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    validating
        .patch(
            manifests::CONFIGURATION_NAME,
            &params,
            &Patch::Apply(&manifests::validating(&registration)),
        )
        .await
        .context("registering the validating webhook")?;
    Ok(())
}

/// Reads a counter of the replica's `/metrics`: the sum of the samples whose line starts
/// with `prefix`.
pub async fn metric_sum(admin: SocketAddr, prefix: &str) -> Result<f64> {
    let body = http_get(admin, "/metrics").await?;
    Ok(body
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The body of a plain-HTTP GET on loopback (the admin port).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// Waits until the apiserver sends Service admissions to the webhook whose admin port is
/// `admin`: a webhook
/// configuration takes effect once the apiserver's informer has it.
pub async fn wait_until_called(client: &Client, admin: SocketAddr) -> Result<()> {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use kube::api::PostParams;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "svcplane-webhook-probe" },
        "spec": { "ports": [{ "port": 80 }] },
    }))?;
    let endpoint: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "svcplane-webhook-probe" },
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    // The two configurations reach the apiserver through two informers: wait for both.
    let mutating = "svcplane_admission_reviews_total{webhook=\"mutate-services\"";
    let validating = "svcplane_admission_reviews_total{webhook=\"validate-endpoints\"";
    wait::until("the apiserver calling the webhook", || async {
        let before = metric_sum(admin, mutating).await?;
        services.create(&dry_run, &service).await?;
        let after = metric_sum(admin, mutating).await?;
        Ok(if after > before {
            Ok(())
        } else {
            Err("no Service admission review received yet")
        })
    })
    .await?;
    wait::until("the apiserver calling the endpoint validation", || async {
        let before = metric_sum(admin, validating).await?;
        let _ = endpoints.create(&dry_run, &endpoint).await;
        let after = metric_sum(admin, validating).await?;
        Ok(if after > before {
            Ok(())
        } else {
            Err("no Endpoints admission review received yet")
        })
    })
    .await
}

/// A caller's TLS identity: its client certificate and key (PEM).
pub struct ClientIdentity {
    pub cert: String,
    pub key: String,
}

/// A TLS connection to the webhook at `addr` (its certificate verified against `ca_pem`),
/// presenting `identity` if given, as any caller that reaches the port could.
pub async fn connect_tls(
    addr: SocketAddr,
    ca_pem: &[u8],
    identity: Option<&ClientIdentity>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(webhook::server::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(identity.cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(identity.key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

/// Posts `body` to `path` of the webhook at `addr` over [`connect_tls`] and returns the
/// HTTP status. An `Err` is a refusal below HTTP: the handshake or the connection ended.
pub async fn post_review(
    addr: SocketAddr,
    ca_pem: &[u8],
    identity: Option<&ClientIdentity>,
    path: &str,
    body: &[u8],
) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = connect_tls(addr, ca_pem, identity).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {text:?}"))?;
    Ok(status)
}
