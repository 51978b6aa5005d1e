//! `RangeAllocation`: one cluster-scoped object per range holding its roaring snapshot, so
//! every webhook replica shares one truth, updated by resourceVersion compare-and-swap.

use allocator::IpFamily;
use k8s_openapi::ByteString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The allocation state of one range.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "svcplane.io",
    version = "v1alpha1",
    kind = "RangeAllocation",
    plural = "rangeallocations",
    shortname = "rangealloc",
    printcolumn = r#"{"name":"Range","type":"string","jsonPath":".spec.range"}"#,
    printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".spec.used"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RangeAllocationSpec {
    /// The range: a service CIDR (`10.96.0.0/12`) or a node port range (`30000-32767`).
    pub range: String,
    /// Allocated values, as offsets into the range: roaring's portable serialization.
    #[schemars(with = "String")]
    pub data: ByteString,
    /// How many values are allocated (informational: `data` is the truth).
    pub used: u64,
    /// How many values the range holds.
    pub size: u64,
}

/// Which range an object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeKind {
    /// Cluster IPs of one family.
    ClusterIps(IpFamily),
    /// Node ports.
    NodePorts,
}

impl RangeKind {
    /// The object name of this range.
    pub fn object_name(self) -> &'static str {
        match self {
            RangeKind::ClusterIps(IpFamily::V4) => "cluster-ips-ipv4",
            RangeKind::ClusterIps(IpFamily::V6) => "cluster-ips-ipv6",
            RangeKind::NodePorts => "node-ports",
        }
    }

    /// The range holding `value`.
    pub fn of(value: allocator::Value) -> Self {
        match value {
            allocator::Value::ClusterIp(ip) => RangeKind::ClusterIps(IpFamily::of(&ip)),
            allocator::Value::NodePort(_) => RangeKind::NodePorts,
        }
    }
}
