//! A local Kubernetes control plane: etcd and kube-apiserver on loopback, and on demand
//! kube-controller-manager running only the in-tree endpoint controllers (the reference
//! svcplane is compared with).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::bins::KubeBins;
use crate::certs::ClusterCerts;
use crate::process::Process;

/// The in-tree controllers svcplane replaces.
pub const ENDPOINT_CONTROLLERS: &str =
    "endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller";

/// How the apiserver is configured.
#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    /// `--service-cluster-ip-range`: IPv4 first, then IPv6 for dual-stack Services.
    pub service_cluster_ip_range: String,
    /// `--service-node-port-range`.
    pub service_node_port_range: String,
    /// Further kube-apiserver flags.
    pub extra_apiserver_args: Vec<String>,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            service_cluster_ip_range: "10.96.0.0/12,fd00:10:96::/112".to_string(),
            service_node_port_range: "30000-32767".to_string(),
            extra_apiserver_args: Vec::new(),
        }
    }
}

/// etcd + kube-apiserver, stopped (and their directory removed) when dropped.
pub struct ControlPlane {
    bins: KubeBins,
    config: ControlPlaneConfig,
    apiserver_port: u16,
    etcd_url: String,
    kubeconfig: PathBuf,
    // Declared before `dir` so the processes stop before their files go.
    controller_manager: Mutex<Option<Process>>,
    apiserver: Mutex<Option<Process>>,
    etcd: Process,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the apiserver is ready.
    pub async fn start(config: ControlPlaneConfig) -> Result<Self> {
        let bins = KubeBins::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("svcplane-control-plane-")
            .tempdir()
            .context("creating the control plane's directory")?;
        write_certs(dir.path(), &ClusterCerts::generate()?)?;

        let (etcd, etcd_url) = start_etcd(&bins, dir.path()).await?;
        let apiserver_port = free_port()?;

        let kubeconfig = dir.path().join("admin.kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(dir.path(), apiserver_port))?;

        let plane = Self {
            bins,
            config,
            apiserver_port,
            etcd_url,
            kubeconfig,
            controller_manager: Mutex::new(None),
            apiserver: Mutex::new(None),
            etcd,
            dir,
        };
        plane.start_apiserver().await?;
        Ok(plane)
    }

    /// Starts kube-apiserver (again, after [`Self::stop_apiserver`]) on the same port and
    /// etcd, and waits for `/readyz`.
    pub async fn start_apiserver(&self) -> Result<()> {
        let dir = self.dir.path();
        let file = |name: &str| dir.join(name).display().to_string();
        let port = self.apiserver_port;
        let mut args = vec![
            format!("--etcd-servers={}", self.etcd_url),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            // The apiserver's own endpoint reconciler runs, as in a real cluster, and writes
            // the advertised address into default/kubernetes, where a loopback address is
            // refused: see `advertise_address`. A host with no address of its own but
            // loopback runs without it rather than advertise an address elsewhere.
            match advertise_address() {
                Some(address) => format!("--advertise-address={address}"),
                None => "--advertise-address=127.0.0.1".to_string(),
            },
            match advertise_address() {
                Some(_) => "--endpoint-reconciler-type=lease".to_string(),
                None => "--endpoint-reconciler-type=none".to_string(),
            },
            format!("--cert-dir={}", file("apiserver-certs")),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            format!(
                "--service-cluster-ip-range={}",
                self.config.service_cluster_ip_range
            ),
            format!(
                "--service-node-port-range={}",
                self.config.service_node_port_range
            ),
            "--authorization-mode=RBAC".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--allow-privileged=true".to_string(),
            format!("--service-account-issuer=https://127.0.0.1:{port}/"),
            format!("--service-account-key-file={}", file("service-account.pub")),
            format!(
                "--service-account-signing-key-file={}",
                file("service-account.key")
            ),
            "--profiling=false".to_string(),
            // Webhooks are called with a client certificate: svcplane's requires one.
            format!(
                "--admission-control-config-file={}",
                file("admission-config.yaml")
            ),
        ];
        args.extend(self.config.extra_apiserver_args.iter().cloned());
        let process = Process::spawn("kube-apiserver", &self.bins.kube_apiserver, &args, dir)?;
        *self.apiserver.lock().unwrap() = Some(process);
        self.wait_ready().await
    }

    /// Kills kube-apiserver; etcd and its data stay.
    pub fn stop_apiserver(&self) {
        self.apiserver.lock().unwrap().take();
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(apiserver) = self.apiserver.lock().unwrap().as_mut() {
                apiserver.check_running()?;
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                let tail = self
                    .apiserver
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|p| p.log_tail(30))
                    .unwrap_or_default();
                anyhow::bail!(
                    "kube-apiserver was not ready after 120s; last /readyz answer: {last}\n{tail}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Starts kube-controller-manager with only `controllers` (e.g. [`ENDPOINT_CONTROLLERS`]).
    /// Replaces a controller manager this control plane already runs.
    pub fn start_controller_manager(&self, controllers: &str) -> Result<()> {
        self.start_controller_manager_with(controllers, &[])
    }

    /// [`Self::start_controller_manager`] with further flags, e.g.
    /// `--endpointslice-updates-batch-period=0s` or `--max-endpoints-per-slice=100`, to compare
    /// with svcplane at equal settings.
    pub fn start_controller_manager_with(
        &self,
        controllers: &str,
        extra_args: &[String],
    ) -> Result<()> {
        let mut slot = self.controller_manager.lock().unwrap();
        slot.take();
        let mut args = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--controllers={controllers}"),
            "--leader-elect=false".to_string(),
            "--secure-port=0".to_string(),
            "--profiling=false".to_string(),
        ];
        args.extend(extra_args.iter().cloned());
        let mut process = Process::spawn(
            "kube-controller-manager",
            &self.bins.kube_controller_manager,
            &args,
            self.dir.path(),
        )?;
        std::thread::sleep(Duration::from_millis(200));
        process.check_running()?;
        *slot = Some(process);
        Ok(())
    }

    /// Stops kube-controller-manager if it runs.
    pub fn stop_controller_manager(&self) {
        self.controller_manager.lock().unwrap().take();
    }

    /// Stops kube-controller-manager, if it runs, with SIGTERM, and waits up to `limit` for
    /// it to exit.
    pub fn terminate_controller_manager(&self, limit: Duration) -> Result<()> {
        let process = self.controller_manager.lock().unwrap().take();
        if let Some(process) = process {
            process.terminate(limit)?;
        }
        Ok(())
    }

    /// The process id of kube-controller-manager, if it runs.
    pub fn controller_manager_pid(&self) -> Option<u32> {
        self.controller_manager
            .lock()
            .unwrap()
            .as_ref()
            .map(Process::pid)
    }

    /// Whether kube-controller-manager runs.
    pub fn controller_manager_running(&self) -> bool {
        self.controller_manager.lock().unwrap().is_some()
    }

    /// A client with the admin credentials.
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA bundle of the client certificate kube-apiserver presents to webhooks: the
    /// webhook's `--client-ca-file`.
    pub fn webhook_client_ca_file(&self) -> PathBuf {
        self.dir.path().join("webhook-client-ca.crt")
    }

    /// The control plane's working directory: certificates, logs, etcd data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How the apiserver is configured.
    pub fn config(&self) -> &ControlPlaneConfig {
        &self.config
    }

    /// The binaries this control plane runs.
    pub fn bins(&self) -> &KubeBins {
        &self.bins
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// Process ids of etcd, kube-apiserver and kube-controller-manager (those running).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.etcd.pid()];
        pids.extend(self.apiserver.lock().unwrap().as_ref().map(Process::pid));
        pids.extend(
            self.controller_manager
                .lock()
                .unwrap()
                .as_ref()
                .map(Process::pid),
        );
        pids
    }
}

/// A client for the cluster a kubeconfig file names (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn write_certs(dir: &Path, certs: &ClusterCerts) -> Result<()> {
    for (name, contents) in [
        ("ca.crt", &certs.ca_cert),
        ("apiserver.crt", &certs.serving.cert),
        ("apiserver.key", &certs.serving.key),
        ("admin.crt", &certs.admin.cert),
        ("admin.key", &certs.admin.key),
        ("service-account.pub", &certs.service_account.cert),
        ("service-account.key", &certs.service_account.key),
        ("webhook-client-ca.crt", &certs.webhook_client_ca),
        ("webhook-client.crt", &certs.webhook_client.cert),
        ("webhook-client.key", &certs.webhook_client.key),
    ] {
        std::fs::write(dir.join(name), contents).with_context(|| format!("writing {name}"))?;
    }
    let kubeconfig = dir.join("webhook-client.kubeconfig");
    let admission = webhook::manifests::AdmissionClientConfig {
        webhook_host: "*".to_string(),
        client_certificate: dir.join("webhook-client.crt"),
        client_key: dir.join("webhook-client.key"),
        kubeconfig_path: kubeconfig.clone(),
    };
    std::fs::write(&kubeconfig, admission.kubeconfig().to_string())
        .context("writing the webhook client kubeconfig")?;
    std::fs::write(
        dir.join("admission-config.yaml"),
        admission.admission_configuration().to_string(),
    )
    .context("writing the admission configuration")?;
    Ok(())
}

fn admin_kubeconfig(dir: &Path, port: u16) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: svcplane-local
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: svcplane-local
  context:
    cluster: svcplane-local
    user: admin
current-context: svcplane-local
",
        ca = file("ca.crt"),
        cert = file("admin.crt"),
        key = file("admin.key"),
    )
}

