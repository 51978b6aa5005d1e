//! How the cluster's CPU is spread over zones, from the Nodes: what topology-aware hints are
//! proportional to.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use crate::well_known::{
    LABEL_NODE_ROLE_CONTROL_PLANE, LABEL_NODE_ROLE_MASTER, LABEL_TOPOLOGY_ZONE,
};

/// Each zone's share of the allocatable CPU of Ready, non-control-plane Nodes, or why there is
/// no usable share. Computed from every Node at once; compare two values to know whether a
/// Node change moved anything.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneCapacity {
    /// Two zones or more, each with its share of the CPU (the shares sum to 1).
    Zones(BTreeMap<String, f64>),
    /// A Ready worker Node has no zone label or no allocatable CPU, or there is no CPU at all:
    /// shares would be wrong, so there are none.
    InsufficientNodeInfo,
    /// Ready worker Nodes sit in one zone only.
    SingleZone,
}

impl ZoneCapacity {
    /// The zones' CPU shares from all Nodes of the cluster. Nodes that are not Ready and
    /// control-plane Nodes (`node-role.kubernetes.io/control-plane` or `.../master`, any
    /// value) do not count; every other Node must have a zone and allocatable CPU.
    pub fn from_nodes<N: Borrow<Node>>(nodes: &[N]) -> Self {
        let mut millis_by_zone: BTreeMap<String, u128> = BTreeMap::new();
        for node in nodes.iter().map(Borrow::borrow) {
            if is_control_plane(node) || !is_ready(node) {
                continue;
            }
            match (zone(node), allocatable_cpu_millis(node)) {
                (Some(zone), Some(millis)) if millis > 0 => {
                    *millis_by_zone.entry(zone.to_string()).or_default() += millis;
                }
                _ => return ZoneCapacity::InsufficientNodeInfo,
            }
        }
        let total: u128 = millis_by_zone.values().sum();
        if total == 0 {
            return ZoneCapacity::InsufficientNodeInfo;
        }
        if millis_by_zone.len() < 2 {
            return ZoneCapacity::SingleZone;
        }
        ZoneCapacity::Zones(
            millis_by_zone
                .into_iter()
                .map(|(zone, millis)| (zone, millis as f64 / total as f64))
                .collect(),
        )
    }
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

fn zone(node: &Node) -> Option<&str> {
    label(node, LABEL_TOPOLOGY_ZONE).filter(|z| !z.is_empty())
}

fn is_control_plane(node: &Node) -> bool {
    label(node, LABEL_NODE_ROLE_CONTROL_PLANE).is_some()
        || label(node, LABEL_NODE_ROLE_MASTER).is_some()
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn allocatable_cpu_millis(node: &Node) -> Option<u128> {
    let cpu = node.status.as_ref()?.allocatable.as_ref()?.get("cpu")?;
    quantity_millis(&cpu.0)
}

/// Whether a Node update makes the zones' CPU shares be computed again: its readiness or its
/// zone label changed, as in-tree (`updateNode`, pkg/controller/endpointslice/
/// endpointslice_controller.go). Node additions and deletions always do. Any other change (its
/// allocatable CPU, its role labels) is taken into account at the next of those, as in-tree.
pub fn nodes_changed_relevant(old: &Node, new: &Node) -> bool {
    let relevant = |node: &Node| (zone(node).map(str::to_string), is_ready(node));
    relevant(old) != relevant(new)
}

/// A resource quantity (`4`, `3500m`, `1.5`, `2Ki`, `1e3`) in thousandths, rounded up as
/// Kubernetes' `MilliValue` does. `None` for anything unparsable, negative or out of range.
fn quantity_millis(text: &str) -> Option<u128> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let fraction_digits = i32::try_from(fraction.len()).ok()?;

    // value = mantissa * 10^-fraction_digits * multiplier; millis = value * 1000.
    let (numerator, decimal_exponent) = match suffix {
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = match suffix {
                "Ki" => 1,
                "Mi" => 2,
                "Gi" => 3,
                "Ti" => 4,
                "Pi" => 5,
                _ => 6,
            };
            (mantissa.checked_mul(1024u128.checked_pow(power)?)?, 3)
        }
        "n" => (mantissa, -6),
        "u" => (mantissa, -3),
        "m" => (mantissa, 0),
        "" => (mantissa, 3),
        "k" => (mantissa, 6),
        "M" => (mantissa, 9),
        "G" => (mantissa, 12),
        "T" => (mantissa, 15),
        "P" => (mantissa, 18),
        "E" => (mantissa, 21),
        exponent => {
            let digits = exponent
                .strip_prefix('e')
                .or_else(|| exponent.strip_prefix('E'))?;
            (mantissa, digits.parse::<i32>().ok()?.checked_add(3)?)
        }
    };
    let exponent = decimal_exponent.checked_sub(fraction_digits)?;
    if exponent >= 0 {
        numerator.checked_mul(10u128.checked_pow(exponent.unsigned_abs())?)
    } else {
        match 10u128.checked_pow(exponent.unsigned_abs()) {
            Some(divisor) => Some(numerator.div_ceil(divisor)),
            // Smaller than a thousandth of anything representable: rounds up to one.
            None => Some(u128::from(numerator > 0)),
        }
    }
}

#[cfg(test)]
mod tests;
