//! A Service's EndpointSlice endpoints, kept between syncs and fed pod by pod, so that a sync
//! after one pod changed costs what that pod changed, not what the Service holds.
//!
//! The index holds each selected pod's endpoints (computed once per pod change), the pods changed
//! since the last successful sync, and what that sync published: the resourceVersion of every
//! slice and which slice holds each pod's endpoint. When the cached slices are exactly those
//! versions, a sync plans from the changed pods alone: slices holding none of them are known to
//! be current and are left unread. Otherwise (first sync, a slice changed by someone else, a
//! failed write, Auto topology hints, which depend on every endpoint) it plans from scratch.
//! Both give the same plan: the reconciler is the same, told which slices and endpoints an
//! earlier sync settled.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice,
};
use k8s_openapi::jiff::Timestamp;
use smallvec::SmallVec;

use super::desired::{
    DesiredEndpointSlices, EndpointGroup, PodOnMissingNode, endpoint_ports, node_zone,
};
use super::identity::{DesiredEndpoint, EndpointKey, PodEndpoint, PortsKey, sort_by_key};
use super::reconcile::{GroupTarget, SliceParams, SlicePlan, Targets, plan_slices};
use crate::fast_hash::FastHash;
use crate::pod_changes::PodChanges;
use crate::pods::{self, PodInfo, ResolvedPorts, addresses_of_family, resolved_ports};
use crate::service::{self, IpFamily, is_being_deleted, publishes_not_ready, slice_families};
use crate::topology::{
    HintsPolicy, TopologyOutcome, TrafficDistribution, ZoneCapacity, distribution_hints,
    plan_with_topology,
};
use crate::trigger_time::PodTrigger;

/// The port list of a group of endpoints, written out once per distinct resolution.
#[derive(Debug)]
struct PortList {
    ports: Vec<EndpointPort>,
    key: PortsKey,
}

/// What one selected pod contributes to the slices.
#[derive(Debug, Clone)]
enum Contribution {
    /// Nothing: no IP, or finished.
    Nothing,
    /// Nothing until its Node is known.
    MissingNode(String),
    /// One endpoint per address type it has addresses of.
    Endpoints(PodEndpoints),
}

/// A pod's endpoints, kept as what they are made of (the cached pod, shared) and written out
/// only for the slices a sync writes: a Service's every endpoint is not made and freed again
/// on every sync from scratch.
#[derive(Debug, Clone)]
struct PodEndpoints {
    pod: Arc<PodInfo>,
    ports: Arc<PortList>,
    /// The address types it has addresses of, in the Service's order.
    families: SmallVec<[IpFamily; 2]>,
    conditions: EndpointConditions,
    /// Whether the pod's hostname is published ([`pods::published_hostname`]).
    hostname: bool,
    zone: Option<Arc<str>>,
    hints: Option<EndpointHints>,
}

impl PodEndpoints {
    fn endpoint(&self, family: IpFamily) -> PodEndpoint<'_> {
        PodEndpoint {
            pod: &self.pod,
            family,
            conditions: &self.conditions,
            hints: self.hints.as_ref(),
            hostname: self.pod.hostname.as_deref().filter(|_| self.hostname),
            zone: self.zone.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
struct IndexedPod {
    ready_since: Option<Timestamp>,
    contribution: Contribution,
}

impl IndexedPod {
    fn endpoints(&self) -> impl Iterator<Item = EndpointRef<'_>> {
        let endpoints = match &self.contribution {
            Contribution::Endpoints(endpoints) => Some(endpoints),
            Contribution::Nothing | Contribution::MissingNode(_) => None,
        };
        endpoints.into_iter().flat_map(|endpoints| {
            let key = &endpoints.ports.key;
            let families = endpoints.families.iter();
            families.map(move |family| (*family, key, endpoints.endpoint(*family)))
        })
    }
}

/// What the last successful sync left in the cluster.
#[derive(Debug, Default)]
struct Published {
    /// Slice uid -> resourceVersion.
    versions: HashMap<String, String>,
    /// (address type, pod) -> uid of the slice holding the pod's endpoint.
    placement: HashMap<(IpFamily, String), String>,
}

impl Published {
    fn add(&mut self, slice: &EndpointSlice) {
        let (Some(uid), Some(version), Some(family)) = (
            slice.metadata.uid.as_ref(),
            slice.metadata.resource_version.as_ref(),
            slice.address_type.parse::<IpFamily>().ok(),
        ) else {
            return;
        };
        self.versions.insert(uid.clone(), version.clone());
        for endpoint in slice.endpoints.iter().flatten() {
            let pod = pod_name(endpoint).to_string();
            self.placement.insert((family, pod), uid.clone());
        }
    }

