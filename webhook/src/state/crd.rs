//! `RangeAllocation`: one cluster-scoped object per range holding its roaring snapshot, so
//! every webhook replica shares one truth, updated by resourceVersion compare-and-swap.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use allocator::RangeKind;
use allocator::{Snapshot, Usage, Value};
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
    /// The pools of the webhook replicas, by replica: values allocated in `data` that the
    /// replica hands out without a write. Repair leaves them alone while the entry is
    /// renewed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reservations: BTreeMap<String, Reservation>,
    /// The family's further ClusterIP ranges (the cluster's ServiceCIDRs beyond `range`),
    /// each with its allocated offsets as `data` holds `range`'s. An address that lies in
    /// several ranges is allocated in each; `used` and `size` count it once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub further_ranges: Vec<FurtherRange>,
}

/// One further ClusterIP range of a family.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FurtherRange {
    /// The CIDR.
    pub range: String,
    /// Allocated addresses, as offsets into the range: roaring's portable serialization.
    #[schemars(with = "String")]
    pub data: ByteString,
}

impl RangeAllocationSpec {
    /// The spec storing `snapshot`, whose range is `usage` full, with `reservations`.
    pub fn new(
        snapshot: Snapshot,
        usage: Usage,
        reservations: BTreeMap<String, Reservation>,
    ) -> Self {
        RangeAllocationSpec {
            range: snapshot.range,
            data: ByteString(snapshot.data),
            used: usage.used,
            size: usage.size,
            reservations,
            further_ranges: snapshot
                .extra
                .into_iter()
                .map(|extra| FurtherRange {
                    range: extra.range,
                    data: ByteString(extra.data),
                })
                .collect(),
        }
    }

    /// The allocator snapshot this object stores.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            range: self.range.clone(),
            data: self.data.0.clone(),
            extra: self
                .further_ranges
                .iter()
                .map(|further| Snapshot {
                    range: further.range.clone(),
                    data: further.data.0.clone(),
                    extra: Vec::new(),
                })
                .collect(),
        }
    }
}

impl RangeAllocation {
    /// The range this object stores, by its name; `None` for a name svcplane never writes.
    pub fn kind(&self) -> Option<RangeKind> {
        self.metadata.name.as_deref().and_then(RangeKind::from_name)
    }
}

/// The pool of one webhook replica in one range.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The pooled values (IP addresses or port numbers). Values handed out since the
    /// replica last wrote its entry may still be listed.
    pub values: Vec<String>,
    /// When the replica last wrote its entry (RFC 3339). An entry older than the pool
    /// lifetime is dead: its replica stopped handing its values out long ago.
    pub renew_time: String,
}

impl Reservation {
    /// An entry for `values`, renewed at `now`.
    pub fn new(values: impl IntoIterator<Item = Value>, now: SystemTime) -> Self {
        Reservation {
            values: values.into_iter().map(value_text).collect(),
            renew_time: humantime::format_rfc3339_millis(now).to_string(),
        }
    }

    /// The same entry, renewed at `now`.
    pub fn renew(&mut self, now: SystemTime) {
        self.renew_time = humantime::format_rfc3339_millis(now).to_string();
    }

    /// Whether the entry was renewed less than `lifetime` before `now`. An unreadable time
    /// counts as dead.
    pub fn is_live(&self, now: SystemTime, lifetime: Duration) -> bool {
        humantime::parse_rfc3339(&self.renew_time).is_ok_and(|renewed| renewed + lifetime >= now)
    }

    /// The listed values of range `kind`; unreadable entries are left out.
    pub fn values(&self, kind: RangeKind) -> impl Iterator<Item = Value> + '_ {
        self.values
            .iter()
            .filter_map(move |text| kind.parse_value(text))
    }
}

pub(super) fn value_text(value: Value) -> String {
    match value {
        Value::ClusterIp(ip) => ip.to_string(),
        Value::NodePort(port) => port.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator::IpFamily;

    #[test]
    fn a_reservation_lists_its_values_and_dies_after_its_lifetime() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let kind = RangeKind::ClusterIps(IpFamily::V4);
        let ip = Value::ClusterIp("10.96.0.9".parse().unwrap());
        let entry = Reservation::new([ip], now);
        assert_eq!(entry.renew_time, "2027-01-15T08:00:00.000Z");
        assert_eq!(entry.values(kind).collect::<Vec<_>>(), [ip]);
        let minute = Duration::from_secs(60);
        assert!(entry.is_live(now + minute, minute));
        assert!(!entry.is_live(now + minute + Duration::from_millis(1), minute));
        let ports = Reservation::new([Value::NodePort(30080)], now);
        assert_eq!(ports.values, ["30080"]);
        assert_eq!(
            ports.values(RangeKind::NodePorts).collect::<Vec<_>>(),
            [Value::NodePort(30080)]
        );
        let garbled = Reservation {
            values: vec!["x".into()],
            renew_time: "yesterday".into(),
        };
        assert_eq!(garbled.values(kind).count(), 0);
        assert!(!garbled.is_live(now, minute));
    }
}
