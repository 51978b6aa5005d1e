//! Differential e2e: every scenario runs on two local control planes at once, one maintained
//! by kube-controller-manager's endpoint controllers, one by svcplane's (in-process), and
//! passes when both publish the same Endpoints and EndpointSlices (normalised) and what the
//! scenario expects. Each scenario prints the Endpoints/EndpointSlice writes each side made.
//! Takes libtest's arguments (`--list`, filters, `--test-threads`).
//!
//! It needs two local control planes, so it skips itself when `KUBECONFIG` names a cluster.

mod election;
mod expect;
mod harness;
mod lifecycle;
mod mirroring;
mod scale;
mod shapes;
mod takeover;
mod tampering;
mod topology;
mod walkthrough;

use std::process::ExitCode;
use std::sync::Arc;

use e2e::harness::Case;
use harness::Planes;

fn cases() -> Vec<(String, Case<Planes>)> {
    e2e::cases![
        walkthrough::walkthrough,
        shapes::headless_with_hostnames,
        shapes::named_ports_per_pod,
        shapes::dual_stack,
        lifecycle::terminating_pods,
        shapes::publish_not_ready_addresses,
        scale::zero_to_250_to_3,
        lifecycle::pod_ip_change,
        lifecycle::label_change_moves_pod,
        lifecycle::selector_change,
        lifecycle::service_deleted,
        lifecycle::node_missing,
        scale::over_capacity,
        tampering::endpoints_deleted_by_user,
        tampering::endpoints_edited_by_user,
        tampering::slice_deleted_by_user,
        tampering::slice_edited_by_user,
        shapes::empty_selector_and_external_name,
        shapes::sidecar_named_port,
        shapes::pods_sharing_an_ip,
        shapes::pod_phases,
        lifecycle::service_ports_change,
        lifecycle::service_labels_change,
        lifecycle::many_services_same_pods,
        lifecycle::node_deleted,
        lifecycle::service_recreated,
        lifecycle::readiness_flapping,
        shapes::address_family_mismatch,
        shapes::publish_not_ready_on_missing_node,
        shapes::pod_ip_families_change,
        scale::rolling_update_then_scale_down,
        election::lease_handover,
        election::standby_readiness,
        takeover::from_in_tree,
        takeover::fifty_services_and_back,
        mirroring::seed_external_endpoints,
        mirroring::dual_stack_endpoints,
        mirroring::skip_mirror_label,
        mirroring::odd_ip_address,
        mirroring::selector_added,
        topology::traffic_distribution,
        topology::auto_hints,
    ]
}

fn main() -> ExitCode {
    e2e::harness::run_local_planes_suite("differential", cases(), Planes::start, report)
}

/// The writes and metrics of the whole run, then svcplane's controllers stopped; whether that
/// stop failed.
fn report(runtime: &tokio::runtime::Runtime, planes: Arc<Planes>) -> bool {
    println!("\nAPI writes per scenario (Endpoints + EndpointSlices, created/updated/deleted):");
    for report in planes.reports() {
        println!("  {report}");
    }
    println!("svcplane's metrics over the whole run (all scenarios):");
    for line in planes.svcplane_metrics() {
        println!("  {line}");
    }
    let (metric, seen) = planes.svcplane_write_totals();
    println!(
        "svcplane's writes: {metric} by its own metric, {seen} seen by the scenarios' watches{}",
        if metric == seen {
            ""
        } else {
            " (they differ: a write outside a scenario's counting window, or a failed scenario)"
        }
    );
    match runtime.block_on(planes.stop()) {
        Ok(()) => false,
        Err(error) => {
            eprintln!("svcplane's controllers: {error:#}");
            true
        }
    }
}
