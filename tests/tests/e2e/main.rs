//! svcplane's e2e suite: one cluster for the whole binary (a local control plane, or the
//! cluster of `KUBECONFIG`), one namespace per test. Takes libtest's arguments
//! (`--list`, filters, `--test-threads`).

mod product;
mod walkthrough;
mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use e2e::TestEnv;
use libtest_mimic::{Arguments, Trial};

type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type Case = fn(Arc<TestEnv>) -> CaseFuture;

macro_rules! cases {
    ($($path:path),* $(,)?) => {
        vec![$((stringify!($path).replace(' ', ""), (|env| Box::pin($path(env))) as Case)),*]
    };
}

fn cases() -> Vec<(String, Case)> {
    cases![
        walkthrough::seed_walkthrough_in_tree,
        product::manifests_apply_cleanly,
        webhook::allocates_from_the_persisted_state,
        webhook::refuses_taken_and_out_of_range_values,
        webhook::releases_on_delete,
        webhook::type_transitions_and_shared_ports,
        webhook::dual_stack,
        webhook::dry_run_persists_nothing,
        webhook::validates_user_written_endpoints,
    ]
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,e2e=info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");

    let env = if args.list {
        None
    } else {
        match runtime.block_on(TestEnv::start()) {
            Ok(env) => Some(Arc::new(env)),
            Err(error) => {
                eprintln!("could not start the e2e cluster: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    };

    let trials = cases()
        .into_iter()
        .map(|(name, case)| {
            let env = env.clone();
            let handle = runtime.handle().clone();
            Trial::test(name, move || {
                let env = env.expect("the cluster is started unless listing");
                handle
                    .block_on(case(env))
                    .map_err(|error| format!("{error:#}").into())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Let namespace deletions finish before the cluster stops.
    runtime.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await });
    drop(env);
    conclusion.exit_code()
}
