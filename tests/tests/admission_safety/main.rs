//! svcplane's webhook as a shared resource in the admission path, against a real
//! kube-apiserver: each case plays a hostile tenant, a forged caller or a broken dependency
//! and checks that other users' Service creates and the apiserver's own work go on. Each case
//! starts its own local control plane, so the cases run one at a time unless
//! `--test-threads` says otherwise. Takes libtest's arguments (`--list`, filters).

mod reservations;
mod server;
mod validation;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cases = reservations::cases();
    cases.extend(server::cases());
    cases.extend(validation::cases());
    e2e::harness::run_fault_suite("admission_safety", cases)
}
