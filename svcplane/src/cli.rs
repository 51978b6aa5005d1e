//! Command-line flags. Names follow kube-apiserver and kube-controller-manager where the
//! meaning is the same, so an operator can copy them from the control plane's manifests.
//! Every flag also reads an environment variable (`SVCPLANE_<FLAG>`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use allocator::{IpFamily, PortRange};
use clap::{Args, Parser, Subcommand, ValueEnum};
use controllers::runtime::ControllerList;
use ipnet::IpNet;

/// svcplane: ClusterIP/NodePort allocation, Endpoints and EndpointSlice controllers and an
/// admission webhook for Kubernetes Services.
#[derive(Debug, Parser)]
#[command(name = "svcplane", version, propagate_version = true)]
#[command(
    long_about = "svcplane replaces, out of tree, what Kubernetes does for every Service: \
it allocates ClusterIPs and NodePorts on admission, maintains Endpoints and EndpointSlices \
from Services and Pods, and validates user-written Endpoints, EndpointSlices and externalIPs.\n\n\
Run it next to kube-controller-manager with the in-tree endpoint controllers disabled \
(`svcplane manifests` prints the flags), or as separate controller and webhook deployments."
)]
pub struct Cli {
    /// Logging.
    #[command(flatten)]
    pub logging: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Controllers (leader-elected) and webhook in one process: the sidecar mode.
    Run(Box<RunArgs>),
    /// Only the Endpoints and EndpointSlice controllers (leader-elected).
    Controllers(ControllersArgs),
    /// Only the admission webhook; run any number of replicas.
    Webhook(WebhookArgs),
    /// Print the CRD, RBAC, webhook configurations, a Deployment and the
    /// kube-controller-manager sidecar snippet, as YAML.
    Manifests(ManifestArgs),
    /// Show each range's usage, its static/dynamic band split, leaks pending repair and
    /// conflicts, read from the cluster.
    Status(StatusArgs),
    /// Print the version.
    Version,
}

/// `svcplane run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub ranges: RangeArgs,
    #[command(flatten)]
    pub webhook: WebhookFlags,
    #[command(flatten)]
    pub controllers: ControllerFlags,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub limits: ServerLimitFlags,
}

/// `svcplane controllers`.
#[derive(Debug, Args)]
pub struct ControllersArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub controllers: ControllerFlags,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub limits: ServerLimitFlags,
}

/// `svcplane webhook`.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub ranges: RangeArgs,
    #[command(flatten)]
    pub webhook: WebhookFlags,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub limits: ServerLimitFlags,
}

/// How to reach the cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Path to a kubeconfig. Without it: $KUBECONFIG, ~/.kube/config, then the in-cluster
    /// service account.
    #[arg(long, env = "SVCPLANE_KUBECONFIG", global = false)]
    pub kubeconfig: Option<PathBuf>,
}

/// The ranges, exactly as given to kube-apiserver: they must match, since the apiserver
/// checks every value svcplane writes against its own ranges.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// One CIDR, or two of different families for dual-stack (primary first), e.g.
    /// `10.96.0.0/12,fd00:10:96::/108`. IPv4 down to /8, IPv6 down to /64. Where the
    /// cluster serves ServiceCIDRs (Kubernetes 1.33+), the webhook also allocates from
    /// every usable ServiceCIDR of these families, this range first while one holds it.
    #[arg(
        long,
        env = "SVCPLANE_SERVICE_CLUSTER_IP_RANGE",
        value_name = "CIDR[,CIDR]"
    )]
    pub service_cluster_ip_range: ServiceCidrs,
    /// The NodePort range: `30000-32767` or `30000+2767`.
    #[arg(
        long,
        env = "SVCPLANE_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767",
        value_name = "RANGE"
    )]
    pub service_node_port_range: PortRange,
}

