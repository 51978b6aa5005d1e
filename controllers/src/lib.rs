//! The pure core of svcplane's Endpoints and EndpointSlice controllers.
//!
//! Everything in this crate is a function of plain Kubernetes objects: a Service, the Pods it
//! selects and the Nodes they run on go in; the desired Endpoints object, the desired
//! EndpointSlice contents and the smallest set of slice writes come out. There is no client and
//! no runtime here; the controllers that watch and write live at the edge and call into this.
//!
//! - [`pods`]: which pods count, their readiness, addresses, ports and hostname.
//! - [`service`]: what a Service asks for (selection, address families, headless).
//! - [`endpoints`]: the core/v1 Endpoints object and whether it needs a write.
//! - [`endpointslice`]: the desired slice contents, the slice reconciler and the write tracker.
//! - [`trigger_time`]: the honest `last-change-trigger-time` value.
//! - [`well_known`]: label and annotation keys shared with the in-tree controllers.
#![warn(missing_docs)]

pub mod endpoints;
pub mod endpointslice;
mod error;
pub mod pods;
pub mod service;
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
pub use service::IpFamily;
pub use trigger_time::{TriggerObservation, TriggerTimeTracker};
