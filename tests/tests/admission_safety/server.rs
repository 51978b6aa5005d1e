//! Cases: known callers (client certificates) and the bounded HTTPS and admin servers.

use e2e::harness::Case;

pub fn cases() -> Vec<(String, Case<()>)> {
    e2e::cases![]
}
