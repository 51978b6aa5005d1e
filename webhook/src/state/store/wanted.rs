//! Values of other replicas' pools that an admission asked for (by number, or because the
//! range is otherwise full): marked on their range's object, where the replica that pools
//! them sees them through its watch and gives up those it still pools.

use std::collections::{BTreeMap, BTreeSet};

use allocator::Value;
use kube::Api;
use kube::api::PostParams;

use std::collections::HashSet;
use std::time::SystemTime;

use super::Actor;
use crate::state::batch::AdmitRequest;
use crate::state::crd::{RangeAllocation, RangeKind, value_text};
use crate::state::held::held_values;

/// The annotation of a `RangeAllocation` object listing wanted values (comma-separated).
/// Every write of the store rewrites the object's metadata without it: the owner acts on
/// the version that carries it, and a later write clears it.
pub const WANTED_ANNOTATION: &str = "svcplane.io/wanted";

/// At most this many values are listed: what one admission can ask for, and a bound on
/// what a tenant's requests can add to the object.
const MAX_WANTED: usize = 32;

/// How many times a mark is tried against concurrent writers.
const MAX_ATTEMPTS: usize = 4;

/// Marks `values` wanted on their ranges' objects (read, add, write by resourceVersion).
/// Best effort: a mark that cannot be written leaves the admission to be refused as taken,
/// as without it.
pub(super) async fn mark_wanted(api: &Api<RangeAllocation>, values: Vec<Value>) {
    let mut by_range: BTreeMap<RangeKind, Vec<Value>> = BTreeMap::new();
    for value in values {
        by_range
            .entry(RangeKind::of(value))
            .or_default()
            .push(value);
    }
    for (kind, values) in by_range {
        for _ in 0..MAX_ATTEMPTS {
            let mut stored = match api.get(kind.name()).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::debug!(%error, range = kind.name(), "wanted values not marked");
                    break;
                }
            };
            let annotations = stored.metadata.annotations.get_or_insert_default();
            let listed = annotations
                .get(WANTED_ANNOTATION)
                .map(|text| wanted_in(kind, text))
                .unwrap_or_default();
            let all: BTreeSet<Value> = listed.into_iter().chain(values.iter().copied()).collect();
            let text: Vec<String> = all.into_iter().take(MAX_WANTED).map(value_text).collect();
            annotations.insert(WANTED_ANNOTATION.to_string(), text.join(","));
            match api
                .replace(kind.name(), &PostParams::default(), &stored)
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => {
                    tracing::debug!(%error, range = kind.name(), "wanted values not marked");
                    break;
                }
            }
        }
    }
}

impl Actor {
    /// The values of range `kind` that the live entries of other running replicas list. An
    /// earlier life of this pod owns no pool any more: nobody would answer a mark of its
    /// values (they are freed by `reclaim_previous_lives`).
    fn listed_elsewhere(&self, kind: RangeKind, now: SystemTime) -> impl Iterator<Item = Value> {
        let dead_after = self.dead_after();
        self.reservations
            .get(&kind)
            .into_iter()
            .flatten()
            .filter(move |(holder, entry)| {
                *holder != self.holder.name()
                    && !self.holder.is_previous_life(holder)
                    && entry.is_live(now, dead_after)
            })
            .flat_map(move |(_, entry)| entry.values(kind))
    }

    /// For each range with no free value left on this copy, a few values the live entries
    /// of other running replicas list: in a nearly full range, what their pools hold is all
    /// that is left, and kube-apiserver would give it.
    pub(super) fn pooled_in_full_ranges(&self) -> Vec<Value> {
        /// As many as one Service may need of one range (its node ports, say).
        const PER_RANGE: usize = 4;
        let now = SystemTime::now();
        let full = |kind: RangeKind| match kind {
            RangeKind::ClusterIps(family) => self
                .allocators
                .cluster_ips_of(family)
                .is_some_and(|ips| !ips.has_free()),
            RangeKind::NodePorts => self.allocators.node_ports().free() == 0,
        };
        self.reservations
            .keys()
            .filter(|&&kind| full(kind))
            .flat_map(|&kind| self.listed_elsewhere(kind, now).take(PER_RANGE))
            .collect()
    }

    /// The values `request` asks for by number (not held before an update) that the live
    /// entry of another running replica lists: pooled there, or handed out by it.
    pub(super) fn pooled_elsewhere(&self, request: &AdmitRequest) -> Vec<Value> {
        let now = SystemTime::now();
        let before: HashSet<Value> = request
            .old
            .as_ref()
            .map(held_values)
            .unwrap_or_default()
            .into_iter()
            .collect();
        held_values(&request.new)
            .into_iter()
            .filter(|value| !before.contains(value))
            .filter(|&value| {
                self.listed_elsewhere(RangeKind::of(value), now)
                    .any(|listed| listed == value)
            })
            .collect()
    }
}

/// The values of range `kind` an annotation lists; unreadable ones and those of another
/// range are left out.
pub fn wanted_in(kind: RangeKind, text: &str) -> Vec<Value> {
    text.split(',')
        .filter_map(|item| kind.parse_value(item.trim()))
        .filter(|&value| RangeKind::of(value) == kind)
        .take(MAX_WANTED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_annotation_lists_values_of_its_range_only() {
        assert_eq!(
            wanted_in(RangeKind::NodePorts, "30001, 30002,x,10.96.0.1"),
            [Value::NodePort(30001), Value::NodePort(30002)]
        );
        let v4 = RangeKind::ClusterIps(allocator::IpFamily::V4);
        assert_eq!(
            wanted_in(v4, "10.96.0.7,fd00::7"),
            [Value::ClusterIp("10.96.0.7".parse().unwrap())]
        );
        let many: Vec<String> = (30000..30100).map(|port| port.to_string()).collect();
        assert_eq!(
            wanted_in(RangeKind::NodePorts, &many.join(",")).len(),
            MAX_WANTED
        );
    }
}
