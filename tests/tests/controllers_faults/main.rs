//! svcplane's controllers when kube-apiserver goes away, each case on a control plane of its
//! own: a restart shorter than the leader Lease's renew deadline is ridden out (the Lease is
//! kept, the watches come back, what changes afterwards is published); a longer outage stops
//! the controllers with `LeadershipLost`, as kube-controller-manager exits, and a new start
//! catches up with what changed meanwhile. Takes libtest's arguments.

mod cases;

use std::process::ExitCode;

fn main() -> ExitCode {
    e2e::harness::run_fault_suite(
        "controllers_faults",
        e2e::cases![
            cases::a_short_apiserver_restart_is_ridden_out,
            cases::a_long_outage_stops_the_leader_and_a_new_start_catches_up,
        ],
    )
}
