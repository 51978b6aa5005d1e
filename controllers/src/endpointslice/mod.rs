//! EndpointSlices: the desired contents, the reconciler that turns them into the fewest writes,
//! and the tracker that keeps a stale cache from causing duplicate or lost writes.

mod desired;
mod identity;
mod index;
mod reconcile;
mod tracker;

pub use desired::{
    DesiredEndpointSlices, EndpointGroup, PodOnMissingNode, desired_endpoint_slices,
};
pub use index::{SliceIndex, SliceSync};
pub use reconcile::{MaxEndpointsPerSlice, SliceParams, SlicePlan, plan_endpoint_slices};
pub(crate) use reconcile::{Targets, live_by_name, plan_slices};
pub use tracker::SliceTracker;
