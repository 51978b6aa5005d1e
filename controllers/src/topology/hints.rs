//! Topology-aware hints (`service.kubernetes.io/topology-mode: Auto`): each ready endpoint is
//! given to one zone, so that every zone gets endpoints in proportion to its CPU.
//!
//! The rules are the in-tree topology cache's. Hints need two zones or more with known CPU, at
//! least as many ready endpoints as zones, a zone on every ready endpoint, and a split where no
//! zone's endpoints would take more than 20% over their fair share of traffic (each zone needs
//! at least `ceil(desired / 1.2)` endpoints). Hints are given on the slices a sync writes:
//! slices left unchanged keep hints that still fit; in the others every ready endpoint starts
//! hinted to its own zone, then whole endpoints are moved from zones with more than their share
//! to zones with less.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointSlice, ForZone};

use super::capacity::ZoneCapacity;

/// The largest overload an endpoint should see: 20% over its fair share of traffic.
pub const OVERLOAD_THRESHOLD: f64 = 0.2;

/// How many endpoints a zone should be given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneAllocation {
    /// Fewest endpoints that keep the zone under the overload threshold.
    pub minimum: usize,
    /// Most endpoints the zone can take while every other zone gets its minimum.
    pub maximum: usize,
    /// The proportional share, at least `minimum`.
    pub desired: f64,
}

/// What each zone should get, for a given number of ready endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneAssignment {
    /// The ready endpoints being shared out.
    pub ready_endpoints: usize,
    /// Every zone with CPU, and its share.
    pub zones: BTreeMap<String, ZoneAllocation>,
}

/// Why a Service with `topology-mode: Auto` gets no hints (for an address type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintsDisabled {
    /// Some Ready worker Node lacks a zone label or allocatable CPU, or there is no CPU at all.
    InsufficientNodeInfo,
    /// Ready worker Nodes are in a single zone.
    NodesReadyInOneZoneOnly,
    /// Fewer ready endpoints than zones.
    InsufficientNumberOfEndpoints {
        /// Ready endpoints.
        endpoints: usize,
        /// Zones with CPU.
        zones: usize,
    },
    /// Giving every zone its minimum would take more endpoints than there are.
    MinAllocationExceedsOverloadThreshold {
        /// Ready endpoints.
        endpoints: usize,
        /// Zones with CPU.
        zones: usize,
    },
    /// A ready endpoint has no zone (its Node has no zone label).
    NoZoneSpecified,
}

impl fmt::Display for HintsDisabled {
    /// The in-tree event message, without the address type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HintsDisabled::InsufficientNodeInfo => f.write_str(
                "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes",
            ),
            HintsDisabled::NodesReadyInOneZoneOnly => f.write_str("Nodes only ready in one zone"),
            HintsDisabled::InsufficientNumberOfEndpoints { endpoints, zones } => write!(
                f,
                "Insufficient number of endpoints ({endpoints} endpoints, {zones} zones)"
            ),
            HintsDisabled::MinAllocationExceedsOverloadThreshold { endpoints, zones } => write!(
                f,
                "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold ({endpoints} endpoints, {zones} zones)"
            ),
            HintsDisabled::NoZoneSpecified => {
                f.write_str("One or more endpoints do not have a zone specified")
            }
        }
    }
}

/// Whether an address type of a Service with `topology-mode: Auto` gets hints.
#[derive(Debug, Clone, PartialEq)]
pub enum HintsDecision {
    /// Hints on, per this assignment.
    Enabled(ZoneAssignment),
    /// Hints off: strip them, and say why in a `TopologyAwareHintsDisabled` event.
    Disabled(HintsDisabled),
}

/// Whether an endpoint's `ready` condition is true; only ready endpoints get hints.
pub(super) fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true)
}

fn zone_of(endpoint: &Endpoint) -> Option<&str> {
    endpoint.zone.as_deref().filter(|z| !z.is_empty())
}

