//! What the benchmark drivers (`src/bin/bench-*`) share: their logging, the machine's load,
//! the apiserver's metrics, and pinning processes to CPUs.

use anyhow::Result;
use kube::Client;

/// Logs to stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg`, space-separated, or `?`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The apiserver's `/metrics` text.
pub async fn apiserver_metrics(client: &Client) -> Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// Checks that `cpu` is one of this machine's CPUs and that at least one other is left.
pub fn check_own_cpu(flag: &str, cpu: usize) -> Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    anyhow::ensure!(
        cpus >= 2 && cpu < cpus,
        "{flag} {cpu}: this machine has {cpus} CPUs; one must be left for the rest"
    );
    Ok(())
}

/// The CPUs other than `cpu`, as `taskset` lists them.
pub fn other_cpus(cpu: usize) -> Result<String> {
    let cpus = std::thread::available_parallelism()?.get();
    Ok((0..cpus)
        .filter(|&other| other != cpu)
        .map(|other| other.to_string())
        .collect::<Vec<_>>()
        .join(","))
}

/// Pins every thread of process `pid` to `cpus` (a `taskset` CPU list); threads and processes
/// it starts later inherit it.
pub fn pin(pid: u32, cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "taskset could not pin process {pid} to CPUs {cpus}"
    );
    Ok(())
}
