//! svcplane's e2e suite: one cluster for the whole binary (a local control plane, or the
//! cluster of `KUBECONFIG`), one namespace per test. Takes libtest's arguments
//! (`--list`, filters, `--test-threads`).

mod product;
mod walkthrough;
mod webhook;

use std::process::ExitCode;
use std::sync::Arc;

use e2e::TestEnv;
use e2e::harness::{self, Case};
use libtest_mimic::Arguments;

fn cases() -> Vec<(String, Case<TestEnv>)> {
    e2e::cases![
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
    harness::init_tracing();
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
    let conclusion = libtest_mimic::run(
        &args,
        harness::trials(cases(), env.clone(), &runtime, false),
    );
    // Let namespace deletions finish before the cluster stops.
    runtime.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await });
    drop(env);
    conclusion.exit_code()
}
