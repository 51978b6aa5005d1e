//! The pure core of svcplane's Endpoints and EndpointSlice controllers.
//!
//! Everything but [`runtime`] is a function of plain values: a Service, the pods it selects
//! (each a [`pods::PodInfo`], what of a Pod decides its endpoints) and the Nodes they run on go
//! in; the desired Endpoints object, the desired EndpointSlice contents and the smallest set of
//! slice writes come out. No client, no async.
//! [`runtime`] is the edge that watches, queues, writes and elects a leader, calling into the
//! rest.
//!
//! - [`pods`]: which pods count, their readiness, addresses, ports and hostname.
//! - [`service`]: what a Service asks for (selection, address families, headless).
//! - [`endpoints`]: the core/v1 Endpoints object and whether it needs a write.
//! - [`endpointslice`]: the desired slice contents, the slice reconciler and the write tracker.
//! - [`trigger_time`]: the honest `last-change-trigger-time` value.
//! - [`well_known`]: label and annotation keys shared with the in-tree controllers.
//! - [`runtime`]: the controllers themselves, started with [`runtime::run`].
//!
//! # Using it from a controller
//!
//! Endpoints sync of a Service: skip it when the cached Endpoints is a version
//! [`EndpointsTracker::is_stale`] knows was replaced; take the trigger time from
//! [`TriggerTimeTracker::trigger_time`]; [`desired_endpoints`] (`None`: not ours, leave it);
//! [`plan_endpoints_write`] against the cached object; write; then
//! [`EndpointsTracker::record_update`] and [`TriggerTimeTracker::commit`].
//!
//! EndpointSlice sync of a Service: list the cached slices labelled with its name and managed
//! by this controller; if [`SliceTracker::is_stale`], retry later; [`desired_endpoint_slices`]
//! with a Node lookup; [`plan_endpoint_slices`]; apply creates, updates and deletes, recording
//! each with [`SliceTracker::record_write`] / [`SliceTracker::record_deletion`]; retry later when
//! [`DesiredEndpointSlices::needs_retry`]. Slice watch events need a sync only when
//! [`SliceTracker::is_news`] or, for deletions, when [`SliceTracker::handle_deletion`] says the
//! controller did not make it.
#![warn(missing_docs)]

pub mod endpoints;
pub mod endpointslice;
mod error;
pub mod mirroring;
pub mod pods;
pub mod runtime;
pub mod service;
pub mod topology;
pub mod trigger_time;
pub mod well_known;

#[cfg(test)]
mod fixtures;

pub use endpoints::{
    EndpointsParams, EndpointsTracker, EndpointsWrite, desired_endpoints, endpoints_equivalent,
    plan_endpoints_write,
};
pub use endpointslice::{
    DesiredEndpointSlices, EndpointGroup, MaxEndpointsPerSlice, PodOnMissingNode, SliceParams,
    SlicePlan, SliceTracker, desired_endpoint_slices, plan_endpoint_slices,
};
pub use error::{Error, Result};
pub use mirroring::{
    DesiredMirroredSlices, MirroringParams, desired_mirrored_slices, plan_mirrored_slices,
};
pub use service::IpFamily;
pub use topology::{HintsDecision, HintsEventTracker, ZoneCapacity, apply_topology};
pub use trigger_time::{TriggerObservation, TriggerTimeTracker};
