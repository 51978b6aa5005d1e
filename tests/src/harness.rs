//! What the e2e test binaries share: libtest's command line (through libtest-mimic), one
//! fixture started once per binary (a cluster, two control planes, ...), and each case an
//! async function of that fixture, run on one tokio runtime.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

/// What a case returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
/// A case: an async function of the binary's fixture.
pub type Case<F> = fn(Arc<F>) -> CaseFuture;

/// `cases![module::case, ...]`: the named cases, each called with the shared fixture.
#[macro_export]
macro_rules! cases {
    ($($path:path),* $(,)?) => {
        vec![$((
            stringify!($path).replace(' ', ""),
            (|fixture| Box::pin($path(fixture))) as $crate::harness::Case<_>,
        )),*]
    };
}

/// Logs to stderr; `RUST_LOG` overrides the default filter.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,e2e=info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The trials of `cases`, each run on `runtime` with `fixture` (absent only when listing);
/// with `ignored`, they are reported as ignored.
pub fn trials<F: Send + Sync + 'static>(
    cases: Vec<(String, Case<F>)>,
    fixture: Option<Arc<F>>,
    runtime: &tokio::runtime::Runtime,
    ignored: bool,
) -> Vec<Trial> {
    cases
        .into_iter()
        .map(|(name, case)| {
            let fixture = fixture.clone();
            let handle = runtime.handle().clone();
            Trial::test(name, move || {
                let fixture = fixture.expect("the fixture is started unless listing");
                handle
                    .block_on(case(fixture))
                    .map_err(|error| format!("{error:#}").into())
            })
            .with_ignored_flag(ignored)
        })
        .collect()
}

/// The `main` of a suite whose cases kill and restart the apiserver or svcplane: each case
/// starts a control plane of its own, they run one at a time unless `--test-threads` says
/// otherwise, and all are skipped when `KUBECONFIG` names a cluster (they need control planes
/// they may kill). Takes libtest's arguments.
pub fn run_fault_suite(suite: &str, cases: Vec<(String, Case<()>)>) -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    init_tracing();
    let external = std::env::var_os("KUBECONFIG").is_some();
    if external && !args.list {
        eprintln!(
            "{suite}: skipped: KUBECONFIG is set, and these cases need a local control plane they may kill (unset KUBECONFIG to run them)"
        );
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let trials = trials(cases, Some(Arc::new(())), &runtime, external);
    libtest_mimic::run(&args, trials).exit_code()
}

/// The `main` of a suite whose cases share local control planes it starts once (`start`, its
/// fixture): skipped when `KUBECONFIG` names a cluster. `finish` runs after the cases with the
/// fixture (reports, a clean stop) and says whether it failed. Takes libtest's arguments.
pub fn run_local_planes_suite<F, Fut>(
    suite: &str,
    cases: Vec<(String, Case<F>)>,
    start: impl FnOnce() -> Fut,
    finish: impl FnOnce(&tokio::runtime::Runtime, Arc<F>) -> bool,
) -> ExitCode
where
    F: Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<F>>,
{
    let args = Arguments::from_args();
    init_tracing();
    if std::env::var_os("KUBECONFIG").is_some() && !args.list {
        println!(
            "{suite}: skipped; it starts local control planes and cannot run against the cluster KUBECONFIG names (unset KUBECONFIG to run it)"
        );
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let fixture = if args.list {
        None
    } else {
        match runtime.block_on(start()) {
            Ok(fixture) => Some(Arc::new(fixture)),
            Err(error) => {
                eprintln!("{suite}: could not start the control planes: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let trials = trials(cases, fixture.clone(), &runtime, false);
    let mut failed = libtest_mimic::run(&args, trials).has_failed();
    if let Some(fixture) = fixture {
        failed |= finish(&runtime, fixture);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
