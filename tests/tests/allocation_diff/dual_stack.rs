//! Dual-stack: the three `ipFamilyPolicy` values, families and addresses that disagree,
//! upgrades and downgrades, and the released secondary address asked for again.
//!
//! kube-apiserver v1.37.2: `pkg/registry/core/service/storage/alloc.go` `initIPFamilyFields`
//! (policy and families, "not configured on this cluster"), `allocateUpdate` /
//! `releaseIPs` (a downgrade frees the secondary address in the same request), and
//! `pkg/apis/core/validation/validation.go` `ValidateServiceClusterIPsRelatedFields` and
//! `validateServiceClusterIPsRelatedFieldsUpdate` (what may change on an update).

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::planes::Planes;
use crate::table::{compare, create, json_patch, merge};

pub async fn policies(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "dual-policies",
        vec![
            create("a", json!({ "ipFamilyPolicy": "PreferDualStack" })),
            create(
                "b",
                json!({ "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"] }),
            ),
            create(
                "c",
                json!({ "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"] }),
            ),
            create(
                "d",
                json!({ "ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.9.11", "clusterIPs": ["10.96.9.11", "fd00:10:96::41"] }),
            ),
            create(
                "e",
                json!({ "ipFamilyPolicy": "PreferDualStack", "clusterIP": "10.96.9.12", "clusterIPs": ["10.96.9.12", "fd00:10:96::41"] }),
            ),
            create(
                "f",
                json!({ "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv4"] }),
            ),
            create("g", json!({ "ipFamilyPolicy": "Bogus" })),
            create("h", json!({ "ipFamilies": ["IPv5"] })),
            create(
                "i",
                json!({ "ipFamilyPolicy": "PreferDualStack", "clusterIP": "fd00:10:96::42", "clusterIPs": ["fd00:10:96::42", "10.96.9.15"] }),
            ),
            create(
                "j",
                json!({ "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "SingleStack", "clusterIP": "10.96.9.16", "clusterIPs": ["10.96.9.16", "fd00:10:96::43"] }),
            ),
            create(
                "k",
                json!({ "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.9.17", "clusterIPs": ["10.96.9.17", "fd00:10:96::44"] }),
            ),
            // Nothing above held a value refused by validation. (Not 10.96.9.12 of `e`: when
            // kube-apiserver alone allocates it before its IPv6 address is refused, it keeps
            // it: alloc.go `txnAllocClusterIPs` does not release a partial `allocIPs`, whose
            // order is Go's random map order. svcplane frees it; README lists the difference.)
            create(
                "l",
                json!({ "ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.9.16", "clusterIPs": ["10.96.9.16", "fd00:10:96::43"] }),
            ),
        ],
    )
    .await
}

pub async fn upgrade_and_downgrade(planes: Arc<Planes>) -> Result<()> {
    compare(
        &planes,
        "dual-upgrade",
        vec![
            create("a", json!({ "ipFamilyPolicy": "SingleStack" })),
            merge("a", json!({ "spec": { "ipFamilyPolicy": "PreferDualStack" } })),
            merge("a", json!({ "spec": { "ipFamilyPolicy": "SingleStack" } })),
            merge(
                "a",
                json!({ "spec": { "ipFamilyPolicy": "SingleStack", "clusterIPs": ["{{a.clusterIPs[0]}}"], "ipFamilies": ["IPv4"] } }),
            ),
            create("b", json!({ "clusterIP": "{{a.clusterIPs[1]}}" })),
            merge(
                "a",
                json!({ "spec": { "ipFamilyPolicy": "RequireDualStack", "clusterIPs": ["{{a.clusterIPs[0]}}", "fd00:10:96::51"] } }),
            ),
            merge(
                "a",
                json!({ "spec": { "ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["{{a.clusterIPs[0]}}"] } }),
            ),
            json_patch(
                "a",
                json!([{ "op": "replace", "path": "/spec/clusterIPs/1", "value": "fd00:10:96::52" }]),
            ),
            merge("a", json!({ "spec": { "ipFamilies": ["IPv6"] } })),
            merge(
                "a",
                json!({ "spec": { "ipFamilyPolicy": "SingleStack", "clusterIPs": ["{{a.clusterIPs[0]}}"], "ipFamilies": ["IPv4"] } }),
            ),
            create("c", json!({ "clusterIP": "fd00:10:96::51" })),
            create(
                "d",
                json!({ "ipFamilyPolicy": "RequireDualStack", "type": "NodePort" }),
            ),
            merge(
                "d",
                json!({ "spec": { "ipFamilyPolicy": "SingleStack", "clusterIPs": ["{{d.clusterIPs[0]}}"], "ipFamilies": ["IPv4"] } }),
            ),
            create("e", json!({ "clusterIP": "{{d.clusterIPs[1]}}" })),
        ],
    )
    .await
}
