//! What holding svcplane's admission port costs it (issue 14): against one replica running
//! as its own process (`svcplane webhook`, the binary given as the first argument) on a
//! fresh local control plane, opens `--connections` (or `$CONNECTIONS`; default 10,000)
//! connections that never finish a request, half of them TCP only (a TLS handshake never
//! started), half TLS with kube-apiserver's client certificate and a request whose headers
//! never end; then sends 8 concurrent reviews of almost 3 MiB. Prints the replica's VmRSS and
//! VmHWM (from `/proc/<pid>/status`) after each step and whether an ordinary review is
//! answered, and how long after the flood it is. A measurement, not a test: nothing is
//! asserted. Loopback only.
//! `hack/bench-connections.sh` builds it, raises the file descriptor limit and runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use e2e::bench::init_tracing;
use e2e::process::resources;
use e2e::svcplane::{self, ClientIdentity};
use e2e::{ControlPlane, ControlPlaneConfig};
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use webhook::server::{MAX_REVIEW_BYTES, paths};

fn review(padding: usize) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3d0f1c8e-0000-4000-8000-000000000014",
            "kind": { "group": "", "version": "v1", "kind": "Service" },
            "resource": { "group": "", "version": "v1", "resource": "services" },
            "name": "bench",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": { "username": "bench" },
            "dryRun": true,
            "object": {
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "bench", "annotations": { "padding": "x".repeat(padding) } },
                "spec": { "ports": [{ "port": 80 }] },
            },
        }
    })
    .to_string()
    .into_bytes()
}

fn memory(pid: u32, step: &str) {
    match resources(pid) {
        Ok(r) => println!(
            "{step:<58} VmRSS {:>7.1} MiB  VmHWM {:>7.1} MiB",
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0
        ),
        Err(error) => println!("{step}: /proc unreadable: {error}"),
    }
}

struct Target {
    addr: SocketAddr,
    ca: Vec<u8>,
    apiserver: ClientIdentity,
}

impl Target {
    async fn ordinary_review(&self) -> String {
        match svcplane::post_review(
            self.addr,
            &self.ca,
            Some(&self.apiserver),
            paths::MUTATE_SERVICES,
            &review(0),
        )
        .await
        {
            Ok(status) => format!("HTTP {status}"),
            Err(error) => format!("refused ({error})"),
        }
    }
}

async fn bench(binary: PathBuf, connections: usize) -> Result<()> {
    let plane = ControlPlane::start(ControlPlaneConfig::default()).await?;
    let replica = svcplane::start_binary(&plane, &binary, "webhook", &[]).await?;
    let pid = replica.process.pid();
    let read = |name: &str| std::fs::read_to_string(plane.dir().join(name));
    let target = Arc::new(Target {
        addr: replica.url.trim_start_matches("https://").parse()?,
        ca: std::fs::read(plane.dir().join("ca.crt"))?,
        apiserver: ClientIdentity {
            cert: read("webhook-client.crt")?,
            key: read("webhook-client.key")?,
        },
    });
    println!(
        "svcplane webhook (pid {pid}) at {}, default limits; {connections} connections",
        target.addr
    );
    memory(pid, "ready");
    println!("ordinary review before: {}", target.ordinary_review().await);

    let opened = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let flood_started = Instant::now();
    let held: Vec<Box<dyn Send>> = futures::stream::iter(0..connections)
        .map(|i| {
            let target = Arc::clone(&target);
            let (opened, refused) = (&opened, &refused);
            async move {
                let held: Result<Box<dyn Send>> = if i % 2 == 0 {
                    tokio::net::TcpStream::connect(target.addr)
                        .await
                        .map(|s| Box::new(s) as Box<dyn Send>)
                        .map_err(Into::into)
                } else {
                    async {
                        let mut tls =
                            svcplane::connect_tls(target.addr, &target.ca, Some(&target.apiserver))
                                .await?;
                        tls.write_all(b"POST /mutate/services HTTP/1.1\r\nHost: loc")
                            .await?;
                        Ok(Box::new(tls) as Box<dyn Send>)
                    }
                    .await
                };
                match held {
                    Ok(stream) => {
                        opened.fetch_add(1, Ordering::Relaxed);
                        Some(stream)
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
        })
        .buffer_unordered(256)
        .filter_map(|held| async move { held })
        .collect()
        .await;
    println!(
        "flood: {} connections opened (TCP connected, or TLS + partial headers written), {} refused, in {:.1} s",
        opened.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        flood_started.elapsed().as_secs_f64()
    );
    memory(pid, "during the flood");
    println!(
        "ordinary review during the flood: {}",
        target.ordinary_review().await
    );
    let waited = Instant::now();
    let answer = loop {
        let answer = target.ordinary_review().await;
        if answer == "HTTP 200" || waited.elapsed() > Duration::from_secs(120) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "ordinary review answered {answer} {:.1} s after the flood (flood connections still held by the client)",
        waited.elapsed().as_secs_f64()
    );
    memory(pid, "after the flood's connections timed out");

    let body = Arc::new(review(MAX_REVIEW_BYTES - 4096));
    let big: Vec<_> = (0..8)
        .map(|_| {
            let (target, body) = (Arc::clone(&target), Arc::clone(&body));
            tokio::spawn(async move {
                svcplane::post_review(
                    target.addr,
                    &target.ca,
                    Some(&target.apiserver),
                    paths::MUTATE_SERVICES,
                    &body,
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in big {
        statuses.push(match task.await? {
            Ok(status) => status.to_string(),
            Err(error) => format!("error ({error})"),
        });
    }
    println!(
        "8 concurrent reviews of {} bytes: {}",
        body.len(),
        statuses.join(", ")
    );
    memory(pid, "after 8 concurrent 3 MiB reviews (VmHWM: peak)");
    let over = review(MAX_REVIEW_BYTES + 1);
    let status = svcplane::post_review(
        target.addr,
        &target.ca,
        Some(&target.apiserver),
        paths::MUTATE_SERVICES,
        &over,
    )
    .await
    .map_or_else(|e| format!("error ({e})"), |s| s.to_string());
    println!("a review of {} bytes: {status}", over.len());
    println!(
        "ordinary review at the end: {}",
        target.ordinary_review().await
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    memory(pid, "at the end, flood connections closed");
    Ok(())
}

/// What holding svcplane's admission port costs one replica.
#[derive(Debug, Parser)]
#[command(name = "bench-connections")]
struct Options {
    /// The svcplane binary, run as `svcplane webhook`.
    svcplane: PathBuf,
    /// Connections to open, half TCP only, half TLS with headers that never end.
    #[arg(long, env = "CONNECTIONS", default_value_t = 10_000)]
    connections: usize,
}

fn main() -> Result<()> {
    init_tracing("error,kube_client::client::builder=off");
    let options = Options::parse();
    tokio::runtime::Runtime::new()?.block_on(bench(options.svcplane, options.connections))
}
