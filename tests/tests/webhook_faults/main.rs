//! svcplane's webhook under concurrency and faults, against a real kube-apiserver: two
//! replicas behind a round-robin proxy take 1,000 concurrent creates; one replica is killed
//! in the middle of a burst; the apiserver is restarted in the middle of a burst. Each case
//! starts its own local control plane, so the cases run one at a time unless
//! `--test-threads` says otherwise. Takes libtest's arguments (`--list`, filters).

mod cases;
mod checks;
mod setup;

use std::process::ExitCode;
use std::sync::Arc;

use e2e::harness::{self, Case};
use libtest_mimic::Arguments;

fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![
        cases::two_replicas_never_hand_out_a_value_twice,
        cases::a_replica_killed_mid_burst_leaks_only_what_repair_frees,
        cases::an_apiserver_restart_mid_burst_gives_clean_errors_then_recovers,
    ]
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    harness::init_tracing();
    // These cases kill and restart the apiserver and the webhook: they need a control plane
    // of their own, never a shared cluster.
    let external = std::env::var_os("KUBECONFIG").is_some();
    if external && !args.list {
        eprintln!(
            "webhook_faults: skipped: KUBECONFIG is set, and these cases need a local control plane they may kill (unset KUBECONFIG to run them)"
        );
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let trials = harness::trials(cases(), Some(Arc::new(())), &runtime, external);
    libtest_mimic::run(&args, trials).exit_code()
}
