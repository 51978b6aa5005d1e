//! Label and annotation keys and values that consumers (kube-proxy, CoreDNS, meshes) and the
//! in-tree controllers agree on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Label on an EndpointSlice naming the Service it belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label on an EndpointSlice naming the controller that manages it.
pub const LABEL_SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Label on an Endpoints object naming the controller that manages it (in-tree since 1.33).
pub const LABEL_ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// Label on Endpoints and EndpointSlices of a Service without a ClusterIP; the value is empty.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Node label holding the Node's zone.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// Annotation: the earliest pod or service change that triggered this write (RFC3339Nano, UTC).
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";
/// Annotation set on an Endpoints object whose addresses were truncated.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Value of [`ANNOTATION_OVER_CAPACITY`].
pub const OVER_CAPACITY_TRUNCATED: &str = "truncated";

/// The most addresses (ready plus not ready, over all subsets) an Endpoints object carries.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// `managed-by` value of the in-tree EndpointSlice controller.
pub const IN_TREE_SLICE_MANAGER: &str = "endpointslice-controller.k8s.io";
/// `managed-by` value of the in-tree Endpoints controller.
pub const IN_TREE_ENDPOINTS_MANAGER: &str = "endpoint-controller";

/// `managed-by` value of svcplane's EndpointSlice controller. Slices labelled with it or with
/// [`IN_TREE_SLICE_MANAGER`] are the controller's own: it takes over the in-tree controller's
/// slices in place (relabelling them when it writes them anyway) instead of replacing them.
pub const SVCPLANE_SLICE_MANAGER: &str = "endpointslice-controller.svcplane.io";
/// `managed-by` value of svcplane's Endpoints controller; also its event reporter name.
pub const SVCPLANE_ENDPOINTS_MANAGER: &str = "endpoints-controller.svcplane.io";

/// `managed-by` value of the in-tree EndpointSlice mirroring controller.
pub const IN_TREE_MIRRORING_MANAGER: &str = "endpointslicemirroring-controller.k8s.io";
/// `managed-by` value of svcplane's mirroring controller. Slices labelled with it or with
/// [`IN_TREE_MIRRORING_MANAGER`] are the mirroring controller's own: it takes over the in-tree
/// controller's mirrored slices in place instead of replacing them.
pub const SVCPLANE_MIRRORING_MANAGER: &str = "endpointslicemirroring-controller.svcplane.io";

/// Label on a user-written Endpoints object: `"true"` keeps it from being mirrored into
/// EndpointSlices.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Annotation of the old Endpoints-based leader election; such objects are not mirrored.
pub const ANNOTATION_LEADER_ELECTION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Annotation where `kubectl apply` keeps the applied manifest; never mirrored.
pub const ANNOTATION_LAST_APPLIED_CONFIGURATION: &str =
    "kubectl.kubernetes.io/last-applied-configuration";

/// Service annotation asking for topology-aware hints (`Auto`).
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
/// The older spelling of [`ANNOTATION_TOPOLOGY_MODE`]; it wins when both are set.
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
/// Node label marking a control-plane Node, left out of topology capacity.
pub const LABEL_NODE_ROLE_CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
/// The older spelling of [`LABEL_NODE_ROLE_CONTROL_PLANE`], also left out.
pub const LABEL_NODE_ROLE_MASTER: &str = "node-role.kubernetes.io/master";

/// Formats a trigger time the way the in-tree controllers do (Go's RFC3339Nano in UTC: no
/// trailing zeros in the fraction, no fraction at all on a whole second).
pub fn format_trigger_time(time: &Time) -> String {
    time.0.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn trigger_time_matches_go_rfc3339_nano() {
        let whole = Time(Timestamp::new(1_514_764_800, 0).unwrap());
        let half = Time(Timestamp::new(1_514_764_800, 500_000_000).unwrap());
        assert_eq!(format_trigger_time(&whole), "2018-01-01T00:00:00Z");
        assert_eq!(format_trigger_time(&half), "2018-01-01T00:00:00.5Z");
    }
}
