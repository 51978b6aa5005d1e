//! The two control planes every table runs on, and the case that gives svcplane narrower
//! ranges than its apiserver, on a plane of its own.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use e2e::svcplane::{self, WebhookReplica};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace};
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// One kube-apiserver as a table sees it.
pub struct Plane {
    pub label: &'static str,
    pub client: Client,
}

/// kube-apiserver alone, and kube-apiserver with svcplane's webhook, both with
/// [`ControlPlaneConfig::default`]'s ranges (dual-stack: `10.96.0.0/12,fd00:10:96::/112`,
/// node ports 30000-32767).
pub struct Planes {
    pub in_tree: Plane,
    pub svcplane: Plane,
    summary: Mutex<Vec<String>>,
    // Stopped before the plane it serves.
    replica: tokio::sync::Mutex<Option<WebhookReplica>>,
    fronted: ControlPlane,
    _alone: ControlPlane,
}

impl Planes {
    pub async fn start() -> Result<Self> {
        let (alone, fronted) = tokio::try_join!(
            ControlPlane::start(ControlPlaneConfig::default()),
            ControlPlane::start(ControlPlaneConfig::default()),
        )?;
        let config = svcplane::webhook_config(&fronted)?;
        let replica = start_webhook(&fronted, config).await?;
        Ok(Self {
            in_tree: Plane {
                label: "kube-apiserver",
                client: alone.client().await?,
            },
            svcplane: Plane {
                label: "svcplane",
                client: fronted.client().await?,
            },
            summary: Mutex::new(Vec::new()),
            replica: tokio::sync::Mutex::new(Some(replica)),
            fronted,
            _alone: alone,
        })
    }

    /// Stops svcplane's webhook (kube-apiserver then allocates on its own: the registration
    /// fails open) or starts it again, registered and called.
    pub async fn set_webhook(&self, up: bool) -> Result<()> {
        let mut replica = self.replica.lock().await;
        if up && replica.is_none() {
            let config = svcplane::webhook_config(&self.fronted)?;
            *replica = Some(start_webhook(&self.fronted, config).await?);
        } else if !up {
            replica.take();
        }
        Ok(())
    }

    /// Records one case's line of the summary printed at the end.
    pub fn record(&self, line: String) {
        self.summary.lock().unwrap().push(line);
    }

    pub fn summary(&self) -> Vec<String> {
        let mut lines = self.summary.lock().unwrap().clone();
        lines.sort();
        lines
    }
}

/// Starts a webhook replica with `config` for `plane`, registers it and waits until the
/// apiserver calls it.
async fn start_webhook(
    plane: &ControlPlane,
    config: webhook::runtime::WebhookConfig,
) -> Result<WebhookReplica> {
    let client = plane.client().await?;
    svcplane::install_crd(&client).await?;
    let replica = svcplane::start_replica(client.clone(), config).await?;
    let ca = std::fs::read(plane.dir().join("ca.crt"))?;
    svcplane::register(&client, &replica.url, ca, false).await?;
    svcplane::wait_until_called(&client, replica.admin).await?;
    Ok(replica)
}

