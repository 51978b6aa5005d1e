//! One case's cluster: a local control plane, two webhook replicas and the round-robin
//! proxy the apiserver calls them through.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use e2e::proxy::{ProxyCerts, RoundRobinProxy};
use e2e::svcplane::{self, WebhookReplica};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace, wait};
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::{Api, Client};
use webhook::runtime::{Releaser, WebhookConfig};

const REPLICAS: usize = 2;
pub const RELEASER: usize = 0;
/// The replicas' pool lifetime: short, so that the pool of a killed replica is left to
/// repair within the test (after this, then three repair sweeps).
pub const POOL_LIFETIME: Duration = Duration::from_secs(10);
/// The replicas' unconfirmed-allocation timeout: short for the same reason.
pub const UNCONFIRMED_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after its last renewal a replica's entry lives for the others (15 s here): what
/// it lists is pooled until then, and reclaimed after.
pub fn entry_life() -> Duration {
    webhook::state::PoolConfig {
        size: 0,
        lifetime: POOL_LIFETIME,
    }
    .dead_after(UNCONFIRMED_TIMEOUT)
}
const MUTATIONS: &str = "svcplane_admission_reviews_total{webhook=\"mutate-services\"";

pub struct Setup {
    // Dropped in this order: the replicas and the proxy before the apiserver they talk to.
    replicas: Vec<Option<WebhookReplica>>,
    configs: Vec<WebhookConfig>,
    pub proxy: RoundRobinProxy,
    _certs: ProxyCerts,
    pub client: Client,
    pub plane: ControlPlane,
}

impl Setup {
    /// A fresh control plane with two replicas (repair every `repair_interval`) registered
    /// through the proxy, and the apiserver calling them.
    pub async fn start(repair_interval: Duration) -> Result<Self> {
        Self::start_tuned(repair_interval, |_| {}).await
    }

    /// [`Setup::start`], with `tune` applied to each replica's configuration.
    pub async fn start_tuned(
        repair_interval: Duration,
        tune: impl Fn(&mut WebhookConfig),
    ) -> Result<Self> {
        Self::start_on(ControlPlaneConfig::default(), repair_interval, tune).await
    }

    /// [`Setup::start_tuned`] on a control plane configured as `plane`.
    pub async fn start_on(
        plane: ControlPlaneConfig,
        repair_interval: Duration,
        tune: impl Fn(&mut WebhookConfig),
    ) -> Result<Self> {
        let plane = ControlPlane::start(plane).await?;
        let client = plane.client().await?;
        svcplane::install_crd(&client).await?;
        let certs = ProxyCerts::generate()?;
        let mut replicas = Vec::new();
        let mut configs = Vec::new();
        for index in 0..REPLICAS {
            let mut config = svcplane::webhook_config(&plane)?;
            config.repair_interval = repair_interval;
            config.pool.lifetime = POOL_LIFETIME;
            // A dead replica's entry is reclaimed half a lifetime plus this after its last
            // renewal (when whatever it handed out is stored or never will be): 15 s here.
            config.unconfirmed.timeout = UNCONFIRMED_TIMEOUT;
            // Replica 0 is the one that releases values and frees leaks, as the holder of
            // the releaser Lease would be; the cases kill and restart replica 1.
            if index != RELEASER {
                config.releaser = Releaser::elected(tokio::sync::watch::channel(false).1);
            }
            config.tls_cert_file = certs.cert_file.clone();
            config.tls_private_key_file = certs.key_file.clone();
            // Each replica in a pod of its own: a restart keeps the name, as a container
            // restarted in its pod does.
            config.pod_name = Some(format!("replica-{index}"));
            tune(&mut config);
            replicas.push(Some(
                svcplane::start_replica(client.clone(), config.clone()).await?,
            ));
            configs.push(config);
        }
        let proxy =
            RoundRobinProxy::start(configs.iter().map(|c| c.bind_address).collect()).await?;
        svcplane::register(&client, &proxy.url(), certs.ca.clone(), false).await?;
        let setup = Self {
            replicas,
            configs,
            proxy,
            _certs: certs,
            client,
            plane,
        };
        setup.wait_until_called().await?;
        Ok(setup)
    }