    /// Whether the live slices are exactly the published versions.
    fn matches(&self, live: &[&EndpointSlice]) -> bool {
        live.len() == self.versions.len()
            && live.iter().all(|slice| {
                let meta = &slice.metadata;
                meta.uid
                    .as_ref()
                    .and_then(|uid| self.versions.get(uid))
                    .is_some_and(|version| meta.resource_version.as_ref() == Some(version))
            })
    }
}

fn pod_name(endpoint: &Endpoint) -> &str {
    endpoint
        .target_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
        .unwrap_or_default()
}

fn uid(slice: &EndpointSlice) -> &str {
    slice.metadata.uid.as_deref().unwrap_or_default()
}

/// One sync's work for a Service, from [`SliceIndex::plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct SliceSync {
    /// The writes.
    pub plan: SlicePlan,
    /// What topology hints were given.
    pub topology: TopologyOutcome,
    /// Endpoints added and removed, as the in-tree metrics count them.
    pub added: usize,
    /// See `added`.
    pub removed: usize,
    /// Pods left out because their Node is not known: retry the sync later.
    pub pods_on_missing_nodes: Vec<PodOnMissingNode>,
    /// Whether the plan was made from the changed pods alone.
    pub incremental: bool,
}

/// The endpoints of one Service's pods and what the last sync published of them; plain data,
/// fed by [`SliceIndex::apply_pods`].
#[derive(Debug)]
pub struct SliceIndex {
    service: Service,
    address_types: Vec<IpFamily>,
    /// The hints every endpoint gets: Auto hints depend on every endpoint, and are given at
    /// sync time.
    distribution: Option<TrafficDistribution>,
    port_lists: HashMap<ResolvedPorts, Arc<PortList>, FastHash>,
    /// In the order pods came (a removed pod's place taken by the last): a sync from scratch
    /// reads, and a dropped index frees, the endpoints in the order they were made.
    pods: IndexMap<String, IndexedPod, FastHash>,
    /// Endpoints per address type and port list.
    group_sizes: BTreeMap<IpFamily, BTreeMap<PortsKey, (Arc<PortList>, usize)>>,
    changed: PodChanges,
    published: Option<Published>,
}

impl SliceIndex {
    /// An empty index for the Service, or `None` when the pod controllers do not manage its
    /// slices (no selector, or `ExternalName`).
    pub fn new(service: &Service) -> Option<Self> {
        service::manages_endpoints(service).then(|| SliceIndex {
            service: service.clone(),
            address_types: slice_families(service),
            distribution: match HintsPolicy::of(service) {
                HintsPolicy::TrafficDistribution(distribution) => Some(distribution),
                HintsPolicy::Auto | HintsPolicy::None => None,
            },
            port_lists: HashMap::default(),
            pods: IndexMap::default(),
            group_sizes: BTreeMap::new(),
            changed: PodChanges::Every,
            published: None,
        })
    }

