//! Cases: tentative reservations, per-namespace caps and refusals before reserving.

use e2e::harness::Case;

pub fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![]
}
