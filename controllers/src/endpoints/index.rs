//! A Service's Endpoints addresses, kept between syncs and fed pod by pod, so that a sync after
//! one pod changed costs what that pod changed (and at most the 1,000 addresses an Endpoints
//! object holds), not what the Service selects.
//!
//! Per Service port (as resolved on each pod) the index keeps its addresses in order, ready and
//! not ready apart, so that subsets and their cut to capacity are read from it without walking
//! every pod. It remembers what the last successful sync left in place (the resourceVersion and
//! which addresses of which pods it held): when the cached object is still that version and the
//! same addresses of unchanged pods are wanted, nothing is written and nothing written out.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service,
};

use super::{EndpointsParams, EndpointsWrite, PortKey, endpoints_object, plan_endpoints_write};
use crate::fast_hash::FastHash;
use crate::pod_changes::PodChanges;
use crate::pods::{self, PodInfo, resolved_ports};
use crate::service::{
    self, IpFamily, is_headless, pod_endpoints_family, publishes_not_ready,
    service_endpoints_family,
};
use crate::trigger_time::PodTrigger;
use crate::well_known::MAX_ENDPOINTS_ADDRESSES;

mod addresses;
use addresses::{
    AddressKey, KeptSubset, Listing, PodName, PortAddresses, PortId, Published, PublishedSubset,
    first,
};

/// One sync's write, from [`EndpointsIndex::plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointsSync {
    /// The write, if any.
    pub write: Option<EndpointsWrite>,
    /// Whether the object the last sync left holds what is wanted, known without writing it out.
    pub unchanged: bool,
}

/// The addresses of one Service's pods and what the last sync published of them; plain data,
/// fed by [`EndpointsIndex::apply_pods`].
#[derive(Debug)]
pub struct EndpointsIndex {
    service: Service,
    /// The address family, when the Service alone tells.
    family: Option<IpFamily>,
    /// Every selected pod, with what it lists.
    pods: HashMap<PodName, Option<Listing>, FastHash>,
    ports: BTreeMap<PortId, PortAddresses>,
    changed: PodChanges,
    published: Option<Published>,
}

impl EndpointsIndex {
    /// An empty index for the Service, or `None` when the pod controllers do not manage its
    /// Endpoints (no selector, or `ExternalName`).
    pub fn new(service: &Service) -> Option<Self> {
        service::manages_endpoints(service).then(|| EndpointsIndex {
            service: service.clone(),
            family: service_endpoints_family(service),
            pods: HashMap::default(),
            ports: BTreeMap::new(),
            changed: PodChanges::Every,
            published: None,
        })
    }

    /// The Service the index was built for; a changed Service needs a new index.
    pub fn service(&self) -> &Service {
        &self.service
    }

    fn service_ports(&self) -> &[k8s_openapi::api::core::v1::ServicePort] {
        self.service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
    }

