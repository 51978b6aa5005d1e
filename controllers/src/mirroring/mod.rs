//! EndpointSlice mirroring: a Service without selector gets its endpoints from a user-written
//! Endpoints object of the same name, and consumers that read only EndpointSlices see them
//! through mirrored slices.
//!
//! [`desired_mirrored_slices`] decides whether the Endpoints is mirrored and what its slices
//! hold (one per address type and port list) along with the events to record;
//! [`plan_mirrored_slices`] turns that into the fewest slice writes, deleting every mirrored
//! slice once mirroring no longer applies.

mod desired;
mod reconcile;

pub use desired::{
    DesiredMirroredSlices, MirroringEvent, MirroringParams, REASON_INVALID_IP_ADDRESS,
    REASON_TOO_MANY_ADDRESSES_TO_MIRROR, SkipReason, desired_mirrored_slices, endpoints_mirrorable,
    should_mirror,
};
pub use reconcile::plan_mirrored_slices;
