//! `spec.trafficDistribution`: hints that keep traffic in the endpoint's own zone, or node.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, ForNode, ForZone};

use super::hints::is_ready;

/// A `spec.trafficDistribution` value the controllers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficDistribution {
    /// `PreferClose`: same zone, the older name of `PreferSameZone`.
    PreferClose,
    /// `PreferSameZone`: each ready endpoint hinted to its own zone.
    PreferSameZone,
    /// `PreferSameNode`: own zone, and also its own node.
    PreferSameNode,
}

impl TrafficDistribution {
    /// Parses the API spelling; unknown values are `None` (no hints).
    pub fn from_api(value: &str) -> Option<Self> {
        match value {
            "PreferClose" => Some(TrafficDistribution::PreferClose),
            "PreferSameZone" => Some(TrafficDistribution::PreferSameZone),
            "PreferSameNode" => Some(TrafficDistribution::PreferSameNode),
            _ => None,
        }
    }

    /// The API spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            TrafficDistribution::PreferClose => "PreferClose",
            TrafficDistribution::PreferSameZone => "PreferSameZone",
            TrafficDistribution::PreferSameNode => "PreferSameNode",
        }
    }

    /// The Service's `spec.trafficDistribution`, when set to a known value.
    pub fn of(service: &Service) -> Option<Self> {
        service
            .spec
            .as_ref()
            .and_then(|s| s.traffic_distribution.as_deref())
            .and_then(Self::from_api)
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Sets the hints `distribution` asks for on every endpoint: each ready endpoint gets
/// `forZones: [its zone]` (when it has one) and, for `PreferSameNode`, `forNodes: [its node]`
/// (when it has one); not-ready endpoints and every endpoint under `None` get no hints.
pub fn apply_traffic_distribution<'a>(
    distribution: Option<TrafficDistribution>,
    endpoints: impl IntoIterator<Item = &'a mut Endpoint>,
) {
    for endpoint in endpoints {
        endpoint.hints = distribution_hints(
            distribution,
            is_ready(endpoint),
            endpoint.zone.as_deref(),
            endpoint.node_name.as_deref(),
        );
    }
}

/// The hints [`apply_traffic_distribution`] gives an endpoint that is `ready` (or not) in
/// `zone` on `node`.
pub(crate) fn distribution_hints(
    distribution: Option<TrafficDistribution>,
    ready: bool,
    zone: Option<&str>,
    node: Option<&str>,
) -> Option<EndpointHints> {
    let distribution = distribution.filter(|_| ready)?;
    let for_zones = non_empty(zone).map(|zone| vec![ForZone { name: zone.into() }]);
    let for_nodes = non_empty(node)
        .filter(|_| distribution == TrafficDistribution::PreferSameNode)
        .map(|node| vec![ForNode { name: node.into() }]);
    (for_zones.is_some() || for_nodes.is_some()).then_some(EndpointHints {
        for_zones,
        for_nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointConditions;

    fn endpoint(zone: Option<&str>, node: Option<&str>, ready: bool) -> Endpoint {
        Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                ..Default::default()
            }),
            zone: zone.map(str::to_string),
            node_name: node.map(str::to_string),
            ..Default::default()
        }
    }

    fn zones(names: &[&str]) -> Option<Vec<ForZone>> {
        Some(
            names
                .iter()
                .map(|n| ForZone {
                    name: n.to_string(),
                })
                .collect(),
        )
    }

    fn nodes(names: &[&str]) -> Option<Vec<ForNode>> {
        Some(
            names
                .iter()
                .map(|n| ForNode {
                    name: n.to_string(),
                })
                .collect(),
        )
    }

    fn hinted(
        distribution: Option<TrafficDistribution>,
        endpoint: Endpoint,
    ) -> Option<EndpointHints> {
        let mut endpoints = vec![endpoint];
        apply_traffic_distribution(distribution, &mut endpoints);
        endpoints.remove(0).hints
    }

    /// `ReconcileHints` (k8s.io/endpointslice trafficdist/trafficdist.go): `PreferClose`,
    /// `PreferSameZone` and `PreferSameNode` all take the `preferCloseHeuristic`, node hints
    /// only for `PreferSameNode`: PreferClose is PreferSameZone's older name.
    #[test]
    fn prefer_close_and_same_zone_hint_the_own_zone() {
        for distribution in [
            TrafficDistribution::PreferClose,
            TrafficDistribution::PreferSameZone,
        ] {
            let hints = hinted(
                Some(distribution),
                endpoint(Some("zone-a"), Some("node-1"), true),
            );
            assert_eq!(
                hints,
                Some(EndpointHints {
                    for_zones: zones(&["zone-a"]),
                    for_nodes: None
                }),
                "{distribution:?}"
            );
        }
    }

    /// `preferCloseHeuristic.update` (trafficdist.go) with `generateNodeHints`: `forZones`
    /// from the endpoint's zone (for proxies that know only zones) and `forNodes` from its
    /// node, each when set.
    #[test]
    fn prefer_same_node_hints_zone_and_node() {
        let hints = hinted(
            Some(TrafficDistribution::PreferSameNode),
            endpoint(Some("zone-a"), Some("node-1"), true),
        );
        assert_eq!(
            hints,
            Some(EndpointHints {
                for_zones: zones(&["zone-a"]),
                for_nodes: nodes(&["node-1"]),
            })
        );
        let zoneless = hinted(
            Some(TrafficDistribution::PreferSameNode),
            endpoint(None, Some("node-1"), true),
        );
        assert_eq!(
            zoneless,
            Some(EndpointHints {
                for_zones: None,
                for_nodes: nodes(&["node-1"]),
            })
        );
    }

    /// `preferCloseHeuristic.update` (trafficdist.go) leaves endpoints that are not ready as
    /// they come, and they come without hints: every endpoint written is rebuilt from its pod
    /// (`podToEndpoint`, k8s.io/endpointslice utils.go); it clears the hints of a ready one
    /// with neither zone nor node, and `defaultHeuristic.update` clears every hint when no
    /// distribution is in effect.
    #[test]
    fn not_ready_or_unplaced_endpoints_and_no_distribution_get_no_hints() {
        let stale = || {
            let mut e = endpoint(Some("zone-a"), Some("node-1"), false);
            e.hints = Some(EndpointHints {
                for_zones: zones(&["zone-b"]),
                for_nodes: None,
            });
            e
        };
        assert_eq!(
            hinted(Some(TrafficDistribution::PreferClose), stale()),
            None
        );
        assert_eq!(
            hinted(
                Some(TrafficDistribution::PreferClose),
                endpoint(None, None, true)
            ),
            None
        );
        let mut ready = stale();
        ready.conditions.as_mut().unwrap().ready = Some(true);
        assert_eq!(hinted(None, ready), None);
    }

    /// The values of `closeTrafficDistribution` (trafficdist.go), spelled as in
    /// k8s.io/api core/v1 `ServiceTrafficDistribution*`; anything else gives no hints.
    #[test]
    fn only_known_values_parse() {
        for value in ["PreferClose", "PreferSameZone", "PreferSameNode"] {
            assert_eq!(
                TrafficDistribution::from_api(value).unwrap().as_api(),
                value
            );
        }
        assert_eq!(TrafficDistribution::from_api("PreferSameRegion"), None);
        assert_eq!(TrafficDistribution::from_api("preferclose"), None);
    }
}
