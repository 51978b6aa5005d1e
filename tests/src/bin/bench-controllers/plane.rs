//! A run's control plane with one side's controllers on it, and the objects the scenarios
//! write to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::bench::{load_average, pin};
use e2e::control_plane::free_port;
use e2e::create_namespace;
use e2e::kubelet::{self, PodState, PodTemplate};
use e2e::process::{Process, Resources, resources};
use e2e::svcplane::{connect_tls, http_get};
use e2e::{ControlPlane, ControlPlaneConfig, ENDPOINT_CONTROLLERS};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::{CLIENT_CONCURRENCY, CONCURRENT_SYNCS, MAX_ENDPOINTS_PER_SLICE, Options, Side};

/// A fresh control plane with one side's controllers running on it.
pub struct Run {
    pub side: Side,
    // Declared before `plane`: it stops before the plane's directory (its log) goes.
    controllers: Controllers,
    pid: u32,
    /// The CPU the controller process is pinned to, if any.
    cpu: Option<usize>,
    pub client: Client,
    plane: ControlPlane,
    // After `plane`: the apiserver writes its audit log here until it stops.
    audit: tempfile::TempDir,
}

/// How a run's controller process is started (again, after a stop), and where it serves
/// `/metrics`.
enum Controllers {
    /// kube-controller-manager, run by the control plane; `/metrics` over HTTPS with its
    /// self-signed certificate (written to `cert`), open to anonymous requests.
    InTree {
        flags: Vec<String>,
        metrics: SocketAddr,
        cert: PathBuf,
    },
    /// `svcplane controllers`; `/metrics` on its plain-HTTP admin port.
    Svcplane {
        process: Option<Process>,
        binary: PathBuf,
        args: Vec<String>,
        admin: SocketAddr,
    },
}

/// What a graceful stop of the controller process may take.
const STOP_LIMIT: Duration = Duration::from_secs(60);

impl Run {
    async fn start(side: Side, options: &Options) -> Result<Self> {
        let audit = tempfile::tempdir()?;
        let policy = audit.path().join("policy.yaml");
        std::fs::write(&policy, crate::audit::POLICY)?;
        let plane = ControlPlane::start(ControlPlaneConfig {
            extra_apiserver_args: crate::audit::apiserver_args(
                &policy,
                &audit.path().join("audit.log"),
            ),
            ..ControlPlaneConfig::default()
        })
        .await?;
        let client = plane.client().await?;
        let mut controllers = match side {
            Side::InTree | Side::InTreeQps1000 => {
                let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                let cert_dir = plane.dir().join("kube-controller-manager-certs");
                let mut flags = vec![
                    format!("--concurrent-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--concurrent-service-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--endpoint-updates-batch-period={}", options.batch_period),
                    format!(
                        "--endpointslice-updates-batch-period={}",
                        options.batch_period
                    ),
                    format!("--max-endpoints-per-slice={MAX_ENDPOINTS_PER_SLICE}"),
                    // Its /metrics on loopback (the workqueue and sync counters).
                    format!("--secure-port={}", metrics.port()),
                    "--bind-address=127.0.0.1".to_string(),
                    format!("--cert-dir={}", cert_dir.display()),
                    "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"
                        .to_string(),
                ];
                if side == Side::InTreeQps1000 {
                    flags.push("--kube-api-qps=1000".into());
                    flags.push("--kube-api-burst=1000".into());
                }
                Controllers::InTree {
                    flags,
                    metrics,
                    cert: cert_dir.join("kube-controller-manager.crt"),
                }
            }
            Side::Svcplane | Side::SvcplaneQps20 => {
                let binary = options.svcplane.clone().context("--svcplane PATH")?;
                let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                let mut args = vec![
                    "controllers".to_string(),
                    format!("--kubeconfig={}", plane.kubeconfig().display()),
                    format!("--admin-address={admin}"),
                    "--leader-elect=false".to_string(),
                    format!("--concurrent-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--concurrent-service-endpoint-syncs={CONCURRENT_SYNCS}"),
                    format!("--endpoint-updates-batch-period={}", options.batch_period),
                    format!(
                        "--endpointslice-updates-batch-period={}",
                        options.batch_period
                    ),
                    format!("--max-endpoints-per-slice={MAX_ENDPOINTS_PER_SLICE}"),
                    "--log=warn".to_string(),
                ];
                if side == Side::SvcplaneQps20 {
                    args.push("--kube-api-qps=20".into());
                    args.push("--kube-api-burst=30".into());
                }
                Controllers::Svcplane {
                    process: None,
                    binary,
                    args,
                    admin,
                }
            }
        };
        let pid = controllers.spawn(&plane, options.controller_cpu)?;
        if let Controllers::Svcplane {
            process: Some(process),
            admin,
            ..
        } = &mut controllers
        {
            wait_readyz(process, *admin).await?;
        }
        let run = Self {
            side,
            controllers,
            pid,
            cpu: options.controller_cpu,
            client,
            plane,
            audit,
        };
        run.probe().await?;
        Ok(run)
    }