/// svcplane's ranges narrower than kube-apiserver's: every value a Service did not ask for
/// lands in svcplane's ranges, and 100 concurrent creates get 100 distinct values of each
/// kind. kube-apiserver alone picks at random from its whole ranges, so this shows the
/// values are svcplane's choice, and that kube-apiserver accepts them as requested values.
pub async fn svcplane_is_the_allocator(_: Arc<Planes>) -> Result<()> {
    const CREATES: usize = 100;
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let mut config = svcplane::webhook_config(&plane)?;
    config.service_cluster_ip_ranges =
        vec!["10.97.0.0/24".parse()?, "fd00:10:96::100/120".parse()?];
    config.service_node_port_range = "31000-31299".parse()?;
    let (v4, v6, node_ports) = (
        config.service_cluster_ip_ranges[0],
        config.service_cluster_ip_ranges[1],
        config.service_node_port_range,
    );
    let _replica = start_webhook(&plane, config).await?;
    let client = plane.client().await?;
    create_namespace(&client, "narrow").await?;
    let api: Api<Service> = Api::namespaced(client, "narrow");
    let created = create_concurrently(
        &api,
        CREATES,
        json!({ "type": "NodePort", "ipFamilyPolicy": "RequireDualStack", "ports": [{ "port": 80 }] }),
    )
    .await
    .into_iter()
    .enumerate()
    .map(|(i, created)| created.with_context(|| format!("creating s{i}")))
    .collect::<Result<Vec<_>>>()?;
    let (mut ips, mut ports) = (BTreeSet::new(), BTreeSet::new());
    for service in &created {
        let spec = service.spec.as_ref().context("a Service without spec")?;
        for ip in spec.cluster_ips.iter().flatten() {
            let address: std::net::IpAddr = ip.parse()?;
            anyhow::ensure!(
                v4.contains(&address) || v6.contains(&address),
                "{ip} is outside svcplane's ranges {v4} and {v6}: kube-apiserver chose it"
            );
            ips.insert(address);
        }
        for port in spec.ports.iter().flatten().filter_map(|p| p.node_port) {
            anyhow::ensure!(
                node_ports.contains(u16::try_from(port)?),
                "nodePort {port} is outside svcplane's range {node_ports}"
            );
            ports.insert(port);
        }
    }
    anyhow::ensure!(
        ips.len() == 2 * CREATES && ports.len() == CREATES,
        "{CREATES} dual-stack NodePort Services got {} distinct cluster IPs and {} distinct node ports",
        ips.len(),
        ports.len()
    );
    eprintln!(
        "[svcplane_is_the_allocator] {CREATES} concurrent creates: {} distinct cluster IPs in {v4} and {v6}, {} distinct node ports in {node_ports}",
        ips.len(),
        ports.len()
    );
    Ok(())
}

/// 20 concurrent creates asking for one cluster IP and one node port, on each plane: one is
/// admitted and the others get the same refusal on both (`alloc.go` `allocIPs`: the address
/// is allocated once, whichever create comes first).
pub async fn concurrent_creates_of_one_value(planes: Arc<Planes>) -> Result<()> {
    const CREATES: usize = 20;
    const CASE: &str = "concurrent";
    let mut outcomes = Vec::new();
    for plane in [&planes.in_tree, &planes.svcplane] {
        create_namespace(&plane.client, CASE).await?;
        let api: Api<Service> = Api::namespaced(plane.client.clone(), CASE);
        let answers = create_concurrently(
            &api,
            CREATES,
            json!({ "type": "NodePort", "clusterIP": "10.96.18.11", "ports": [{ "port": 80, "nodePort": 30079 }] }),
        )
        .await
        .into_iter()
        .enumerate()
        .map(|(i, answer)| match answer {
            Ok(_) => Ok("201".to_string()),
            Err(kube::Error::Api(status)) => {
                let message = status.message.replace(&format!("\"s{i}\""), "\"<name>\"");
                let message = match message.split_once("denied the request: ") {
                    Some((_, rest)) => rest.to_string(),
                    None => message,
                };
                Ok(format!("{} {message}", status.code))
            }
            Err(error) => Err(error.into()),
        })
        .collect::<Result<Vec<_>>>()?;
        let mut counted = std::collections::BTreeMap::<String, usize>::new();
        for answer in answers {
            *counted.entry(answer).or_default() += 1;
        }
        eprintln!("[{CASE}] {}: {counted:?}", plane.label);
        outcomes.push(counted);
    }
    let same = outcomes[0] == outcomes[1];
    planes.record(format!(
        "{CASE}: {CREATES} concurrent creates, {}",
        if same {
            "same answers"
        } else {
            "differing answers"
        }
    ));
    anyhow::ensure!(
        same && outcomes[0].get("201") == Some(&1),
        "20 concurrent creates of one cluster IP and node port:\n  kube-apiserver: {:?}\n  svcplane:       {:?}",
        outcomes[0],
        outcomes[1]
    );
    Ok(())
}

/// Creates Services `s0`..`s<count>` with `spec` all at once; their answers in that order.
async fn create_concurrently(
    api: &Api<Service>,
    count: usize,
    spec: serde_json::Value,
) -> Vec<kube::Result<Service>> {
    futures::future::join_all((0..count).map(|i| {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": format!("s{i}") },
            "spec": spec.clone(),
        }))
        .expect("a Service");
        let api = api.clone();
        async move { api.create(&PostParams::default(), &service).await }
    }))
    .await
}