/// Each zone's share of `ready_endpoints`, or why no split is possible.
pub fn zone_assignment(
    capacity: &ZoneCapacity,
    ready_endpoints: usize,
) -> Result<ZoneAssignment, HintsDisabled> {
    let ratios = match capacity {
        ZoneCapacity::Zones(ratios) => ratios,
        ZoneCapacity::InsufficientNodeInfo => return Err(HintsDisabled::InsufficientNodeInfo),
        ZoneCapacity::SingleZone => return Err(HintsDisabled::NodesReadyInOneZoneOnly),
    };
    let zones = ratios.len();
    if zones > ready_endpoints {
        return Err(HintsDisabled::InsufficientNumberOfEndpoints {
            endpoints: ready_endpoints,
            zones,
        });
    }
    let mut allocations = BTreeMap::new();
    let mut minimum_total = 0;
    for (zone, ratio) in ratios {
        let desired = ratio * ready_endpoints as f64;
        // Same arithmetic as in-tree, so that borderline cases round the same way.
        let minimum = (desired * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil() as usize;
        minimum_total += minimum;
        allocations.insert(
            zone.clone(),
            ZoneAllocation {
                minimum,
                maximum: 0,
                desired: desired.max(minimum as f64),
            },
        );
    }
    if minimum_total > ready_endpoints {
        return Err(HintsDisabled::MinAllocationExceedsOverloadThreshold {
            endpoints: ready_endpoints,
            zones,
        });
    }
    for allocation in allocations.values_mut() {
        allocation.maximum = allocation.minimum + ready_endpoints - minimum_total;
    }
    Ok(ZoneAssignment {
        ready_endpoints,
        zones: allocations,
    })
}

fn endpoints_of(slice: &EndpointSlice) -> &[Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

fn endpoints_mut(slice: &mut EndpointSlice) -> &mut [Endpoint] {
    slice.endpoints.as_deref_mut().unwrap_or_default()
}

fn hint(zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone {
            name: zone.to_string(),
        }]),
        for_nodes: None,
    })
}

/// Auto hints on the slices of one address type that a sync writes, as in-tree's
/// `TopologyCache.AddHints` (k8s.io/endpointslice topologycache/topologycache.go).
///
/// `create` and `update` are the slices the sync writes, `unchanged` the Service's other
/// slices of that address type (planned with hints ignored). The zones' shares come from the
/// ready endpoints of all of them. An unchanged slice keeps its hints while they fit the shares
/// (`getAllocatedHintsByZone`, sliceinfo.go); otherwise it joins `update`. Every ready
/// endpoint of the slices written is hinted to its own zone, then zones above their share give
/// endpoints to zones below it: the first ready endpoints of a giving zone in the slices
/// created, then in the slices updated, in their order (`redistributeHints`, utils.go). The
/// receiving zone is the first by name that still receives (in-tree takes one in Go's map
/// order). When hints are off, every hint goes, unchanged slices carrying some join `update`
/// (`RemoveHintsFromSlices`, utils.go).
pub fn add_zone_hints(
    capacity: &ZoneCapacity,
    create: &mut [EndpointSlice],
    update: &mut Vec<EndpointSlice>,
    unchanged: &[&EndpointSlice],
) -> HintsDecision {
    let ready_total = create
        .iter()
        .chain(update.iter())
        .chain(unchanged.iter().copied())
        .flat_map(endpoints_of)
        .filter(|e| is_ready(e))
        .count();
    let assignment = match zone_assignment(capacity, ready_total) {
        Ok(assignment) => assignment,
        Err(reason) => {
            remove_hints(create, update, unchanged);
            return HintsDecision::Disabled(reason);
        }
    };
    let mut allocated: BTreeMap<String, i64> = BTreeMap::new();
    let mut kept = Vec::new();
    for &slice in unchanged {
        match hints_by_zone(slice, &allocated, &assignment) {
            Some(hints) => {
                for (zone, count) in hints {
                    *allocated.entry(zone).or_default() += count;
                }
                kept.push(slice);
            }
            None => update.push(slice.clone()),
        }
    }
    for slice in create.iter_mut().chain(update.iter_mut()) {
        for endpoint in endpoints_mut(slice) {
            if !is_ready(endpoint) {
                endpoint.hints = None;
                continue;
            }
            let Some(zone) = zone_of(endpoint).map(str::to_string) else {
                remove_hints(create, update, &kept);
                return HintsDecision::Disabled(HintsDisabled::NoZoneSpecified);
            };
            endpoint.hints = hint(&zone);
            *allocated.entry(zone).or_default() += 1;
        }
    }
    let desired: BTreeMap<String, f64> = assignment
        .zones
        .iter()
        .map(|(zone, allocation)| (zone.clone(), allocation.desired))
        .collect();
    let (giving, receiving) = giving_and_receiving(&desired, &allocated);
    let mut allocatable: Vec<&mut Endpoint> = create
        .iter_mut()
        .chain(update.iter_mut())
        .flat_map(endpoints_mut)
        .collect();
    redistribute(&mut allocatable, giving, receiving);
    HintsDecision::Enabled(assignment)
}