/// The webhook's flags.
#[derive(Debug, Args)]
pub struct WebhookFlags {
    /// Address of the HTTPS admission server.
    #[arg(
        long = "webhook-address",
        env = "SVCPLANE_WEBHOOK_ADDRESS",
        default_value = "0.0.0.0:9443"
    )]
    pub address: SocketAddr,
    /// Serving certificate (PEM). Reloaded when it changes, Secret symlink swaps included.
    #[arg(long, env = "SVCPLANE_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: PathBuf,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "SVCPLANE_TLS_PRIVATE_KEY_FILE", value_name = "FILE")]
    pub tls_private_key_file: PathBuf,
    /// CA bundle (PEM) of the callers allowed on the admission port: when set, a caller
    /// must present a client certificate signed by it (kube-apiserver does, given an
    /// AdmissionConfiguration: `svcplane manifests --admission-config`). Reloaded when it
    /// changes. Unset: anyone who reaches the port may call, and a warning says so.
    #[arg(long, env = "SVCPLANE_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// With --client-ca-file: only client certificates whose Common Name or a DNS name is
    /// one of these (comma-separated). Empty: any certificate of the CA.
    #[arg(
        long,
        env = "SVCPLANE_CLIENT_CERT_ALLOWED_NAMES",
        value_delimiter = ',',
        value_name = "NAME,...",
        requires = "client_ca_file"
    )]
    pub client_cert_allowed_names: Vec<String>,
    /// How often repair compares the allocation state with the Services (kube-apiserver
    /// repairs every 3m). A leaked value is freed after three sweeps in a row.
    #[arg(long, env = "SVCPLANE_REPAIR_INTERVAL", default_value = "3m", value_parser = humantime::parse_duration)]
    pub repair_interval: Duration,
    /// Only allow Service externalIPs inside these CIDRs (comma-separated; an empty value
    /// forbids externalIPs). Unset: externalIPs are not checked. Mitigates CVE-2020-8554.
    #[arg(
        long,
        env = "SVCPLANE_ALLOWED_EXTERNAL_IP_CIDRS",
        value_name = "CIDR,..."
    )]
    pub allowed_external_ip_cidrs: Option<CidrList>,
    /// Refuse user-written Endpoints/EndpointSlices pointing at pods of another namespace
    /// (CVE-2021-25740). Needs a Pod watch.
    #[arg(long, env = "SVCPLANE_DENY_FOREIGN_POD_ENDPOINTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub deny_foreign_pod_endpoints: bool,
    /// Users whose Endpoints/EndpointSlice writes are not validated. Comma-separated.
    /// Default: the in-tree endpoint controllers and svcplane's own ServiceAccount
    /// (`--service-account` in `--namespace`), the list `svcplane manifests` registers.
    #[arg(
        long,
        env = "SVCPLANE_TRUSTED_ENDPOINT_WRITERS",
        value_delimiter = ',',
        value_name = "USER,..."
    )]
    pub trusted_endpoint_writers: Option<Vec<String>>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// The Lease (`namespace/name`) electing the one replica that releases values of
    /// deleted Services and frees leaks; every replica allocates.
    #[arg(
        long,
        env = "SVCPLANE_RELEASER_LEASE",
        default_value = "kube-system/svcplane-webhook-releaser",
        value_name = "NAMESPACE/NAME"
    )]
    pub releaser_lease: String,
    /// Cluster IPs each replica persists ahead of need per range, so that it answers most
    /// admissions without waiting for a write (node ports: a quarter of it). Pooled values
    /// count as allocated for everyone else; a pool never holds more than an eighth of a
    /// range's free dynamic values. 0 writes every allocation before answering.
    #[arg(long, env = "SVCPLANE_ALLOCATION_POOL_SIZE", default_value_t = 128)]
    pub allocation_pool_size: usize,
    /// How long a replica's pool entry lives without renewal. Give every replica the same
    /// value. A replica renews every quarter of it and stops handing out its pool half of it
    /// after the last renewal; what the entry of a replica gone for this long (and for at
    /// least half of it plus --unconfirmed-allocation-timeout, so that what it handed out is
    /// stored or never will be) lists (its pool, its unconfirmed values) is freed by the
    /// releasing replica, unless a Service holds it. Replicas' clocks must differ by less
    /// than half of it.
    #[arg(long, env = "SVCPLANE_ALLOCATION_POOL_LIFETIME", default_value = "60s", value_parser = humantime::parse_duration)]
    pub allocation_pool_lifetime: Duration,
    /// How long values given at admission wait for the watch to show a Service holding
    /// them. kube-apiserver may still refuse a Service after the webhook answered
    /// (validation, other admission plugins, quota, a taken name); after this time the
    /// replica asks kube-apiserver whether a Service holds them and frees those none holds.
    /// Keep it above the longest a create may take from admission to storage: admission
    /// webhooks called after svcplane's (each up to its timeout) and the write, all bounded
    /// by kube-apiserver's --request-timeout (60 s by default). Values freed sooner could
    /// be given twice.
    #[arg(long, env = "SVCPLANE_UNCONFIRMED_ALLOCATION_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub unconfirmed_allocation_timeout: Duration,
    /// How many values one namespace may hold, per replica, before its Services are seen
    /// created; further creates in that namespace get HTTP 429 until earlier ones complete
    /// or time out. It bounds what one tenant resending refused requests can hold, and the
    /// node ports one Service may ask for at once.
    #[arg(
        long,
        env = "SVCPLANE_MAX_UNCONFIRMED_PER_NAMESPACE",
        default_value_t = 256
    )]
    pub max_unconfirmed_per_namespace: usize,
    /// The pod this replica runs in (the manifests set it from the downward API). It names
    /// the replica's pool entries, so that after a container restart the replica frees what
    /// its earlier life pooled and handed out unconfirmed one
    /// --unconfirmed-allocation-timeout after it starts, instead of leaving it to the
    /// releasing replica a pool lifetime later. Leave it unset outside a pod: replicas
    /// sharing a name would free each other's pools.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
}

