//! Topology-aware hints (`service.kubernetes.io/topology-mode: Auto`): each ready endpoint is
//! given to one zone, so that every zone gets endpoints in proportion to its CPU.
//!
//! The rules are the in-tree topology cache's. Hints need two zones or more with known CPU, at
//! least as many ready endpoints as zones, a zone on every ready endpoint, and a split where no
//! zone's endpoints would take more than 20% over their fair share of traffic (each zone needs
//! at least `ceil(desired / 1.2)` endpoints). Endpoints start hinted to their own zone; whole
//! endpoints are then moved from zones with more than their share to zones with less.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
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
    /// Hints on: apply the assignment with [`apply_zone_hints`].
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

/// Whether an address type's endpoints (ready or not, from every slice of that type) get
/// hints under `capacity`.
pub fn decide_hints<'a>(
    capacity: &ZoneCapacity,
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
) -> HintsDecision {
    let ready: Vec<&Endpoint> = endpoints.into_iter().filter(|e| is_ready(e)).collect();
    let assignment = match zone_assignment(capacity, ready.len()) {
        Ok(assignment) => assignment,
        Err(reason) => return HintsDecision::Disabled(reason),
    };
    if ready.iter().any(|e| zone_of(e).is_none()) {
        return HintsDecision::Disabled(HintsDisabled::NoZoneSpecified);
    }
    HintsDecision::Enabled(assignment)
}

/// Identifies an endpoint across syncs: its addresses and the object it stands for.
type EndpointId = (Vec<String>, Option<String>, Option<String>);

fn endpoint_id(endpoint: &Endpoint) -> EndpointId {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        target.and_then(|t| t.namespace.clone()),
        target.and_then(|t| t.name.clone()),
    )
}

/// The zone hints endpoints carry in the slices that exist, so that a new assignment moves the
/// same endpoints across zones as the last one did instead of reshuffling them.
#[derive(Debug, Clone, Default)]
pub struct PreviousHints(HashMap<EndpointId, String>);

impl PreviousHints {
    /// The single-zone hints found in these slices.
    pub fn from_slices<S: Borrow<EndpointSlice>>(slices: &[S]) -> Self {
        let hinted = slices
            .iter()
            .flat_map(|s| s.borrow().endpoints.iter().flatten())
            .filter_map(|endpoint| {
                let zones = endpoint.hints.as_ref()?.for_zones.as_ref()?;
                match zones.as_slice() {
                    [only] => Some((endpoint_id(endpoint), only.name.clone())),
                    _ => None,
                }
            })
            .collect();
        PreviousHints(hinted)
    }

    fn zone_of(&self, endpoint: &Endpoint) -> Option<&str> {
        self.0.get(&endpoint_id(endpoint)).map(String::as_str)
    }
}

fn hint(zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone {
            name: zone.to_string(),
        }]),
        for_nodes: None,
    })
}

/// Sets `hints.forZones` on an address type's endpoints per the assignment and returns how many
/// endpoints each zone got. Not-ready endpoints get no hints.
///
/// Every ready endpoint starts hinted to its own zone; zones holding more than their desired
/// share then give whole endpoints to zones holding less, as long as that brings both closer
/// to their share. Endpoints that went to a zone in `previous` go there again first; otherwise
/// donors are taken in the order given.
pub fn apply_zone_hints<'a>(
    assignment: &ZoneAssignment,
    endpoints: impl IntoIterator<Item = &'a mut Endpoint>,
    previous: &PreviousHints,
) -> BTreeMap<String, usize> {
    let mut endpoints: Vec<&mut Endpoint> = endpoints.into_iter().collect();
    let mut allocated: BTreeMap<String, i64> = BTreeMap::new();
    for endpoint in &mut endpoints {
        let zone = zone_of(endpoint)
            .filter(|_| is_ready(endpoint))
            .map(str::to_string);
        endpoint.hints = zone.as_deref().and_then(hint);
        if let Some(zone) = zone {
            *allocated.entry(zone).or_default() += 1;
        }
    }
    let desired: BTreeMap<String, f64> = assignment
        .zones
        .iter()
        .map(|(zone, allocation)| (zone.clone(), allocation.desired))
        .collect();
    let (giving, receiving) = giving_and_receiving(&desired, &allocated);
    for (zone, change) in redistribute(&mut endpoints, giving, receiving, previous) {
        *allocated.entry(zone).or_default() += change;
    }
    allocated
        .into_iter()
        .filter_map(|(zone, count)| Some((zone, usize::try_from(count).ok()?)))
        .collect()
}

/// Removes every hint.
pub fn strip_hints<'a>(endpoints: impl IntoIterator<Item = &'a mut Endpoint>) {
    for endpoint in endpoints {
        endpoint.hints = None;
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

/// Moves endpoints from giving zones to receiving zones; returns the change per zone.
fn redistribute(
    endpoints: &mut [&mut Endpoint],
    mut giving: BTreeMap<String, i64>,
    mut receiving: BTreeMap<String, i64>,
    previous: &PreviousHints,
) -> BTreeMap<String, i64> {
    let mut changes: BTreeMap<String, i64> = BTreeMap::new();
    let mut moved = vec![false; endpoints.len()];
    // First pass: endpoints that went to a receiving zone last time go there again.
    // Second pass: any donor goes to the first zone still receiving.
    for keep_previous in [true, false] {
        for (index, endpoint) in endpoints.iter_mut().enumerate() {
            if giving.is_empty() || receiving.is_empty() {
                return changes;
            }
            if moved[index] || !is_ready(endpoint) {
                continue;
            }
            let Some(zone) = zone_of(endpoint).map(str::to_string) else {
                continue;
            };
            if !giving.contains_key(&zone) {
                continue;
            }
            let target = if keep_previous {
                previous
                    .zone_of(endpoint)
                    .filter(|p| *p != zone && receiving.contains_key(*p))
                    .map(str::to_string)
            } else {
                receiving.keys().next().cloned()
            };
            let Some(target) = target else {
                continue;
            };
            endpoint.hints = hint(&target);
            moved[index] = true;
            take_one(&mut giving, &zone);
            take_one(&mut receiving, &target);
            *changes.entry(zone).or_default() -= 1;
            *changes.entry(target).or_default() += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests;
