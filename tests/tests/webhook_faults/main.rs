//! svcplane's webhook under concurrency and faults, against a real kube-apiserver: two
//! replicas behind a round-robin proxy take 1,000 concurrent creates; one replica is killed
//! in the middle of a burst; the apiserver is restarted in the middle of a burst; a
//! ServiceCIDR grows a full range, then is deleted; an IPAddress object held for no Service
//! svcplane sees keeps its address and is reported (IPv4 and IPv6). Each case
//! starts its own local control plane, so the cases run one at a time unless
//! `--test-threads` says otherwise. Takes libtest's arguments (`--list`, filters).

mod cases;
mod checks;
mod service_cidrs;
mod setup;

use std::process::ExitCode;

fn main() -> ExitCode {
    e2e::harness::run_fault_suite(
        "webhook_faults",
        e2e::cases![
            cases::two_replicas_never_hand_out_a_value_twice,
            cases::a_replica_killed_mid_burst_leaks_only_what_repair_frees,
            cases::an_apiserver_restart_mid_burst_gives_clean_errors_then_recovers,
            cases::a_value_released_by_one_replica_is_given_by_the_other,
            cases::a_dead_replicas_pool_and_unconfirmed_values_are_freed_within_a_lifetime,
            cases::a_replica_restarted_in_its_pod_frees_its_earlier_lifes_pool,
            cases::a_requested_value_of_the_other_replicas_pool_is_given,
            service_cidrs::a_service_cidr_grows_a_full_range_and_its_deletion_stops_it,
            service_cidrs::an_ip_address_object_keeps_its_address_from_being_given,
            service_cidrs::an_ipv6_ip_address_objects_event_regards_its_parent_service,
        ],
    )
}