impl WebhookFlags {
    /// `--trusted-endpoint-writers`, or the default derived from svcplane's identity.
    pub fn trusted_endpoint_writers(&self) -> Vec<String> {
        self.trusted_endpoint_writers.clone().unwrap_or_else(|| {
            webhook::manifests::trusted_endpoint_writers(
                &self.identity.namespace,
                &self.identity.service_account,
            )
        })
    }
}

/// Who svcplane is in the cluster: the namespace it is installed into and its
/// ServiceAccount. Both the manifests and the running process derive from these what they
/// trust, so that they agree.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// svcplane's own namespace: the one namespace its webhooks leave out.
    #[arg(
        long,
        env = "SVCPLANE_NAMESPACE",
        default_value = webhook::manifests::DEFAULT_NAMESPACE
    )]
    pub namespace: String,
    /// The ServiceAccount svcplane runs as, in `--namespace`.
    #[arg(
        long,
        env = "SVCPLANE_SERVICE_ACCOUNT",
        default_value = webhook::manifests::DEFAULT_SERVICE_ACCOUNT
    )]
    pub service_account: String,
}

/// The controllers' flags (kube-controller-manager's names and defaults).
#[derive(Debug, Args)]
pub struct ControllerFlags {
    #[command(flatten)]
    pub selection: ControllerSelection,
    /// Services whose EndpointSlices are synced at once.
    #[arg(
        long,
        env = "SVCPLANE_CONCURRENT_SERVICE_ENDPOINT_SYNCS",
        default_value_t = 5
    )]
    pub concurrent_service_endpoint_syncs: u16,
    /// Services whose Endpoints are synced at once.
    #[arg(long, env = "SVCPLANE_CONCURRENT_ENDPOINT_SYNCS", default_value_t = 5)]
    pub concurrent_endpoint_syncs: u16,
    /// Delay before a pod change is written into EndpointSlices, so that changes arriving
    /// meanwhile share one write.
    #[arg(long, env = "SVCPLANE_ENDPOINTSLICE_UPDATES_BATCH_PERIOD", default_value = "0s", value_parser = humantime::parse_duration)]
    pub endpointslice_updates_batch_period: Duration,
    /// The same for Endpoints.
    #[arg(long, env = "SVCPLANE_ENDPOINT_UPDATES_BATCH_PERIOD", default_value = "0s", value_parser = humantime::parse_duration)]
    pub endpoint_updates_batch_period: Duration,
    /// Most endpoints in one EndpointSlice (1..1000).
    #[arg(long, env = "SVCPLANE_MAX_ENDPOINTS_PER_SLICE", default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub max_endpoints_per_slice: i64,
    /// User-written Endpoints objects mirrored into EndpointSlices at once.
    #[arg(
        long,
        env = "SVCPLANE_MIRRORING_CONCURRENT_SERVICE_ENDPOINT_SYNCS",
        default_value_t = 5
    )]
    pub mirroring_concurrent_service_endpoint_syncs: u16,
    /// Delay before a change of a mirrored EndpointSlice is synced, so that changes arriving
    /// meanwhile share one sync.
    #[arg(long, env = "SVCPLANE_MIRRORING_ENDPOINTSLICE_UPDATES_BATCH_PERIOD", default_value = "0s", value_parser = humantime::parse_duration)]
    pub mirroring_endpointslice_updates_batch_period: Duration,
    /// Each controller's client-side limit on its API requests, per second (each
    /// controller has a client of its own, as in kube-controller-manager); 0: no client-side
    /// limit, the apiserver's priority and fairness alone bounds them. Set it to
    /// kube-controller-manager's default of 20 to make no more requests than it could.
    #[arg(long, env = "SVCPLANE_KUBE_API_QPS", default_value_t = 0.0)]
    pub kube_api_qps: f64,
    /// Requests each controller may make at once above --kube-api-qps (with a limit set).
    #[arg(long, env = "SVCPLANE_KUBE_API_BURST", default_value_t = 30)]
    pub kube_api_burst: u32,
    /// Elect a leader on a Lease before running the controllers. Turn off only for a
    /// single instance.
    #[arg(long, env = "SVCPLANE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "SVCPLANE_LEADER_ELECT_RESOURCE_NAME",
        default_value = "svcplane-controllers"
    )]
    pub leader_elect_resource_name: String,
    /// Namespace of the Lease.
    #[arg(
        long,
        env = "SVCPLANE_LEADER_ELECT_RESOURCE_NAMESPACE",
        default_value = "kube-system"
    )]
    pub leader_elect_resource_namespace: String,
    /// How long others wait after the leader's last renewal before taking over.
    #[arg(long, env = "SVCPLANE_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    #[arg(long, env = "SVCPLANE_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew the Lease.
    #[arg(long, env = "SVCPLANE_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub leader_elect_retry_period: Duration,
}

