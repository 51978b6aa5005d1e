//! ClusterIP: requested, taken, outside the range, malformed, IPv6, `clusterIP` and
//! `clusterIPs` that disagree, and immutability through every write verb.
//!
//! kube-apiserver v1.37.2 allocates before it validates (`registry/generic/registry/store.go`
//! calls `BeginCreate` before `rest.BeforeCreate`): a requested IP goes to
//! `pkg/registry/core/service/storage/alloc.go` `allocIPs`, whose refusals are
//! `spec.clusterIPs: Invalid value: [...]: failed to allocate IP <ip>: <allocator error>`,
//! the allocator error being `ipallocator/cidrallocator.go` `getAllocator`'s
//! `ErrMismatchedNetwork` ("the provided network does not match the current range") for an
//! address outside every ServiceCIDR, and `ipallocator/ipallocator.go` `allocateService`'s
//! `ErrNotInRange` for the network and broadcast addresses of one, or `ErrAllocated`.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::planes::Planes;
use crate::table::{apply, compare, create, json_patch, merge, put, strategic};

pub async fn requested_and_duplicate(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "ip-requested",
        vec![
            create("a", json!({ "clusterIP": "10.96.1.11" })),
            // alloc.go allocIPs: ErrAllocated.
            create("b", json!({ "clusterIP": "10.96.1.11" })),
            create(
                "c",
                json!({ "clusterIP": "10.96.1.12", "clusterIPs": ["10.96.1.12"] }),
            ),
            create("d", json!({})),
            create("e", json!({ "clusterIP": "{{d.clusterIPs[0]}}" })),
            create(
                "f",
                json!({ "clusterIP": "10.96.1.13", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack" }),
            ),
        ],
    )
    .await
}

pub async fn outside_the_range(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "ip-outside",
        vec![
            // ipallocator.go allocateService: below firstAddress, ErrNotInRange.
            create("network", json!({ "clusterIP": "10.96.0.0" })),
            // ipallocator.go allocateService: above lastAddress, ErrNotInRange.
            create("broadcast", json!({ "clusterIP": "10.111.255.255" })),
            // cidrallocator.go getAllocator: ErrMismatchedNetwork.
            create("next", json!({ "clusterIP": "10.112.0.1" })),
            create("elsewhere", json!({ "clusterIP": "192.168.0.1" })),
            create("v6-elsewhere", json!({ "clusterIP": "fd00:10:97::1" })),
            create("v6-network", json!({ "clusterIP": "fd00:10:96::" })),
        ],
    )
    .await
}

pub async fn malformed(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "ip-malformed",
        vec![
            // validation.go ValidateServiceClusterIPsRelatedFields: each entry an IP or None.
            create("octet", json!({ "clusterIP": "10.96.2.300" })),
            create("word", json!({ "clusterIP": "not-an-ip" })),
            create("zeros", json!({ "clusterIP": "010.096.002.001" })),
            create(
                "two-v4",
                json!({ "clusterIP": "10.96.2.1", "clusterIPs": ["10.96.2.1", "10.96.2.2"], "ipFamilyPolicy": "RequireDualStack" }),
            ),
            create(
                "none-second",
                json!({ "clusterIP": "10.96.2.3", "clusterIPs": ["10.96.2.3", "None"], "ipFamilyPolicy": "RequireDualStack" }),
            ),
            // validation.go: 'None' only for ClusterIP Services.
            create(
                "none-nodeport",
                json!({ "type": "NodePort", "clusterIP": "None" }),
            ),
            // Nothing was held by the refusals above.
            create("after", json!({ "clusterIP": "10.96.2.1" })),
        ],
    )
    .await
}

pub async fn ipv6(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "ip-v6",
        vec![
            create("a", json!({ "ipFamilies": ["IPv6"] })),
            // alloc.go initIPFamilyFields: the family follows the requested address.
            create("b", json!({ "clusterIP": "fd00:10:96::31" })),
            create("c", json!({ "clusterIP": "fd00:10:96::31" })),
            create("d", json!({ "clusterIP": "fd00:10:96:0::32" })),
            create(
                "e",
                json!({ "ipFamilies": ["IPv6"], "clusterIP": "10.96.3.1" }),
            ),
            create("f", json!({ "clusterIP": "{{a.clusterIPs[0]}}" })),
        ],
    )
    .await
}

pub async fn fields_that_disagree(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "ip-disagree",
        vec![
            // validation.go ValidateServiceClusterIPsRelatedFields.
            create(
                "a",
                json!({ "clusterIP": "10.96.4.11", "clusterIPs": ["10.96.4.12"] }),
            ),
            create("b", json!({ "clusterIPs": ["10.96.4.13"] })),
            create("c", json!({ "clusterIP": "10.96.4.14", "clusterIPs": [] })),
            create(
                "d",
                json!({ "clusterIP": "", "clusterIPs": ["10.96.4.15"] }),
            ),
            // None of the refused values is held.
            create("e", json!({ "clusterIP": "10.96.4.12" })),
            create("f", json!({ "clusterIP": "10.96.4.13" })),
        ],
    )
    .await
}

/// storage.go `patchAllocatedValues` and `normalizeClusterIPs` reconcile the two fields of
/// an update; validation.go `ValidateServiceUpdate` then refuses a changed address
/// (`spec.clusterIPs[0]`: "may not change once set").
pub async fn immutable_through_every_write_verb(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "ip-immutable",
        vec![
            create("a", json!({ "clusterIP": "10.96.5.11" })),
            put("a", json!({ "clusterIP": "10.96.5.12" })),
            put(
                "a",
                json!({ "clusterIP": "10.96.5.12", "clusterIPs": ["10.96.5.12"] }),
            ),
            put("a", json!({})),
            merge("a", json!({ "spec": { "clusterIP": "10.96.5.12" } })),
            merge("a", json!({ "spec": { "clusterIPs": ["10.96.5.12"] } })),
            merge(
                "a",
                json!({ "spec": { "clusterIP": "10.96.5.12", "clusterIPs": ["10.96.5.12"] } }),
            ),
            json_patch(
                "a",
                json!([{ "op": "replace", "path": "/spec/clusterIP", "value": "10.96.5.12" }]),
            ),
            json_patch(
                "a",
                json!([{ "op": "replace", "path": "/spec/clusterIPs/0", "value": "10.96.5.12" }]),
            ),
            strategic("a", json!({ "spec": { "clusterIP": "10.96.5.12" } })),
            apply("a", json!({ "clusterIP": "10.96.5.12" })),
            apply("a", json!({ "clusterIP": "10.96.5.11" })),
            merge("a", json!({ "spec": { "clusterIP": null } })),
            merge(
                "a",
                json!({ "spec": { "clusterIP": "", "clusterIPs": null } }),
            ),
            merge("a", json!({ "metadata": { "labels": { "tier": "web" } } })),
            // Nothing above held 10.96.5.12.
            create("b", json!({ "clusterIP": "10.96.5.12" })),
        ],
    )
    .await
}
