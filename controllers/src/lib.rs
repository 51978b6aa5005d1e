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
//! - [`endpoints`]: the core/v1 Endpoints object, its per-Service index and whether it needs a
//!   write.
//! - [`endpointslice`]: the desired slice contents, their per-Service index, the slice
//!   reconciler and the write tracker.
//! - [`trigger_time`]: the honest `last-change-trigger-time` value.
//! - [`well_known`]: label and annotation keys shared with the in-tree controllers.
//! - [`runtime`]: the controllers themselves, started with [`runtime::run`].
//!
//! # Using it from a controller
//!
//! Each controller keeps, per Service, an index of its pods' endpoints ([`EndpointsIndex`],
//! [`SliceIndex`]), fed the pods that changed since its last sync (built from every selected
//! pod when new or when the Service changed). A sync after one pod changed then costs what that
//! pod changed; the results are those of [`desired_endpoints`] / [`desired_endpoint_slices`]
//! and [`plan_endpoints_write`] / [`plan_endpoint_slices`] on every pod.
//!
//! Endpoints sync of a Service: plan from [`EndpointsTracker::current`] (the cached object, or
//! what this controller last wrote while the cache has not shown it yet); take the trigger
//! time from [`TriggerTimeTracker::trigger_time`] with the index's changed pods;
//! [`EndpointsIndex::plan`]; write; then [`EndpointsIndex::synced`] and
//! [`EndpointsTracker::record_update`] (or [`EndpointsIndex::failed`] and
//! [`EndpointsTracker::forget`]), and [`TriggerTimeTracker::commit`].
//!
//! EndpointSlice sync of a Service: list the cached slices labelled with its name and managed
//! by this controller; if [`SliceTracker::is_stale`], retry later; [`SliceIndex::plan`] (with
//! topology hints); apply creates, updates and deletes, recording each with
//! [`SliceTracker::record_write`] / [`SliceTracker::record_deletion`], then
//! [`SliceIndex::synced`] with the written slices (or [`SliceIndex::failed`]); retry later when
//! [`SliceSync::pods_on_missing_nodes`] is not empty. Slice watch events need a sync only when
//! [`SliceTracker::is_news`] or, for deletions, when [`SliceTracker::handle_deletion`] says the
//! controller did not make it.
#![warn(missing_docs)]

pub mod endpoints;
pub mod endpointslice;
mod error;
mod fast_hash;
pub mod mirroring;
mod pod_changes;
pub mod pods;
pub mod runtime;
mod selectors;
pub mod service;
mod slice_name;
pub mod topology;
pub mod trigger_time;
pub mod well_known;

#[cfg(test)]
mod fixtures;

pub use endpoints::{
    EndpointsIndex, EndpointsParams, EndpointsSync, EndpointsTracker, EndpointsWrite,
    desired_endpoints, endpoints_equivalent, plan_endpoints_write,
};
pub use endpointslice::{
    DesiredEndpointSlices, EndpointGroup, MaxEndpointsPerSlice, PodOnMissingNode, SliceIndex,
    SliceParams, SlicePlan, SliceSync, SliceTracker, desired_endpoint_slices, plan_endpoint_slices,
};
pub use error::{Error, Result};
pub use mirroring::{
    DesiredMirroredSlices, MirroringParams, desired_mirrored_slices, plan_mirrored_slices,
};
pub use service::IpFamily;
pub use topology::{HintsDecision, HintsEventTracker, ZoneCapacity, plan_with_topology};
pub use trigger_time::{PodTrigger, TriggerObservation, TriggerTimeTracker};
