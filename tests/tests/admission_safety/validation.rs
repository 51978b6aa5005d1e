//! Cases: endpoint validation without holes, and the apiserver's own writes.

use e2e::harness::Case;

pub fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![]
}
