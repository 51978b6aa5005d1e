//! svcplane as a program: command-line flags, the long-running modes wired from the
//! `controllers` and `webhook` crates, the install manifests and the status report.

pub mod cli;
pub mod manifests;
pub mod run;
pub mod status;
