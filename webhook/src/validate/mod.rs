//! Validating admission: what user-written objects may not contain.

pub(crate) mod addresses;
pub(crate) mod endpoints;

pub use endpoints::{EndpointPolicy, PodIps, ServiceCidrs, admit_endpoints};
