//! Validating admission: what user-written objects may not contain.

pub mod addresses;
pub mod endpoints;

pub use endpoints::{EndpointPolicy, PodIps, admit_endpoints};