/// `--controllers`, shared by the subcommands that run the controllers and `manifests`.
#[derive(Debug, Args)]
pub struct ControllerSelection {
    /// Which controllers run, in kube-controller-manager's syntax and names: a comma-separated
    /// list where `*` turns on every controller that is on by default (all three here), `foo`
    /// turns on `foo` and `-foo` turns it off; the first entry naming a controller decides.
    /// svcplane's controllers are `endpoints-controller`, `endpointslice-controller` and
    /// `endpointslice-mirroring-controller` (aliases `endpoint`, `endpointslice`,
    /// `endpointslicemirroring`). The names of kube-controller-manager's other controllers are
    /// accepted and ignored (a log line says so), so the same value can be given to both; a
    /// name kube-controller-manager does not know is refused, as it refuses it. Example:
    /// `*,-endpoints-controller` runs only the EndpointSlice controllers.
    #[arg(
        long,
        env = "SVCPLANE_CONTROLLERS",
        default_value = "*",
        value_name = "NAME,...",
        allow_hyphen_values = true
    )]
    pub controllers: ControllerList,
}

/// The plain-HTTP admin port.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Address serving /metrics, /livez and /readyz. `webhook` and `run`: ready once the
    /// webhook's state is loaded and its caches synced (in `run`, the controllers' Lease and
    /// caches play no part: the webhook answers through a failover). `controllers`: ready
    /// while standing by for the Lease, and once leading, when the caches synced.
    #[arg(long, env = "SVCPLANE_ADMIN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub admin_address: SocketAddr,
}

