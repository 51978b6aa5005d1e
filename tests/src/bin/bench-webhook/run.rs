//! One run: a fresh control plane, with or without svcplane's webhook, a warm-up, then the
//! measured burst of creates.

use std::sync::Arc;

use anyhow::Result;
use e2e::bench::{apiserver_metrics, load_average, other_cpus, pin};
use e2e::load::{self, Burst, BurstReport};
use e2e::process::resources;
use e2e::svcplane::{self, BinaryReplica};
use e2e::{ControlPlane, ControlPlaneConfig, create_namespace};

use crate::histogram::{ApiserverFigures, Histogram};
use crate::{Options, shape};

async fn apiserver_figures(client: &kube::Client) -> Result<ApiserverFigures> {
    Ok(ApiserverFigures::parse(&apiserver_metrics(client).await?))
}

pub struct RunResult {
    pub report: BurstReport,
    pub handling: Option<Histogram>,
    pub apiserver: ApiserverFigures,
    /// CPU seconds used during the measured creates by each of [`CPU_OF`].
    pub cpu: Vec<f64>,
    /// `/proc/loadavg`'s 1-minute figure when the run started.
    pub load: String,
}

async fn handling_histogram(replica: &BinaryReplica) -> Result<Histogram> {
    Ok(Histogram::parse(
        &svcplane::http_get(replica.admin, "/metrics").await?,
    ))
}

pub async fn run(options: &Options, with_webhook: bool) -> Result<RunResult> {
    let load = load_average()
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let client = plane.client().await?;
    let replica = if with_webhook {
        let flags = ["--log=warn".to_string()];
        Some(svcplane::start_binary(&plane, &options.svcplane, "webhook", &flags).await?)
    } else {
        None
    };
    if let Some(cpu) = options.webhook_cpu {
        let &[etcd, apiserver] = plane.pids().as_slice() else {
            anyhow::bail!("expected etcd and kube-apiserver alone: {:?}", plane.pids());
        };
        let others = other_cpus(cpu)?;
        for pid in [etcd, apiserver, std::process::id()] {
            pin(pid, &others)?;
        }
        if let Some(replica) = &replica {
            pin(replica.process.pid(), &cpu.to_string())?;
        }
    }
    let mut clients = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        clients.push(plane.client().await?);
    }
    for namespace in ["warmup", "bench"] {
        create_namespace(&client, namespace).await?;
    }
    let burst = |namespace: &str, count: usize, rate: Option<f64>| Burst {
        namespace: namespace.to_string(),
        count,
        prefix: "svc".to_string(),
        shape,
        retry_for: None,
        rate,
    };
    let warmup = load::run(
        &clients,
        &burst("warmup", options.warmup, None),
        Arc::default(),
    )
    .await;
    anyhow::ensure!(
        warmup.error_count() == 0,
        "the warm-up failed: {}",
        warmup.summary()
    );

    let before = match &replica {
        Some(replica) => Some(handling_histogram(replica).await?),
        None => None,
    };
    let apiserver_before = apiserver_figures(&client).await?;
    let &[etcd, apiserver] = plane.pids().as_slice() else {
        anyhow::bail!("expected etcd and kube-apiserver alone: {:?}", plane.pids());
    };
    let webhook = replica.as_ref().map_or(0, |replica| replica.process.pid());
    let pids = [etcd, apiserver, webhook, std::process::id()];
    let cpu_before = cpu_seconds(&pids);
    let report = load::run(
        &clients,
        &burst("bench", options.services, options.rate()),
        Arc::default(),
    )
    .await;
    let cpu: Vec<f64> = cpu_seconds(&pids)
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| after - before)
        .collect();
    let apiserver = apiserver_figures(&client).await?.since(&apiserver_before);
    let handling = match (&replica, before) {
        (Some(replica), Some(before)) => Some(handling_histogram(replica).await?.since(&before)),
        _ => None,
    };
    drop(replica);
    drop(plane);
    Ok(RunResult {
        report,
        handling,
        apiserver,
        cpu,
        load,
    })
}

/// User + system seconds each process has used so far (0 for pid 0, or one gone).
fn cpu_seconds(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|&pid| match pid {
            0 => 0.0,
            pid => resources(pid).map_or(0.0, |r| r.cpu_seconds),
        })
        .collect()
}

/// Whose CPU time `RunResult::cpu` holds, in order.
pub const CPU_OF: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "svcplane webhook",
    "driver (its clients)",
];