    /// Waits until Service admissions reach the replicas through the proxy.
    async fn wait_until_called(&self) -> Result<()> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let probe: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "svcplane-webhook-probe" },
            "spec": { "ports": [{ "port": 80 }] },
        }))?;
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        wait::until("the apiserver calling the webhook replicas", || async {
            let before = self.answered().await?.iter().sum::<f64>();
            services.create(&dry_run, &probe).await?;
            let after = self.answered().await?.iter().sum::<f64>();
            Ok(if after > before {
                Ok(())
            } else {
                Err(format!(
                    "no admission review received yet; the apiserver's log on webhooks:\n{}",
                    self.apiserver_log_about("webhook")
                ))
            })
        })
        .await
    }

    /// The last lines of the apiserver's log that mention `word`.
    fn apiserver_log_about(&self, word: &str) -> String {
        let log = std::fs::read_to_string(self.plane.dir().join("kube-apiserver.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(word)).collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Mutating reviews each running replica answered since it started (0 when stopped).
    pub async fn answered(&self) -> Result<Vec<f64>> {
        let mut counts = Vec::new();
        for replica in &self.replicas {
            let count = match replica {
                Some(replica) => svcplane::metric_sum(replica.admin, MUTATIONS).await?,
                None => 0.0,
            };
            // A sum over no sample is -0.0: shown as 0.
            counts.push(count + 0.0);
        }
        Ok(counts)
    }

    /// Kills replica `index` (not the releaser) without grace. `WebhookReplica::kill` stops its tasks, but
    /// connections it had accepted are served by tasks of their own, which the death of a
    /// process would end too: the proxy cuts them.
    pub fn kill_replica(&mut self, index: usize) {
        assert_ne!(index, RELEASER, "nothing would free the leaks");
        if let Some(replica) = self.replicas[index].take() {
            replica.kill();
        }
        self.proxy.cut(index);
    }

    /// Starts replica `index` again, on a fresh port the proxy then sends to.
    pub async fn restart_replica(&mut self, index: usize) -> Result<SocketAddr> {
        let mut config = self.configs[index].clone();
        config.bind_address = svcplane::webhook_config(&self.plane)?.bind_address;
        let replica = svcplane::start_replica(self.client.clone(), config.clone()).await?;
        self.proxy.set_backend(index, config.bind_address);
        self.replicas[index] = Some(replica);
        let addr = config.bind_address;
        self.configs[index] = config;
        Ok(addr)
    }

    /// Sends every new connection of the proxy to replica `index`: the apiserver then calls
    /// only that one (connections already open are cut). Returns after a moment, so that
    /// kube-apiserver has seen the cut connections close: a review it sends on one it still
    /// takes for open fails ("write: broken pipe") and is not retried.
    pub async fn only_through(&self, index: usize) {
        for other in 0..self.configs.len() {
            self.proxy
                .set_backend(other, self.configs[index].bind_address);
            self.proxy.cut(other);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// What replica `index`'s `/livez` reports failing (nothing for a stopped one).
    pub fn liveness_failures(&self, index: usize) -> Vec<(&'static str, String)> {
        self.replicas[index]
            .as_ref()
            .map(|replica| replica.liveness.failures())
            .unwrap_or_default()
    }

    /// Whether every replica runs and reports ready.
    pub fn replicas_ready(&self) -> bool {
        self.replicas
            .iter()
            .all(|r| r.as_ref().is_some_and(WebhookReplica::is_ready))
    }

    /// Creates namespace `name`.
    pub async fn namespace(&self, name: &str) -> Result<String> {
        create_namespace(&self.client, name).await?;
        Ok(name.to_string())
    }

    /// `count` clients, each with its own connections, as separate users' tools would be.
    pub async fn clients(&self, count: usize) -> Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(self.plane.client().await?);
        }
        Ok(clients)
    }

    /// The sum of the apiserver's `/metrics` samples whose line starts with `prefix`.
    pub async fn apiserver_metric(&self, prefix: &str) -> Result<f64> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = self.client.request_text(request).await?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}