    /// Stops the controller process gracefully: SIGTERM, then waits for it to exit.
    pub fn stop_controllers(&mut self) -> Result<()> {
        match &mut self.controllers {
            Controllers::InTree { .. } => self.plane.terminate_controller_manager(STOP_LIMIT),
            Controllers::Svcplane { process, .. } => match process.take() {
                Some(process) => process.terminate(STOP_LIMIT).map(drop),
                None => Ok(()),
            },
        }
    }

    /// Starts the controller process again, with the same flags; returns when it was started
    /// (without waiting for it to be ready).
    pub fn start_controllers_again(&mut self) -> Result<Instant> {
        let started = Instant::now();
        self.pid = self.controllers.spawn(&self.plane, self.cpu)?;
        Ok(started)
    }

    /// The controller process's `/metrics` text.
    pub async fn controller_metrics(&self) -> Result<String> {
        match &self.controllers {
            Controllers::InTree { metrics, cert, .. } => {
                let ca =
                    std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                https_get(*metrics, &ca, "/metrics").await
            }
            Controllers::Svcplane { admin, .. } => http_get(*admin, "/metrics").await,
        }
    }

    /// A scenario's run: the load average before it (returned), then the run, with the
    /// scenario's namespace and Nodes.
    pub async fn for_scenario(
        scenario: &str,
        namespace: &str,
        side: Side,
        options: &Options,
    ) -> Result<(Self, String)> {
        let (run, load) = Self::fresh(scenario, namespace, side, options).await?;
        create_nodes(&run.client, options.nodes).await?;
        Ok((run, load))
    }

    /// A scenario's run with its namespace and no Nodes but the probe's: the load average
    /// before it (returned), then the run.
    pub async fn fresh(
        scenario: &str,
        namespace: &str,
        side: Side,
        options: &Options,
    ) -> Result<(Self, String)> {
        let load = load_average();
        eprintln!("{scenario}, {side}: starting (load average {load})");
        let run = Self::start(side, options).await?;
        create_namespace(&run.client, namespace).await?;
        Ok((run, load))
    }

    /// The run's control plane (to start more processes on it).
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// Waits until the controllers publish a probe Service's one ready pod, so that a
    /// measurement starts with both sides up and their caches synced.
    async fn probe(&self) -> Result<()> {
        const NS: &str = "probe";
        create_namespace(&self.client, NS).await?;
        kubelet::ensure_node(&self.client, "probe-node", None, "4").await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let template = PodTemplate::new("probe", "probe-node")
            .label("app", "probe")
            .port("http", 8080, "TCP");
        kubelet::create_pod(&pods, &template).await?;
        kubelet::set_pod_status(&pods, "probe", &PodState::running("10.99.0.1", true)).await?;
        create_service(&self.client, NS, "probe", "probe").await?;
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NS);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = slices.list(&ListParams::default()).await?;
            let published = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true));
            if published {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}: the probe Service was not published within 120 s",
                self.side
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kube-apiserver's audit log (JSON lines, [`crate::audit::POLICY`]).
    pub fn audit_log(&self) -> PathBuf {
        self.audit.path().join("audit.log")
    }

    /// VmRSS, VmHWM (KiB) and CPU seconds of the controller process.
    pub fn resources(&self) -> Result<Resources> {
        resources(self.pid)
    }
}

