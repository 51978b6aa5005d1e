//! Topology hints on a Service's EndpointSlice endpoints: CPU-proportional zone hints for
//! `service.kubernetes.io/topology-mode: Auto`, or same-zone / same-node hints for
//! `spec.trafficDistribution`, or none.
//!
//! - [`ZoneCapacity`]: the zones' CPU shares, from the Nodes; [`nodes_changed_relevant`] tells
//!   which Node updates can change them.
//! - [`add_zone_hints`]: the Auto mode on the slices a sync writes, with every safeguard of
//!   the in-tree topology cache.
//! - [`apply_traffic_distribution`]: `PreferClose`, `PreferSameZone` and `PreferSameNode` on
//!   the desired endpoints.
//! - [`plan_with_topology`]: a Service's slice writes with its hints, in one call;
//!   [`HintsEventTracker`] turns the outcome into the in-tree events.

mod capacity;
mod hints;
mod traffic;

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub use capacity::{ZoneCapacity, nodes_changed_relevant};
pub use hints::{
    HintsDecision, HintsDisabled, OVERLOAD_THRESHOLD, ZoneAllocation, ZoneAssignment,
    add_zone_hints, zone_assignment,
};
pub(crate) use traffic::distribution_hints;
pub use traffic::{TrafficDistribution, apply_traffic_distribution};

use crate::endpointslice::{DesiredEndpointSlices, SliceParams, SlicePlan, Targets, plan_slices};
use crate::service::IpFamily;
use crate::well_known::{ANNOTATION_TOPOLOGY_AWARE_HINTS, ANNOTATION_TOPOLOGY_MODE};

/// Event reason (type Normal) when a Service's Auto hints are first written.
pub const REASON_HINTS_ENABLED: &str = "TopologyAwareHintsEnabled";
/// Event reason (type Warning) when a Service's Auto hints cannot be written or were removed.
pub const REASON_HINTS_DISABLED: &str = "TopologyAwareHintsDisabled";

/// Which hints a Service's endpoints get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintsPolicy {
    /// `topology-mode: Auto` (or the older `topology-aware-hints: Auto`): CPU-proportional
    /// zone hints. `spec.trafficDistribution` is ignored meanwhile.
    Auto,
    /// `spec.trafficDistribution` with a known value.
    TrafficDistribution(TrafficDistribution),
    /// No hints at all.
    None,
}

/// Whether the Service asks for Auto hints. The older `topology-aware-hints` annotation wins
/// when both are set; `Auto` and `auto` both count.
pub fn uses_auto_hints(service: &Service) -> bool {
    let annotations = service.metadata.annotations.as_ref();
    let value = annotations.and_then(|a| {
        a.get(ANNOTATION_TOPOLOGY_AWARE_HINTS)
            .or_else(|| a.get(ANNOTATION_TOPOLOGY_MODE))
    });
    matches!(value.map(String::as_str), Some("Auto" | "auto"))
}

impl HintsPolicy {
    /// The Service's policy.
    pub fn of(service: &Service) -> Self {
        if uses_auto_hints(service) {
            return HintsPolicy::Auto;
        }
        TrafficDistribution::of(service).map_or(HintsPolicy::None, HintsPolicy::TrafficDistribution)
    }

    /// The `topology` and `traffic_distribution` labels of
    /// `endpoint_slice_controller_endpointslices_changed_per_sync`: `Auto` or `Disabled`, and
    /// the `spec.trafficDistribution` value only when it is the one in effect (empty under
    /// Auto).
    pub fn metric_labels(self) -> (&'static str, &'static str) {
        match self {
            HintsPolicy::Auto => ("Auto", ""),
            HintsPolicy::TrafficDistribution(distribution) => ("Disabled", distribution.as_api()),
            HintsPolicy::None => ("Disabled", ""),
        }
    }
}

/// What [`plan_with_topology`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyOutcome {
    /// Auto mode: one decision per address type, in the Service's address type order.
    Auto(Vec<(IpFamily, HintsDecision)>),
    /// Hints per `spec.trafficDistribution` (or none) on these address types.
    NotAuto(Vec<IpFamily>),
}

