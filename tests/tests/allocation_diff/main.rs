//! Allocation, differential: the same Service request sequences sent to kube-apiserver
//! v1.37.2 alone and to one fronted by svcplane's webhook (same ranges), compared answer by
//! answer: status code, reason, details (kind, group, name, causes) and message, and on
//! success the allocation fields of the stored object, after replacing only the values each
//! side chose at random. One more case gives svcplane narrower ranges than its apiserver,
//! which shows that svcplane is the allocator.
//!
//! Each case is a table of steps ([`table::Step`]); a step whose answers are meant to
//! differ names the documented difference ([`table::Known`]). Every line of the tables
//! cites the kube-apiserver v1.37.2 source its expectation follows. It needs local control
//! planes, so it skips itself when `KUBECONFIG` names a cluster. Takes libtest's arguments.

mod cluster_ip;
mod dual_stack;
mod lifecycle;
mod node_port;
mod planes;
mod refusals;
mod service_cidrs;
mod table;
mod transitions;

use std::process::ExitCode;
use std::sync::Arc;

use e2e::harness::Case;
use planes::Planes;

fn cases() -> Vec<(String, Case<Planes>)> {
    e2e::cases![
        cluster_ip::requested_and_duplicate,
        cluster_ip::outside_the_range,
        cluster_ip::malformed,
        cluster_ip::ipv6,
        cluster_ip::fields_that_disagree,
        cluster_ip::immutable_through_every_write_verb,
        transitions::cluster_ip_node_port_load_balancer,
        transitions::external_name_and_back,
        transitions::headless,
        node_port::requested_and_duplicate,
        node_port::protocols_share_a_number,
        node_port::load_balancer_without_node_ports,
        node_port::health_check_node_port,
        dual_stack::policies,
        dual_stack::upgrade_and_downgrade,
        lifecycle::dry_run,
        lifecycle::delete_and_request_again,
        lifecycle::delete_collection_and_request_again,
        lifecycle::svcplane_down_then_back,
        refusals::already_exists,
        refusals::validation,
        refusals::update_conflict,
        refusals::resource_quota,
        refusals::validating_admission_policy,
        service_cidrs::added_overlapping_and_deleted,
        planes::concurrent_creates_of_one_value,
        planes::svcplane_is_the_allocator,
    ]
}

fn main() -> ExitCode {
    e2e::harness::run_local_planes_suite("allocation_diff", cases(), Planes::start, summary)
}

fn summary(_: &tokio::runtime::Runtime, planes: Arc<Planes>) -> bool {
    println!("\nanswers per case (same / documented difference / differing):");
    for line in planes.summary() {
        println!("  {line}");
    }
    false
}