impl Controllers {
    /// Starts the controller process, pinned to `cpu` when given; returns its pid.
    fn spawn(&mut self, plane: &ControlPlane, cpu: Option<usize>) -> Result<u32> {
        let pid = self.spawn_unpinned(plane)?;
        if let Some(cpu) = cpu {
            pin(pid, &cpu.to_string())?;
        }
        Ok(pid)
    }

    fn spawn_unpinned(&mut self, plane: &ControlPlane) -> Result<u32> {
        match self {
            Controllers::InTree { flags, .. } => {
                plane.start_controller_manager_with(ENDPOINT_CONTROLLERS, flags)?;
                plane
                    .controller_manager_pid()
                    .context("kube-controller-manager is not running")
            }
            Controllers::Svcplane {
                process,
                binary,
                args,
                ..
            } => {
                let mut started =
                    Process::spawn("svcplane-controllers", binary, args, plane.dir())?;
                // The control plane's check of a kube-controller-manager it starts, so that
                // both sides' first `/metrics` read comes as late after the start.
                std::thread::sleep(Duration::from_millis(200));
                started.check_running()?;
                let pid = started.pid();
                *process = Some(started);
                Ok(pid)
            }
        }
    }
}

/// The body of a GET of `path` over HTTPS on loopback, the server's certificate verified
/// against `ca_pem` (for its name `localhost`).
async fn https_get(addr: SocketAddr, ca_pem: &[u8], path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_tls(addr, ca_pem, None).await?;
    stream
        .write_all(
            // HTTP/1.0: the body comes whole, not chunked, and the connection then closes.
            format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    anyhow::ensure!(
        text.split(' ').nth(1) == Some("200"),
        "GET {path}: {}",
        text.lines().next().unwrap_or_default()
    );
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

async fn wait_readyz(process: &mut Process, admin: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        process.check_running()?;
        let answer = http_get(admin, "/readyz").await.unwrap_or_default();
        if answer.trim() == "ok" {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "svcplane's /readyz did not answer ok within 120 s; last answer {answer:?}; its log:\n{}",
            process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn create_service(client: &Client, namespace: &str, name: &str, app: &str) -> Result<()> {
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "selector": { "app": app },
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": "http" }],
        },
    }))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &service)
        .await
        .with_context(|| format!("creating Service {name}"))?;
    Ok(())
}

pub fn pod_ip(i: usize) -> String {
    format!(
        "10.{}.{}.{}",
        100 + i / 62_500,
        (i / 250) % 250,
        i % 250 + 1
    )
}

/// Nodes `node-0`.. in three zones.
async fn create_nodes(client: &Client, nodes: usize) -> Result<()> {
    for n in 0..nodes {
        let zone = format!("zone-{}", n % 3);
        kubelet::ensure_node(client, &format!("node-{n}"), Some(&zone), "64").await?;
    }
    Ok(())
}

/// Creates the pods (name, app label, index for the IP) in batches: each batch is created,
/// then marked ready.
pub async fn start_pods_in_batches(
    client: &Client,
    namespace: &str,
    pods: &[(String, String)],
    nodes: usize,
    batch: usize,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for (b, chunk) in pods.chunks(batch).enumerate() {
        let first = b * batch;
        let indexed: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, p)| (first + k, p.clone()))
            .collect();
        futures::stream::iter(indexed.clone())
            .map(|(i, (name, app))| {
                let api = api.clone();
                async move {
                    let template = PodTemplate::new(&name, &format!("node-{}", i % nodes))
                        .label("app", &app)
                        .port("http", 8080, "TCP");
                    kubelet::create_pod(&api, &template).await.map(drop)
                }
            })
            .buffer_unordered(CLIENT_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        futures::stream::iter(indexed)
            .map(|(i, (name, _))| {
                let api = api.clone();
                async move {
                    kubelet::set_pod_status(&api, &name, &PodState::running(&pod_ip(i), true))
                        .await
                        .map(drop)
                }
            })
            .buffer_unordered(CLIENT_CONCURRENCY)
            .try_collect::<()>()
            .await?;
    }
    Ok(())
}
