//! Admission of Services: allocation (mutating) and checks (validating).

pub mod spec;