/// The writes that bring the Service's `existing` slices to `desired`, with the hints its
/// [`HintsPolicy`] asks for, as the in-tree reconciler gives them (`reconcileByAddressType`,
/// k8s.io/endpointslice reconciler.go).
///
/// Under Auto, endpoints are planned without hints (in-tree compares them with
/// `EndpointsEqualBeyondHash`), then [`add_zone_hints`] gives hints on the slices written and
/// keeps those of unchanged slices that still fit. Otherwise every desired endpoint gets the
/// hints of `spec.trafficDistribution`, or none, before planning, so that a slice whose hints
/// are missing, wrong or stale is updated (`ReconcileHints`, trafficdist/trafficdist.go).
pub fn plan_with_topology<S: Borrow<EndpointSlice>>(
    service: &Service,
    capacity: &ZoneCapacity,
    desired: &mut DesiredEndpointSlices,
    existing: &[S],
    params: &SliceParams<'_>,
) -> (SlicePlan, TopologyOutcome) {
    let policy = HintsPolicy::of(service);
    let distribution = match policy {
        HintsPolicy::TrafficDistribution(distribution) => Some(distribution),
        HintsPolicy::Auto | HintsPolicy::None => None,
    };
    for group in &mut desired.groups {
        apply_traffic_distribution(distribution, &mut group.endpoints);
    }
    if policy != HintsPolicy::Auto {
        let plan = plan_slices(service, existing, Targets::from_scratch(desired), params);
        return (
            plan,
            TopologyOutcome::NotAuto(desired.address_types.clone()),
        );
    }
    let decisions = RefCell::new(Vec::new());
    let auto_hints = |family: IpFamily,
                      create: &mut [EndpointSlice],
                      update: &mut Vec<EndpointSlice>,
                      unchanged: &[&EndpointSlice]| {
        let decision = add_zone_hints(capacity, create, update, unchanged);
        decisions.borrow_mut().push((family, decision));
    };
    let mut targets = Targets::from_scratch(desired);
    targets.auto_hints = Some(&auto_hints);
    let plan = plan_slices(service, existing, targets, params);
    (plan, TopologyOutcome::Auto(decisions.into_inner()))
}

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl EventType {
    /// The API spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An event to record on the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyEvent {
    /// Normal for [`REASON_HINTS_ENABLED`], Warning for [`REASON_HINTS_DISABLED`].
    pub type_: EventType,
    /// [`REASON_HINTS_ENABLED`] or [`REASON_HINTS_DISABLED`].
    pub reason: &'static str,
    /// The in-tree message, ending with the address type.
    pub message: String,
}

fn with_address_type(message: impl std::fmt::Display, family: IpFamily) -> String {
    format!("{message}, addressType: {}", family.as_str())
}

/// Remembers which Services have Auto hints written, to emit the in-tree events:
/// `TopologyAwareHintsEnabled` when hints are first written, `TopologyAwareHintsDisabled` on
/// every sync that cannot write them and once when the Auto annotation goes away. Plain data;
/// a controller shares it behind a mutex.
#[derive(Debug, Clone, Default)]
pub struct HintsEventTracker {
    populated: HashSet<(String, String)>,
}

impl HintsEventTracker {
    /// The events for one sync of a Service, from [`plan_with_topology`]'s outcome.
    pub fn events(
        &mut self,
        namespace: &str,
        name: &str,
        outcome: &TopologyOutcome,
    ) -> Vec<TopologyEvent> {
        let key = (namespace.to_string(), name.to_string());
        let mut events = Vec::new();
        match outcome {
            TopologyOutcome::Auto(decisions) => {
                for (family, decision) in decisions {
                    match decision {
                        HintsDecision::Enabled(_) => {
                            if self.populated.insert(key.clone()) {
                                events.push(TopologyEvent {
                                    type_: EventType::Normal,
                                    reason: REASON_HINTS_ENABLED,
                                    message: with_address_type(
                                        "Topology Aware Hints has been enabled",
                                        *family,
                                    ),
                                });
                            }
                        }
                        HintsDecision::Disabled(reason) => {
                            self.populated.remove(&key);
                            events.push(TopologyEvent {
                                type_: EventType::Warning,
                                reason: REASON_HINTS_DISABLED,
                                message: with_address_type(reason, *family),
                            });
                        }
                    }
                }
            }
            TopologyOutcome::NotAuto(families) => {
                if self.populated.remove(&key)
                    && let Some(&family) = families.first()
                {
                    events.push(TopologyEvent {
                        type_: EventType::Warning,
                        reason: REASON_HINTS_DISABLED,
                        message: with_address_type(
                            "Topology Aware Hints has been disabled",
                            family,
                        ),
                    });
                }
            }
        }
        events
    }

    /// Forgets a deleted Service.
    pub fn forget_service(&mut self, namespace: &str, name: &str) {
        self.populated
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests;