    /// Applies pods as they are now, each by name: `None` (or a pod the Service does not select)
    /// for one that is gone.
    pub fn apply_pods<'p>(
        &mut self,
        pods: impl IntoIterator<Item = (&'p str, Option<&'p Arc<PodInfo>>)>,
    ) {
        if self.pods.is_empty() {
            return self.build(pods);
        }
        for (name, pod) in pods {
            if let Some(listing) = self.pods.remove(name).flatten() {
                for port in listing.ports() {
                    if let Some(addresses) = self.ports.get_mut(&port) {
                        addresses.remove(&listing.key, name);
                        if addresses.is_empty() {
                            self.ports.remove(&port);
                        }
                    }
                }
            }
            if let Some(pod) = pod.filter(|pod| service::selects(&self.service, pod)) {
                let pod = PodName(pod.clone());
                let listing = self.listing(&pod);
                if let Some(listing) = &listing {
                    for port in listing.ports() {
                        let addresses = self.ports.entry(port).or_default();
                        addresses.add(&listing.key, &pod, listing.ready);
                    }
                }
                self.pods.insert(pod, listing);
            }
            self.changed.record(name);
        }
    }

    /// [`EndpointsIndex::apply_pods`] on an empty index: built in one go from sorted entries
    /// rather than inserted one by one.
    fn build<'p>(&mut self, pods: impl IntoIterator<Item = (&'p str, Option<&'p Arc<PodInfo>>)>) {
        let pods = pods.into_iter();
        self.pods.reserve(pods.size_hint().0);
        for (name, pod) in pods {
            self.changed.record(name);
            let Some(pod) = pod.filter(|pod| service::selects(&self.service, pod)) else {
                self.pods.remove(name);
                continue;
            };
            let pod = PodName(pod.clone());
            let listing = self.listing(&pod);
            match self.pods.entry(pod.clone()) {
                Entry::Vacant(vacant) => {
                    vacant.insert(listing);
                }
                // The key is an earlier version of the pod: replaced too.
                Entry::Occupied(occupied) => {
                    occupied.remove();
                    self.pods.insert(pod, listing);
                }
            }
        }
        let mut by_port: BTreeMap<PortId, Vec<(&PodName, &Listing)>> = BTreeMap::new();
        for (pod, listing) in &self.pods {
            if let Some(listing) = listing {
                for port in listing.ports() {
                    by_port.entry(port).or_default().push((pod, listing));
                }
            }
        }
        let ports: BTreeMap<PortId, PortAddresses> = by_port
            .into_iter()
            .map(|(port, mut listings)| {
                listings.sort_unstable_by(|a, b| (&a.1.key, a.0).cmp(&(&b.1.key, b.0)));
                let listings = listings
                    .into_iter()
                    .map(|(pod, listing)| (listing.key.clone(), pod.clone(), listing.ready))
                    .collect();
                (port, PortAddresses::from_sorted(listings))
            })
            .collect();
        self.ports = ports;
    }

    fn listing(&self, pod: &PodName) -> Option<Listing> {
        let info = &pod.0;
        let publish_not_ready = publishes_not_ready(&self.service);
        if !pods::counts_for_endpoints(info, publish_not_ready) {
            return None;
        }
        let family = pod_endpoints_family(self.family, info);
        let ip = info.ips.iter().position(|ip| ip.family() == family)?;
        let service_ports = self.service_ports();
        // A headless Service without ports lists its pods under "no port".
        let portless = service_ports.is_empty() && is_headless(&self.service);
        let resolved = resolved_ports(service_ports, info);
        (portless || !resolved.is_empty()).then(|| Listing {
            key: AddressKey::new(info.clone(), ip),
            ready: publish_not_ready || info.ready,
            resolved,
            portless,
        })
    }

    /// The pods changed since the last successful sync, with their `Ready` transition time
    /// (`None` for a pod gone), for the trigger time; and whether that is every pod (an index
    /// no sync has published yet).
    pub fn changed_pods(&self) -> (Vec<PodTrigger<'_>>, bool) {
        let at = |name: &str| {
            let (pod, _) = self.pods.get_key_value(name)?;
            pod.0.ready_since
        };
        match self.changed.names() {
            Some(names) => (names.iter().map(|n| (n.as_str(), at(n))).collect(), false),
            None => {
                let every = self.pods.keys().map(|p| (p.as_str(), p.0.ready_since));
                (every.collect(), true)
            }
        }
    }

    fn port_key(&self, port: PortId) -> Option<PortKey> {
        port.map(|(i, target)| {
            let port = &self.service_ports()[i];
            PortKey {
                name: port.name.clone().unwrap_or_default(),
                port: target,
                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: port.app_protocol.clone(),
            }
        })
    }

    /// The subsets, each cut to its share of the capacity, and whether anything was cut.
    ///
    /// Ports listing exactly the same addresses share a subset; subsets are ordered by their
    /// listing, ports within one by [`PortKey`]. Over [`MAX_ENDPOINTS_ADDRESSES`] addresses,
    /// ready ones are kept first, each subset keeping a share proportional to its size (rounded
    /// up, the last ones getting what is left).
    fn kept_subsets(&self) -> (Vec<KeptSubset<'_>>, bool) {
        let mut ports: Vec<(Option<PortKey>, PortId, &PortAddresses)> = self
            .ports
            .iter()
            .map(|(id, addresses)| (self.port_key(*id), *id, addresses))
            .collect();
        ports.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<(Vec<PortId>, &PortAddresses)> = Vec::new();
        for (_, id, addresses) in ports {
            match groups.iter_mut().find(|(_, a)| a.same_addresses(addresses)) {
                Some((ids, _)) => ids.push(id),
                None => groups.push((vec![id], addresses)),
            }
        }
        groups.sort_by(|(_, a), (_, b)| a.listing().cmp(b.listing()));

        let ready: usize = groups.iter().map(|(_, a)| a.ready.len()).sum();
        let not_ready: usize = groups.iter().map(|(_, a)| a.not_ready.len()).sum();
        let truncated = ready + not_ready > MAX_ENDPOINTS_ADDRESSES;
        let cut_ready = ready > MAX_ENDPOINTS_ADDRESSES;
        let (budget, total) = if cut_ready {
            (MAX_ENDPOINTS_ADDRESSES, ready)
        } else {
            (MAX_ENDPOINTS_ADDRESSES.saturating_sub(ready), not_ready)
        };
        let mut left = budget;
        let mut share = |len: usize| {
            let share = (len * budget).div_ceil(total.max(1)).min(left);
            left -= share;
            share
        };
        let mut kept = Vec::new();
        for (ports, addresses) in groups {
            let (ready_count, not_ready_count) = match (truncated, cut_ready) {
                (false, _) => (addresses.ready.len(), addresses.not_ready.len()),
                (true, true) => (share(addresses.ready.len()), 0),
                (true, false) => (addresses.ready.len(), share(addresses.not_ready.len())),
            };
            // The API rejects a subset without any address.
            if ready_count + not_ready_count > 0 {
                kept.push(KeptSubset {
                    ports,
                    ready: first(&addresses.ready, ready_count),
                    not_ready: first(&addresses.not_ready, not_ready_count),
                });
            }
        }
        (kept, truncated)
    }

    fn subsets(&self, kept: &[KeptSubset<'_>]) -> Vec<EndpointSubset> {
        let address =
            |(_, pod): &(&AddressKey, &PodName)| super::pod_address(&self.service, &pod.0);
        let listed = |members: &[(&AddressKey, &PodName)]| {
            let list: Vec<EndpointAddress> = members.iter().filter_map(address).collect();
            (!list.is_empty()).then_some(list)
        };
        kept.iter()
            .map(|subset| {
                let ports: Vec<EndpointPort> = subset
                    .ports
                    .iter()
                    .filter_map(|id| self.port_key(*id))
                    .map(|key| key.to_api())
                    .collect();
                EndpointSubset {
                    addresses: listed(&subset.ready),
                    not_ready_addresses: listed(&subset.not_ready),
                    ports: (!ports.is_empty()).then_some(ports),
                }
            })
            .collect()
    }

    /// The Endpoints object the Service should have, written out in full.
    pub fn desired(&self, params: &EndpointsParams<'_>) -> Endpoints {
        let (kept, truncated) = self.kept_subsets();
        endpoints_object(&self.service, self.subsets(&kept), truncated, params)
    }

    /// The write that brings `cached` (the object in the cluster, if any) to the desired state,
    /// as [`plan_endpoints_write`] finds it, without writing the object out when the cached one
    /// is what the last successful sync left and the addresses it should hold did not change.
    /// Record the outcome with [`EndpointsIndex::synced`] or [`EndpointsIndex::failed`].
    pub fn plan(&self, cached: Option<&Endpoints>, params: &EndpointsParams<'_>) -> EndpointsSync {
        let (kept, truncated) = self.kept_subsets();
        let unchanged = self.published.as_ref().is_some_and(|published| {
            cached.and_then(|c| c.metadata.resource_version.as_ref())
                == Some(&published.resource_version)
                && published.truncated == truncated
                && published.holds(&kept)
                && !self.shows_changed_pods(&kept)
        });
        if unchanged {
            return EndpointsSync {
                write: None,
                unchanged,
            };
        }
        let desired = endpoints_object(&self.service, self.subsets(&kept), truncated, params);
        EndpointsSync {
            write: plan_endpoints_write(cached, &desired),
            unchanged,
        }
    }

    /// Whether a pod changed since the last sync has an address among those kept: what it
    /// publishes (node, hostname) may have changed.
    fn shows_changed_pods(&self, kept: &[KeptSubset<'_>]) -> bool {
        let Some(changed) = self.changed.names() else {
            return true;
        };
        changed.iter().any(|name| {
            let Some(Some(listing)) = self.pods.get(name.as_str()) else {
                return false;
            };
            kept.iter()
                .flat_map(|s| [&s.ready, &s.not_ready])
                .any(|members| {
                    members
                        .binary_search_by(|(key, _)| (*key).cmp(&listing.key))
                        .is_ok_and(|i| members[i].1.as_str() == name)
                })
        })
    }

    /// Records that `sync` succeeded, leaving the object at `resource_version` (the written
    /// one, or the cached one when nothing was written).
    pub fn synced(&mut self, sync: &EndpointsSync, resource_version: Option<&str>) {
        self.changed.take();
        if sync.unchanged {
            return;
        }
        let (kept, truncated) = self.kept_subsets();
        let owned = |members: &[(&AddressKey, &PodName)]| -> Vec<(AddressKey, PodName)> {
            members
                .iter()
                .map(|(key, pod)| ((*key).clone(), (*pod).clone()))
                .collect()
        };
        let published = resource_version.map(|version| Published {
            resource_version: version.to_string(),
            truncated,
            subsets: kept
                .iter()
                .map(|s| PublishedSubset {
                    ports: s.ports.clone(),
                    ready: owned(&s.ready),
                    not_ready: owned(&s.not_ready),
                })
                .collect(),
        });
        self.published = published;
    }

    /// Records that the sync failed: the next one compares the whole object again (the pods
    /// changed stay changed, for the trigger time).
    pub fn failed(&mut self) {
        self.published = None;
    }
}

#[cfg(test)]
mod tests;
