//! ServiceCIDRs added at run time, overlapping, and deleted: requested cluster IPs in them
//! get the same answers from kube-apiserver alone and from svcplane.
//!
//! kube-apiserver v1.37.2, `pkg/registry/core/service/ipallocator/cidrallocator.go`:
//! `getAllocator` takes the first ready ServiceCIDR (no deletionTimestamp) that contains
//! the address by `servicecidr.PrefixContainsIP` (`pkg/api/servicecidr/servicecidr.go`:
//! neither the network address nor, for IPv4, the broadcast address is contained); none
//! is `ErrMismatchedNetwork`. Its informer makes a new or deleted ServiceCIDR count a
//! moment later: those steps are dry runs repeated until both planes see the change (a dry
//! run is checked against one ServiceCIDR picked at random, so an admitted probe is
//! repeated until both admit it). No
//! kube-controller-manager runs here: a finalizer of the test's own keeps a deleted
//! ServiceCIDR terminating, as its `service-cidr-controller` does while addresses need it.

use std::sync::Arc;

use anyhow::Result;
use http::Method;
use serde_json::json;

use crate::planes::Planes;
use crate::table::{Known, Step, compare, create, delete, raw};

const CIDRS: &str = "/apis/networking.k8s.io/v1/servicecidrs";

/// kube-apiserver checks a dry run's requested address against one ServiceCIDR picked in
/// Go's map order (`cidrallocator.go` `DryRun`): outside it, "not in the valid range" of
/// that one, whichever holds the address; inside a terminating one, admitted. svcplane
/// answers as the create itself.
const DRY_RUN_OUTSIDE_EVERY_SERVICE_CIDR: &str =
    "dry-run create of an address in no usable ServiceCIDR: refused as the create";

/// Creates ServiceCIDR `name` for `cidr`, held by the test's finalizer once deleted.
fn add(name: &str, cidr: &str) -> Step {
    let object = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": { "name": name, "finalizers": ["svcplane.io/test-hold"] },
        "spec": { "cidrs": [cidr] },
    });
    raw(Method::POST, CIDRS, "application/json", object)
}

/// Deletes ServiceCIDR `name`: it stays terminating until [`release`]d.
fn remove(name: &str) -> Step {
    let path = format!("{CIDRS}/{name}");
    raw(Method::DELETE, &path, "application/json", json!({}))
}

/// Takes the test's finalizer off ServiceCIDR `name`.
fn release(name: &str) -> Step {
    let path = format!("{CIDRS}/{name}");
    let patch = json!({ "metadata": { "finalizers": null } });
    raw(Method::PATCH, &path, "application/merge-patch+json", patch)
}

/// On planes of its own: ServiceCIDRs are cluster-wide, and while there are several,
/// kube-apiserver's answers to the other cases' dry runs would depend on its random pick.
pub async fn added_overlapping_and_deleted(planes: Arc<Planes>) -> Result<()> {
    let own = Planes::start().await?;
    let compared = compare(
        &own,
        "service-cidrs",
        vec![
            add("diff-extra", "10.200.0.0/24"),
            create("probe", json!({ "clusterIP": "10.200.0.10" }))
                .dry_run()
                .until_admitted(),
            create("in-extra", json!({ "clusterIP": "10.200.0.10" })),
            // PrefixContainsIP: the network and broadcast addresses are not contained.
            create("extra-network", json!({ "clusterIP": "10.200.0.0" })),
            create("extra-broadcast", json!({ "clusterIP": "10.200.0.255" })),
            // A wider ServiceCIDR holding the first: its broadcast address is one of the wider.
            add("diff-wider", "10.200.0.0/23"),
            create("probe", json!({ "clusterIP": "10.200.0.255" }))
                .dry_run()
                .until_admitted(),
            create("inner-broadcast", json!({ "clusterIP": "10.200.0.255" })),
            create("taken", json!({ "clusterIP": "10.200.0.10" })),
            // The first deleted (kept terminating): the wider one still holds its addresses.
            remove("diff-extra"),
            create("via-wider", json!({ "clusterIP": "10.200.0.11" })),
            // Both deleted: getAllocator finds no ready one holding the address.
            remove("diff-wider"),
            create("probe", json!({ "clusterIP": "10.200.0.12" }))
                .dry_run()
                .until_refused()
                .known(Known {
                    name: DRY_RUN_OUTSIDE_EVERY_SERVICE_CIDR,
                    svcplane: (
                        422,
                        "Service \"probe\" is invalid: spec.clusterIPs: Invalid value: [\"10.200.0.12\"]: failed to allocate IP 10.200.0.12: the provided network does not match the current range",
                    ),
                }),
            create("terminating", json!({ "clusterIP": "10.200.0.12" })),
            create("terminating-wider", json!({ "clusterIP": "10.200.1.12" })),
            delete("in-extra"),
            delete("inner-broadcast"),
            delete("via-wider"),
            release("diff-extra"),
            release("diff-wider"),
        ],
    )
    .await;
    for line in own.summary() {
        planes.record(line);
    }
    compared
}
