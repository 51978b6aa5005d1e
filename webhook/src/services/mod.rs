//! Admission of Services: allocation (mutating) and checks (validating).

pub(crate) mod admit;
pub(crate) mod cluster_ips;
pub(crate) mod precheck;
pub mod spec;

pub use admit::{mutate_service, validate_service};