    /// The Service the index was built for; a changed Service needs a new index.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Applies pods as they are now, each by name: `None` (or a pod the Service does not select)
    /// for one that is gone; the last of a name counts. `node` looks a Node up by name, once
    /// per Node and call.
    pub fn apply_pods<'p, F, N>(
        &mut self,
        pods: impl IntoIterator<Item = (&'p str, Option<&'p Arc<PodInfo>>)>,
        node: F,
    ) where
        F: Fn(&str) -> Option<N>,
        N: Borrow<Node>,
    {
        let mut zones: HashMap<String, Option<Option<Arc<str>>>, FastHash> = HashMap::default();
        let pods = pods.into_iter();
        self.pods.reserve(pods.size_hint().0);
        let mut zone_of = |name: &str| {
            if let Some(zone) = zones.get(name) {
                return zone.clone();
            }
            let zone = node(name).map(|n| node_zone(n.borrow()).map(Arc::from));
            zones.insert(name.to_string(), zone.clone());
            zone
        };
        for (name, pod) in pods {
            let pod = pod.filter(|pod| service::selects(&self.service, pod));
            let old = match pod.map(|pod| self.index_pod(pod, &mut zone_of)) {
                Some(indexed) => {
                    self.count(&indexed.contribution, 1);
                    self.pods.insert(name.to_string(), indexed)
                }
                None => self.pods.swap_remove(name),
            };
            if let Some(old) = old {
                self.count(&old.contribution, -1);
            }
            self.changed.record(name);
        }
    }

    fn index_pod(
        &mut self,
        pod: &Arc<PodInfo>,
        zone_of: &mut impl FnMut(&str) -> Option<Option<Arc<str>>>,
    ) -> IndexedPod {
        let contribution = if pods::counts_for_slices(pod) {
            let node_name = pod.node_name.as_deref().unwrap_or_default();
            match zone_of(node_name) {
                Some(zone) => self.endpoints_of(pod, zone),
                None if publishes_not_ready(&self.service) => self.endpoints_of(pod, None),
                None => Contribution::MissingNode(node_name.to_string()),
            }
        } else {
            Contribution::Nothing
        };
        IndexedPod {
            ready_since: pod.ready_since,
            contribution,
        }
    }

    fn endpoints_of(&mut self, pod: &Arc<PodInfo>, zone: Option<Arc<str>>) -> Contribution {
        let service_ports = self
            .service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let resolved = resolved_ports(service_ports, pod);
        let ports = self
            .port_lists
            .entry(resolved)
            .or_insert_with_key(|resolved| {
                let ports = endpoint_ports(service_ports, resolved);
                let key = PortsKey::of(&ports);
                Arc::new(PortList { ports, key })
            })
            .clone();
        let families = self.address_types.iter().copied();
        let families = families.filter(|family| addresses_of_family(pod, *family).next().is_some());
        let ready = publishes_not_ready(&self.service) || (pod.ready && !pod.terminating);
        let hints = distribution_hints(
            self.distribution,
            ready,
            zone.as_deref(),
            pod.node_name.as_deref(),
        );
        Contribution::Endpoints(PodEndpoints {
            pod: pod.clone(),
            ports,
            families: families.collect(),
            conditions: EndpointConditions {
                ready: Some(ready),
                serving: Some(pod.ready),
                terminating: Some(pod.terminating),
            },
            hostname: pods::published_hostname(pod, &self.service).is_some(),
            zone,
            hints,
        })
    }

    fn count(&mut self, contribution: &Contribution, delta: isize) {
        let Contribution::Endpoints(PodEndpoints {
            ports, families, ..
        }) = contribution
        else {
            return;
        };
        for family in families {
            let groups = self.group_sizes.entry(*family).or_default();
            let size = match groups.get_mut(&ports.key) {
                Some((_, size)) => size,
                None => {
                    let group = groups.entry(ports.key.clone());
                    &mut group.or_insert_with(|| (ports.clone(), 0)).1
                }
            };
            *size = size.saturating_add_signed(delta);
            if *size == 0 {
                groups.remove(&ports.key);
                if groups.is_empty() {
                    self.group_sizes.remove(family);
                }
            }
        }
    }

    /// The pods changed since the last successful sync, with their `Ready` transition time
    /// (`None` for a pod gone), for the trigger time; and whether that is every pod (an index
    /// no sync has published yet).
    pub fn changed_pods(&self) -> (Vec<PodTrigger<'_>>, bool) {
        let at = |name: &str| self.pods.get(name).and_then(|p| p.ready_since);
        match self.changed.names() {
            Some(names) => (names.iter().map(|n| (n.as_str(), at(n))).collect(), false),
            None => {
                let every = self.pods.iter().map(|(n, p)| (n.as_str(), p.ready_since));
                (every.collect(), true)
            }
        }
    }

    /// The endpoint groups (address type, endpoint count), ordered like
    /// [`DesiredEndpointSlices::groups`], and the address types.
    pub fn group_sizes(&self) -> (&[IpFamily], impl Iterator<Item = (IpFamily, usize)>) {
        let sizes = self
            .group_sizes
            .iter()
            .flat_map(|(family, groups)| groups.values().map(|(_, size)| (*family, *size)));
        (&self.address_types, sizes)
    }

    fn pods_on_missing_nodes(&self) -> Vec<PodOnMissingNode> {
        let mut missing: Vec<PodOnMissingNode> = self
            .pods
            .iter()
            .filter_map(|(name, pod)| match &pod.contribution {
                Contribution::MissingNode(node) => Some(PodOnMissingNode {
                    pod: name.clone(),
                    node: node.clone(),
                }),
                _ => None,
            })
            .collect();
        missing.sort_by(|a, b| a.pod.cmp(&b.pod));
        missing
    }

    /// The endpoints of the named pods.
    fn endpoints<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Vec<EndpointRef<'_>> {
        let mut found = Vec::new();
        for name in names {
            if let Some(pod) = self.pods.get(name) {
                found.extend(pod.endpoints());
            }
        }
        found
    }

    fn endpoint_count(&self) -> usize {
        self.group_sizes
            .values()
            .flatten()
            .map(|(_, (_, s))| s)
            .sum()
    }

    /// Every pod's endpoints.
    fn all_endpoints(&self) -> Vec<EndpointRef<'_>> {
        let mut found = Vec::with_capacity(self.endpoint_count());
        found.extend(self.pods.values().flat_map(IndexedPod::endpoints));
        found
    }

    /// The desired slice contents, written out in full.
    pub fn desired(&self) -> DesiredEndpointSlices {
        let mut groups: BTreeMap<(IpFamily, &PortsKey), EndpointGroup> = BTreeMap::new();
        for (family, key, endpoint) in self.all_endpoints() {
            let (ports, _) = &self.group_sizes[&family][key];
            groups
                .entry((family, key))
                .or_insert_with(|| EndpointGroup {
                    address_type: family,
                    ports: ports.ports.clone(),
                    endpoints: Vec::new(),
                })
                .endpoints
                .push(endpoint.to_endpoint());
        }
        let mut groups: Vec<EndpointGroup> = groups.into_values().collect();
        for group in &mut groups {
            sort_by_key(&mut group.endpoints);
        }
        DesiredEndpointSlices {
            address_types: self.address_types.clone(),
            groups,
            pods_on_missing_nodes: self.pods_on_missing_nodes(),
        }
    }

    /// Plans the sync: the writes that bring `existing` (the Service's slices, as
    /// [`plan_endpoint_slices`](crate::plan_endpoint_slices) takes them) to the desired state,
    /// with topology hints per the Service and `capacity`. Record the outcome with
    /// [`SliceIndex::synced`] or [`SliceIndex::failed`].
    pub fn plan<S: Borrow<EndpointSlice>>(
        &self,
        existing: &[S],
        capacity: &ZoneCapacity,
        params: &SliceParams<'_>,
    ) -> SliceSync {
        let live: Vec<&EndpointSlice> = existing
            .iter()
            .map(Borrow::borrow)
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect();
        let pods_on_missing_nodes = self.pods_on_missing_nodes();
        if HintsPolicy::of(&self.service) == HintsPolicy::Auto {
            let mut desired = self.desired();
            let (plan, topology) =
                plan_with_topology(&self.service, capacity, &mut desired, existing, params);
            let after = desired.groups.iter().flat_map(|g| {
                let family = g.address_type;
                g.endpoints
                    .iter()
                    .map(move |e| endpoint_id(family.as_str(), e))
            });
            let (added, removed) = endpoint_changes(&live, after, |_| true);
            return SliceSync {
                plan,
                topology,
                added,
                removed,
                pods_on_missing_nodes,
                incremental: false,
            };
        }

        let published = self.published.as_ref().filter(|p| p.matches(&live));
        let published = published.filter(|_| self.changed.names().is_some());
        let incremental = published.is_some();
        let mut groups: BTreeMap<(IpFamily, &PortsKey), GroupTarget<'_, PodEndpoint<'_>>> = self
            .group_sizes
            .iter()
            .flat_map(|(family, groups)| groups.iter().map(move |group| (*family, group)))
            .map(|(family, (key, (ports, _)))| {
                let target = GroupTarget {
                    address_type: family,
                    ports: &ports.ports,
                    ports_key: key.clone(),
                    pending: HashMap::default(),
                };
                ((family, key), target)
            })
            .collect();
        let changed = self.changed.names().filter(|_| incremental);
        let pending = match changed {
            Some(names) => self.endpoints(names.iter().map(String::as_str)),
            None => self.all_endpoints(),
        };
        for group in groups.values_mut() {
            let size = self.group_sizes[&group.address_type][&group.ports_key].1;
            group.pending.reserve(size.min(pending.len()));
        }
        for (family, key, endpoint) in &pending {
            if let Some(group) = groups.get_mut(&(*family, *key)) {
                group.pending.insert(endpoint.key(), *endpoint);
            }
        }
        let touched: HashSet<&str> = published
            .zip(changed)
            .map(|(published, changed)| {
                changed
                    .iter()
                    .flat_map(|pod| {
                        self.address_types
                            .iter()
                            .filter_map(|family| published.placement.get(&(*family, pod.clone())))
                    })
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let settled = |family: IpFamily, key: &PortsKey, endpoint: &Endpoint| {
            let name = pod_name(endpoint);
            if !incremental || self.changed.contains(name) {
                return None;
            }
            let mut endpoints = self
                .pods
                .get(name)
                .into_iter()
                .flat_map(IndexedPod::endpoints);
            endpoints
                .find(|(f, k, e)| *f == family && *k == key && e.key() == EndpointKey::of(endpoint))
                .map(|(_, _, e)| e)
        };
        // An empty slice (a placeholder) is never left as it is: the reconciler deletes or reuses it.
        let clean = |slice: &EndpointSlice| {
            incremental
                && !touched.contains(uid(slice))
                && slice.endpoints.as_ref().is_some_and(|e| !e.is_empty())
        };
        let targets = Targets {
            address_types: &self.address_types,
            groups: groups.into_values().collect(),
            settled: &settled,
            clean: &clean,
            auto_hints: None,
        };
        let plan = plan_slices(&self.service, existing, targets, params);

        // Only the changed pods' endpoints differ between the slices and the desired state.
        let after = pending.iter().map(|(_, _, e)| pod_endpoint_id(*e));
        let (added, removed) = if incremental {
            let before: Vec<&EndpointSlice> = live
                .iter()
                .copied()
                .filter(|s| touched.contains(uid(s)))
                .collect();
            endpoint_changes(&before, after, |e| self.changed.contains(pod_name(e)))
        } else {
            endpoint_changes(&live, after, |_| true)
        };
        SliceSync {
            plan,
            topology: TopologyOutcome::NotAuto(self.address_types.clone()),
            added,
            removed,
            pods_on_missing_nodes,
            incremental,
        }
    }

    /// Records that `sync` (planned against `existing`) was written: `written` are the created
    /// and updated slices as the apiserver returned them. The next sync plans from what changes
    /// from now on.
    pub fn synced<S: Borrow<EndpointSlice>>(
        &mut self,
        existing: &[S],
        sync: &SliceSync,
        written: &[EndpointSlice],
    ) {
        let changed = self.changed.take();
        let auto = matches!(sync.topology, TopologyOutcome::Auto(_));
        if auto || is_being_deleted(&self.service) {
            self.published = None;
            return;
        }
        // The slices the changed pods were in are read again, unless rewritten.
        let mut reread: HashSet<String> = HashSet::new();
        let mut published = match self.published.take() {
            Some(mut published) if sync.incremental => {
                for pod in changed.names().into_iter().flatten() {
                    for family in &self.address_types {
                        reread.extend(published.placement.remove(&(*family, pod.clone())));
                    }
                }
                published
            }
            _ => Published::default(),
        };
        let plan = &sync.plan;
        for slice in &plan.delete {
            published.versions.remove(uid(slice));
        }
        let rewritten: HashSet<&str> = plan.update.iter().chain(&plan.delete).map(uid).collect();
        for slice in existing.iter().map(Borrow::borrow) {
            let kept = slice.metadata.deletion_timestamp.is_none()
                && !rewritten.contains(uid(slice))
                && (reread.contains(uid(slice)) || !published.versions.contains_key(uid(slice)));
            if kept {
                published.add(slice);
            }
        }
        for slice in written {
            published.add(slice);
        }
        // Every desired endpoint must be placed exactly once for the next sync to build on this.
        self.published = (published.placement.len() == self.endpoint_count()).then_some(published);
    }

    /// Records that the sync failed: what it wrote is unknown, so the next one plans from
    /// scratch (the pods changed stay changed, for the trigger time).
    pub fn failed(&mut self) {
        self.published = None;
    }
}

/// An endpoint of the index: address type, port list, endpoint.
type EndpointRef<'a> = (IpFamily, &'a PortsKey, PodEndpoint<'a>);

/// An endpoint as the added/removed metrics count it: address type, addresses and pod.
type EndpointId<'a> = (&'a str, SmallVec<[&'a str; 1]>, Option<&'a str>);

fn endpoint_id<'a>(address_type: &'a str, endpoint: &'a Endpoint) -> EndpointId<'a> {
    let uid = endpoint.target_ref.as_ref().and_then(|r| r.uid.as_deref());
    let addresses = endpoint.addresses.iter().map(String::as_str).collect();
    (address_type, addresses, uid)
}

fn pod_endpoint_id(endpoint: PodEndpoint<'_>) -> EndpointId<'_> {
    let uid = endpoint.pod.uid.as_deref();
    (
        endpoint.family.as_str(),
        endpoint.addresses().collect(),
        uid,
    )
}

/// Endpoints added and removed between the endpoints of `before` (those `counted`) and `after`,
/// as sets of [`EndpointId`]s: one set of `after`'s, each marked when `before` has it too; what
/// `before` has beyond it is gathered apart (usually nothing).
fn endpoint_changes<'a>(
    before: &[&'a EndpointSlice],
    after: impl Iterator<Item = EndpointId<'a>>,
    counted: impl Fn(&Endpoint) -> bool,
) -> (usize, usize) {
    let mut after_ids: HashMap<EndpointId<'a>, bool, FastHash> =
        HashMap::with_capacity_and_hasher(after.size_hint().0, FastHash::default());
    for id in after {
        after_ids.insert(id, false);
    }
    let mut gone: HashSet<EndpointId<'a>, FastHash> = HashSet::default();
    for slice in before {
        let address_type = slice.address_type.as_str();
        for endpoint in slice.endpoints.iter().flatten().filter(|e| counted(e)) {
            let id = endpoint_id(address_type, endpoint);
            match after_ids.get_mut(&id) {
                Some(seen) => *seen = true,
                None => {
                    gone.insert(id);
                }
            }
        }
    }
    let added = after_ids.values().filter(|seen| !**seen).count();
    (added, gone.len())
}

#[cfg(test)]
mod tests;
