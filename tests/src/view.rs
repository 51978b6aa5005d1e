//! Order-insensitive views of Endpoints and EndpointSlices, for comparing what controllers
//! wrote with what a test expects (or with what another controller wrote): generated
//! names, uids, resourceVersions, timestamps and ordering are left out.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// A port: (name, port, protocol).
pub type PortView = (String, i32, String);

/// An address of an Endpoints subset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressView {
    pub ip: String,
    pub node: Option<String>,
    pub hostname: Option<String>,
    /// `Pod/<name>` of the targetRef.
    pub target: Option<String>,
}

impl AddressView {
    /// An address of a pod on a node, without hostname.
    pub fn pod(ip: &str, node: &str, pod: &str) -> Self {
        Self {
            ip: ip.to_string(),
            node: Some(node.to_string()),
            hostname: None,
            target: Some(format!("Pod/{pod}")),
        }
    }

    fn of(address: &EndpointAddress) -> Self {
        Self {
            ip: address.ip.clone(),
            node: address.node_name.clone(),
            hostname: address.hostname.clone(),
            target: address.target_ref.as_ref().map(|r| {
                format!(
                    "{}/{}",
                    r.kind.as_deref().unwrap_or(""),
                    r.name.as_deref().unwrap_or("")
                )
            }),
        }
    }
}

/// A subset of an Endpoints object.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubsetView {
    pub ports: BTreeSet<PortView>,
    pub addresses: BTreeSet<AddressView>,
    pub not_ready: BTreeSet<AddressView>,
}

impl SubsetView {
    pub fn port(mut self, name: &str, port: i32, protocol: &str) -> Self {
        self.ports
            .insert((name.to_string(), port, protocol.to_string()));
        self
    }

    pub fn ready(mut self, address: AddressView) -> Self {
        self.addresses.insert(address);
        self
    }

    pub fn not_ready(mut self, address: AddressView) -> Self {
        self.not_ready.insert(address);
        self
    }
}

/// The subsets and labels of an Endpoints object; the `managed-by` label is left out (it
/// names the controller).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointsView {
    pub subsets: BTreeSet<SubsetView>,
    pub labels: BTreeMap<String, String>,
}