/// The zone hints of an unchanged slice's ready endpoints, counted per zone, when they can
/// stay: every ready endpoint hinted, only to zones that get endpoints, and no zone past its
/// maximum with what earlier slices hold (`getHintsByZone`, topologycache/utils.go).
fn hints_by_zone(
    slice: &EndpointSlice,
    allocated: &BTreeMap<String, i64>,
    assignment: &ZoneAssignment,
) -> Option<BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for endpoint in endpoints_of(slice).iter().filter(|e| is_ready(e)) {
        let zones = endpoint
            .hints
            .as_ref()?
            .for_zones
            .as_deref()
            .unwrap_or_default();
        if zones.is_empty() {
            return None;
        }
        for zone in zones {
            if !assignment.zones.contains_key(&zone.name) {
                return None;
            }
            *counts.entry(zone.name.clone()).or_default() += 1;
        }
    }
    for (zone, count) in &counts {
        let held = allocated.get(zone).copied().unwrap_or_default();
        let maximum = assignment.zones.get(zone)?.maximum as i64;
        if count + held > maximum {
            return None;
        }
    }
    Some(counts)
}

/// Hints off: none on the slices written, and the unchanged slices that carry some are written
/// without them (`RemoveHintsFromSlices`, topologycache/utils.go).
fn remove_hints(
    create: &mut [EndpointSlice],
    update: &mut Vec<EndpointSlice>,
    unchanged: &[&EndpointSlice],
) {
    for slice in create.iter_mut().chain(update.iter_mut()) {
        for endpoint in endpoints_mut(slice) {
            endpoint.hints = None;
        }
    }
    for &slice in unchanged {
        if endpoints_of(slice).iter().any(|e| e.hints.is_some()) {
            let mut stripped = slice.clone();
            for endpoint in endpoints_mut(&mut stripped) {
                endpoint.hints = None;
            }
            update.push(stripped);
        }
    }
}

/// The zone with the most left, if any has more than nothing (the first by name on a tie).
fn most(amounts: &BTreeMap<String, f64>) -> Option<(String, f64)> {
    let mut best: Option<(&String, f64)> = None;
    for (zone, &amount) in amounts {
        if amount > best.map_or(0.0, |(_, b)| b) {
            best = Some((zone, amount));
        }
    }
    best.map(|(zone, amount)| (zone.clone(), amount))
}

/// How many endpoints each zone should give away and receive, from the desired shares and the
/// endpoints each zone holds. Transfers stop once a move would no longer bring both sides
/// closer to their share (both have less than one endpoint to go, or either less than half).
pub(super) fn giving_and_receiving(
    desired: &BTreeMap<String, f64>,
    allocated: &BTreeMap<String, i64>,
) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let mut extra = BTreeMap::new();
    let mut missing = BTreeMap::new();
    for (zone, &target) in desired {
        let held = allocated.get(zone).copied().unwrap_or_default() as f64;
        if held > target {
            extra.insert(zone.clone(), held - target);
        } else if held < target {
            missing.insert(zone.clone(), target - held);
        }
    }
    let mut giving: BTreeMap<String, i64> = BTreeMap::new();
    let mut receiving: BTreeMap<String, i64> = BTreeMap::new();
    while let (Some((giver, to_give)), Some((receiver, to_receive))) =
        (most(&extra), most(&missing))
    {
        if (to_give < 1.0 && to_receive < 1.0) || to_give < 0.5 || to_receive < 0.5 {
            break;
        }
        *giving.entry(giver.clone()).or_default() += 1;
        *extra.get_mut(&giver).expect("chosen from extra") -= 1.0;
        *receiving.entry(receiver.clone()).or_default() += 1;
        *missing.get_mut(&receiver).expect("chosen from missing") -= 1.0;
    }
    (giving, receiving)
}

fn take_one(counts: &mut BTreeMap<String, i64>, zone: &str) {
    if let Some(count) = counts.get_mut(zone) {
        *count -= 1;
        if *count <= 0 {
            counts.remove(zone);
        }
    }
}

/// Moves endpoints from giving zones to receiving zones, in the order given: each ready
/// endpoint of a zone that still gives goes to the first zone that still receives. Returns the
/// change per zone.
fn redistribute(
    endpoints: &mut [&mut Endpoint],
    mut giving: BTreeMap<String, i64>,
    mut receiving: BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    let mut changes: BTreeMap<String, i64> = BTreeMap::new();
    for endpoint in endpoints.iter_mut() {
        if !is_ready(endpoint) {
            continue;
        }
        if giving.is_empty() || receiving.is_empty() {
            break;
        }
        let Some(zone) = zone_of(endpoint).map(str::to_string) else {
            continue;
        };
        if !giving.contains_key(&zone) {
            continue;
        }
        let Some(target) = receiving.keys().next().cloned() else {
            break;
        };
        endpoint.hints = hint(&target);
        take_one(&mut giving, &zone);
        take_one(&mut receiving, &target);
        *changes.entry(zone).or_default() -= 1;
        *changes.entry(target).or_default() += 1;
    }
    changes
}

#[cfg(test)]
mod tests;