/// Starts etcd on free loopback ports and waits until it accepts connections. A port
/// [`free_port`] picked can be taken by another process before etcd binds it: etcd then
/// exits, and it is started again on other ports, in a fresh data directory.
async fn start_etcd(bins: &KubeBins, dir: &Path) -> Result<(Process, String)> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (port, peer_port) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{port}");
        let mut etcd = Process::spawn(
            "etcd",
            &bins.etcd,
            &[
                format!(
                    "--data-dir={}",
                    dir.join(format!("etcd-{attempt}")).display()
                ),
                format!("--listen-client-urls={url}"),
                format!("--advertise-client-urls={url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync".to_string(),
                "--log-level=warn".to_string(),
            ],
            dir,
        )?;
        let started = Instant::now();
        let outcome = loop {
            if let Err(error) = etcd.check_running() {
                break Err(error);
            }
            let accepting = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok();
            // Connected, and still running a moment later: the port is etcd's own.
            if accepting {
                tokio::time::sleep(Duration::from_millis(200)).await;
                break etcd.check_running();
            }
            if started.elapsed() > crate::wait::wait_limit() {
                break Err(anyhow::anyhow!(
                    "etcd did not accept connections on {url} in time; last lines:\n{}",
                    etcd.log_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match outcome {
            Ok(()) => return Ok((etcd, url)),
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %format!("{error:#}"), "etcd did not start; trying other ports");
            }
            Err(error) => return Err(error.context("starting etcd")),
        }
    }
}

/// The address the apiserver advertises: this host's own (the source address of its default
/// route), where nothing listens on the apiserver's port, so that whatever dials it is
/// refused at once. An address of another host, or none, could leave such dials hanging
/// until they time out: the apiserver dials it, and with an unanswered address creates
/// slowed down threefold. `None` when this host has no address but loopback: traffic must
/// never leave the machine.
fn advertise_address() -> Option<Ipv4Addr> {
    let own = || -> std::io::Result<std::net::IpAddr> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        // No packet is sent: connecting a UDP socket only picks a route.
        socket.connect((Ipv4Addr::new(198, 51, 100, 1), 9))?;
        Ok(socket.local_addr()?.ip())
    };
    match own() {
        Ok(std::net::IpAddr::V4(ip)) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