impl EndpointsView {
    pub fn of(endpoints: &Endpoints) -> Self {
        let subsets = endpoints
            .subsets
            .iter()
            .flatten()
            .map(|subset| SubsetView {
                ports: subset
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| {
                        (
                            p.name.clone().unwrap_or_default(),
                            p.port,
                            p.protocol.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
                addresses: subset
                    .addresses
                    .iter()
                    .flatten()
                    .map(AddressView::of)
                    .collect(),
                not_ready: subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .map(AddressView::of)
                    .collect(),
            })
            .collect();
        let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
        labels.remove("endpoints.kubernetes.io/managed-by");
        Self { subsets, labels }
    }

    pub fn subset(mut self, subset: SubsetView) -> Self {
        self.subsets.insert(subset);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SliceEndpointView {
    pub addresses: Vec<String>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    pub node: Option<String>,
    pub zone: Option<String>,
    pub hostname: Option<String>,
    pub target: Option<String>,
    /// Zones, then `node:<name>` entries, of the hints.
    pub hints: Vec<String>,
}

impl SliceEndpointView {
    /// A pod endpoint with conditions (ready, serving, terminating).
    pub fn pod(
        ip: &str,
        node: &str,
        zone: Option<&str>,
        pod: &str,
        conditions: (bool, bool, bool),
    ) -> Self {
        Self {
            addresses: vec![ip.to_string()],
            ready: Some(conditions.0),
            serving: Some(conditions.1),
            terminating: Some(conditions.2),
            node: Some(node.to_string()),
            zone: zone.map(str::to_string),
            hostname: None,
            target: Some(format!("Pod/{pod}")),
            hints: Vec::new(),
        }
    }
}

/// All slices of one Service, merged: per (address type, port set) the endpoints, plus the
/// labels every slice carries (they must agree) and how many slices there are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSlicesView {
    pub groups: BTreeMap<(String, BTreeSet<PortView>), BTreeSet<SliceEndpointView>>,
    pub labels: BTreeSet<BTreeMap<String, String>>,
}

impl ServiceSlicesView {
    /// Merges `slices`; the `managed-by` label is kept out (it names the controller).
    pub fn of<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Self {
        let mut view = Self::default();
        for slice in slices {
            let ports = slice
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    (
                        p.name.clone().unwrap_or_default(),
                        p.port.unwrap_or_default(),
                        p.protocol.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let endpoints = view
                .groups
                .entry((slice.address_type.clone(), ports))
                .or_default();
            for endpoint in slice.endpoints.iter().flatten() {
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                let mut hints: Vec<String> = Vec::new();
                if let Some(h) = &endpoint.hints {
                    hints.extend(h.for_zones.iter().flatten().map(|z| z.name.clone()));
                    hints.extend(
                        h.for_nodes
                            .iter()
                            .flatten()
                            .map(|n| format!("node:{}", n.name)),
                    );
                }
                endpoints.insert(SliceEndpointView {
                    addresses: endpoint.addresses.clone(),
                    ready: conditions.ready,
                    serving: conditions.serving,
                    terminating: conditions.terminating,
                    node: endpoint.node_name.clone(),
                    zone: endpoint.zone.clone(),
                    hostname: endpoint.hostname.clone(),
                    target: endpoint.target_ref.as_ref().map(|r| {
                        format!(
                            "{}/{}",
                            r.kind.as_deref().unwrap_or(""),
                            r.name.as_deref().unwrap_or("")
                        )
                    }),
                    hints,
                });
            }
            let mut labels = slice.metadata.labels.clone().unwrap_or_default();
            labels.remove("endpointslice.kubernetes.io/managed-by");
            view.labels.insert(labels);
        }
        view
    }

    /// Adds a group of endpoints for `address_type` and `ports`.
    pub fn group(
        mut self,
        address_type: &str,
        ports: &[(&str, i32, &str)],
        endpoints: impl IntoIterator<Item = SliceEndpointView>,
    ) -> Self {
        let ports = ports
            .iter()
            .map(|(n, p, proto)| (n.to_string(), *p, proto.to_string()))
            .collect();
        self.groups
            .entry((address_type.to_string(), ports))
            .or_default()
            .extend(endpoints);
        self
    }

    /// Sets the labels every slice must carry (without managed-by).
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.labels = BTreeSet::from([labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()]);
        self
    }
}

/// Everything the endpoint controllers published for one Service, normalised for comparing two
/// controllers: the Endpoints object (subsets and labels as [`EndpointsView`], plus the
/// over-capacity annotation), the slices merged as [`ServiceSlicesView`], and how many
/// endpoints the slices hold in all (more than the merged view holds means a duplicate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishedView {
    pub endpoints: Option<EndpointsView>,
    /// `endpoints.kubernetes.io/over-capacity` of the Endpoints object.
    pub over_capacity: Option<String>,
    pub slices: ServiceSlicesView,
    /// Endpoints over all slices, duplicates counted.
    pub slice_endpoints: usize,
}

impl PublishedView {
    pub fn of<'a>(
        endpoints: Option<&Endpoints>,
        slices: impl IntoIterator<Item = &'a EndpointSlice> + Clone,
    ) -> Self {
        Self {
            endpoints: endpoints.map(EndpointsView::of),
            over_capacity: endpoints.and_then(|e| {
                e.metadata
                    .annotations
                    .as_ref()?
                    .get("endpoints.kubernetes.io/over-capacity")
                    .cloned()
            }),
            slices: ServiceSlicesView::of(slices.clone()),
            slice_endpoints: slices
                .into_iter()
                .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
                .sum(),
        }
    }

    /// The merged view's endpoint count; differs from `slice_endpoints` when an endpoint is in
    /// two slices.
    pub fn distinct_slice_endpoints(&self) -> usize {
        self.slices.groups.values().map(BTreeSet::len).sum()
    }
}
