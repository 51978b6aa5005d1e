//! svcplane's controllers when kube-apiserver goes away, each case on a control plane of its
//! own: a restart shorter than the leader Lease's renew deadline is ridden out (the Lease is
//! kept, the watches come back, what changes afterwards is published); a longer outage stops
//! the controllers with `LeadershipLost`, as kube-controller-manager exits, and a new start
//! catches up with what changed meanwhile. Takes libtest's arguments.

mod cases;

use std::process::ExitCode;
use std::sync::Arc;

use e2e::harness;
use libtest_mimic::Arguments;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    harness::init_tracing();
    // These cases kill and restart the apiserver: they need a control plane of their own.
    let external = std::env::var_os("KUBECONFIG").is_some();
    if external && !args.list {
        eprintln!(
            "controllers_faults: skipped: KUBECONFIG is set, and these cases need a local control plane they may kill (unset KUBECONFIG to run them)"
        );
    }
    let cases = e2e::cases![
        cases::a_short_apiserver_restart_is_ridden_out,
        cases::a_long_outage_stops_the_leader_and_a_new_start_catches_up,
    ];
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let trials = harness::trials(cases, Some(Arc::new(())), &runtime, external);
    libtest_mimic::run(&args, trials).exit_code()
}
