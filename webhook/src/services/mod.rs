//! Admission of Services: allocation (mutating) and checks (validating).

pub mod admit;
pub mod cluster_ips;
pub mod precheck;
pub mod spec;

pub use admit::{mutate_service, validate_service};