/// What any caller may hold of the admission and admin ports. The admission port is in
/// the path of every Service create: no caller may make it hang or run out of memory or
/// file descriptors.
#[derive(Debug, Args)]
pub struct ServerLimitFlags {
    /// Longest TLS handshake, from accept.
    #[arg(long, env = "SVCPLANE_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// Longest wait for a request's headers (HTTP/1.1), counted from the connection's
    /// start or the previous response: an idle keep-alive connection is closed after it.
    #[arg(long, env = "SVCPLANE_READ_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub read_header_timeout: Duration,
    /// A connection without a request in flight and without traffic for this long is
    /// closed (HTTP/2: GOAWAY).
    #[arg(long, env = "SVCPLANE_IDLE_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Longest time to answer a request, body included; past it the answer is 504 and
    /// kube-apiserver applies the failure policy. Below the webhooks' timeoutSeconds (5s),
    /// so that the apiserver gets an answer rather than waits.
    #[arg(long, env = "SVCPLANE_REQUEST_TIMEOUT", default_value = "4s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Connections served at once on each port. Beyond it, a new connection closes the one
    /// that has waited longest (over a second) for a request, or is closed itself when all
    /// are busy: connections held open without requests cannot keep kube-apiserver out.
    #[arg(long, env = "SVCPLANE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Connections in their TLS handshake at once on the admission port (within
    /// --max-connections). When reached, a new connection closes the oldest pending one, so
    /// that callers that never finish a handshake cannot keep kube-apiserver out.
    #[arg(long, env = "SVCPLANE_MAX_PENDING_HANDSHAKES", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending_handshakes: u32,
}

impl ServerLimitFlags {
    /// The limits as the servers take them.
    pub fn limits(&self) -> webhook::server::ServerLimits {
        webhook::server::ServerLimits {
            tls_handshake_timeout: self.tls_handshake_timeout,
            header_read_timeout: self.read_header_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections as usize,
            max_pending_handshakes: self.max_pending_handshakes as usize,
        }
    }
}

/// Logging.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "SVCPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (also read from RUST_LOG).
    #[arg(long, env = "SVCPLANE_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// Log formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `svcplane manifests`.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    #[command(flatten)]
    pub ranges: RangeArgs,
    /// The namespace to install into and the ServiceAccount to create there.
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Container image.
    #[arg(long, default_value = concat!("ghcr.io/svcplane/svcplane:v", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Webhook replicas of the Deployment.
    #[arg(long, default_value_t = 2)]
    pub replicas: i32,
    /// The controllers svcplane runs (passed to `svcplane run`); kube-controller-manager's
    /// `--controllers` printed in the comments turns exactly these off.
    #[command(flatten)]
    pub controllers: ControllerSelection,
    /// PEM of the CA that signed the webhook's serving certificate (goes into caBundle).
    #[arg(long, value_name = "FILE")]
    pub ca_bundle_file: Option<PathBuf>,
    /// Register the webhook at this URL instead of the in-cluster Service (the sidecar
    /// mode: `https://127.0.0.1:9443`).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Also validate Services' externalIPs against this allow-list.
    #[arg(long, value_name = "CIDR,...")]
    pub allowed_external_ip_cidrs: Option<CidrList>,
    /// Print instead what kube-apiserver needs to call the webhook with a client
    /// certificate (the webhook requires one): an AdmissionConfiguration for its
    /// --admission-control-config-file and the kubeconfig it names.
    #[arg(long)]
    pub admission_config: bool,
    /// With --admission-config: the directory on the control-plane nodes holding
    /// webhook-client.crt and webhook-client.key, where the kubeconfig is put too.
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/svcplane")]
    pub admission_config_dir: PathBuf,
}

/// `svcplane status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Output formats of `status`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    /// A table with usage bars.
    Text,
    /// JSON.
    Json,
}

/// `--service-cluster-ip-range`: one CIDR, or two of different families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCidrs(pub Vec<IpNet>);

impl FromStr for ServiceCidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let cidrs = parse_cidrs(s)?;
        match cidrs.as_slice() {
            [] => Err("give one CIDR, or two of different families".to_string()),
            [_] => Ok(Self(cidrs)),
            [a, b] if IpFamily::of_net(a) != IpFamily::of_net(b) => Ok(Self(cidrs)),
            [_, _] => {
                Err("two CIDRs must be of different families (one IPv4, one IPv6)".to_string())
            }
            _ => Err("at most two CIDRs: one per family".to_string()),
        }
    }
}

impl fmt::Display for ServiceCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// A comma-separated list of CIDRs, possibly empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrList(pub Vec<IpNet>);

impl FromStr for CidrList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_cidrs(s).map(Self)
    }
}

fn parse_cidrs(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .map(|net| net.trunc())
                .map_err(|_| format!("{part:?} is not a CIDR (like 10.96.0.0/12 or fd00::/108)"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
