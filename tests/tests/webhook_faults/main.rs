//! svcplane's webhook under concurrency and faults, against a real kube-apiserver: two
//! replicas behind a round-robin proxy take 1,000 concurrent creates; one replica is killed
//! in the middle of a burst; the apiserver is restarted in the middle of a burst. Each case
//! starts its own local control plane, so the cases run one at a time unless
//! `--test-threads` says otherwise. Takes libtest's arguments (`--list`, filters).

mod cases;
mod checks;
mod setup;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type Case = fn() -> CaseFuture;

macro_rules! cases {
    ($($path:path),* $(,)?) => {
        vec![$((stringify!($path).replace(' ', ""), (|| Box::pin($path())) as Case)),*]
    };
}

fn cases() -> Vec<(String, Case)> {
    cases![
        cases::two_replicas_never_hand_out_a_value_twice,
        cases::a_replica_killed_mid_burst_leaks_only_what_repair_frees,
        cases::an_apiserver_restart_mid_burst_gives_clean_errors_then_recovers,
    ]
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,e2e=info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // These cases kill and restart the apiserver and the webhook: they need a control plane
    // of their own, never a shared cluster.
    let external = std::env::var_os("KUBECONFIG").is_some();
    if external && !args.list {
        eprintln!(
            "webhook_faults: skipped: KUBECONFIG is set, and these cases need a local control plane they may kill (unset KUBECONFIG to run them)"
        );
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let trials = cases()
        .into_iter()
        .map(|(name, case)| {
            let handle = runtime.handle().clone();
            Trial::test(name, move || {
                handle
                    .block_on(case())
                    .map_err(|error| format!("{error:#}").into())
            })
            .with_ignored_flag(external)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
