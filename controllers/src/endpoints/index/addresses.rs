//! The keys and lists the Endpoints index is made of: pods compared by name, addresses in
//! the order Endpoints lists them, each Service port's ready and not-ready addresses, and what
//! the last sync published.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pods::{PodInfo, ResolvedPorts};

/// A Service port as resolved on a pod: (index among the Service's ports, target port); `None`
/// stands for "no ports" (a headless Service without ports).
pub(super) type PortId = Option<(usize, i32)>;

/// A pod, compared by name: the index's keys share the cached pods rather than copy their
/// strings.
#[derive(Debug, Clone)]
pub(super) struct PodName(pub(super) Arc<PodInfo>);

impl PodName {
    pub(super) fn as_str(&self) -> &str {
        &self.0.name
    }
}

impl PartialEq for PodName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for PodName {}

impl PartialOrd for PodName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PodName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for PodName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for PodName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Addresses are de-duplicated by IP and pod UID: the address of a pod (its IP at `ip`),
/// compared by IP text, then UID. The text's first 24 bytes are kept in the key, as three
/// big-endian words (which order as the bytes do, and compare without a call to `memcmp`):
/// keys compare without reaching into the pod (three dependent loads, cache misses when
/// building an index) unless their starts are equal, which for IPv4 means the same address.
#[derive(Debug, Clone)]
pub(super) struct AddressKey {
    pub(super) start: [u64; 3],
    pub(super) pod: Arc<PodInfo>,
    pub(super) ip: usize,
}

impl AddressKey {
    pub(super) fn new(pod: Arc<PodInfo>, ip: usize) -> Self {
        let text = pod.ips[ip].text.as_bytes();
        let mut bytes = [0; 24];
        let len = text.len().min(bytes.len());
        // Zero-padded: a text that is a prefix of another sorts first, as it should.
        bytes[..len].copy_from_slice(&text[..len]);
        let word =
            |i: usize| u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("eight bytes"));
        AddressKey {
            start: [word(0), word(1), word(2)],
            pod,
            ip,
        }
    }

    pub(super) fn parts(&self) -> (&str, &str) {
        let uid = self.pod.uid.as_deref().unwrap_or_default();
        (&self.pod.ips[self.ip].text, uid)
    }
}

impl PartialEq for AddressKey {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start && self.parts() == other.parts()
    }
}

impl Eq for AddressKey {}

impl PartialOrd for AddressKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AddressKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let start = self.start.cmp(&other.start);
        start.then_with(|| self.parts().cmp(&other.parts()))
    }
}

/// The pods behind one address, by name, each with whether it is ready (the first apart: an
/// address almost always has one pod). The address is listed ready only if every one is; the
/// pod shown is the first not-ready one, else the first.
#[derive(Debug, Clone)]
pub(super) struct Members {
    pub(super) first: (PodName, bool),
    pub(super) rest: Vec<(PodName, bool)>,
}

impl Members {
    pub(super) fn iter(&self) -> impl Iterator<Item = &(PodName, bool)> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    pub(super) fn ready(&self) -> bool {
        self.iter().all(|(_, ready)| *ready)
    }

    pub(super) fn listed(&self) -> &PodName {
        let shown = self.iter().find(|(_, ready)| !ready);
        &shown.unwrap_or(&self.first).0
    }

    /// From pods sorted by name.
    pub(super) fn of(mut pods: Vec<(PodName, bool)>) -> Option<Self> {
        if pods.is_empty() {
            return None;
        }
        let first = pods.remove(0);
        Some(Members { first, rest: pods })
    }

    pub(super) fn into_vec(self) -> Vec<(PodName, bool)> {
        let mut pods = vec![self.first];
        pods.extend(self.rest);
        pods
    }
}

/// The addresses listed for one port, ready and not-ready apart, in address order.
#[derive(Debug, Clone, Default)]
pub(super) struct PortAddresses {
    pub(super) ready: BTreeMap<AddressKey, Members>,
    pub(super) not_ready: BTreeMap<AddressKey, Members>,
}

impl PortAddresses {
    /// Addresses sorted by (address, pod), built in one go.
    pub(super) fn from_sorted(listings: Vec<(AddressKey, PodName, bool)>) -> Self {
        let mut grouped: Vec<(AddressKey, Members)> = Vec::new();
        for (key, pod, ready) in listings {
            match grouped.last_mut() {
                Some((last, members)) if *last == key => members.rest.push((pod, ready)),
                _ => grouped.push((
                    key,
                    Members {
                        first: (pod, ready),
                        rest: Vec::new(),
                    },
                )),
            }
        }
        let mut addresses = PortAddresses::default();
        let (ready, not_ready): (Vec<_>, Vec<_>) = grouped
            .into_iter()
            .partition(|(_, members)| members.ready());
        addresses.ready = ready.into_iter().collect();
        addresses.not_ready = not_ready.into_iter().collect();
        addresses
    }

    pub(super) fn take(&mut self, key: &AddressKey) -> Vec<(PodName, bool)> {
        let members = self
            .ready
            .remove(key)
            .or_else(|| self.not_ready.remove(key));
        members.map(Members::into_vec).unwrap_or_default()
    }

    pub(super) fn put(&mut self, key: AddressKey, pods: Vec<(PodName, bool)>) {
        let Some(members) = Members::of(pods) else {
            return;
        };
        if members.ready() {
            self.ready.insert(key, members);
        } else {
            self.not_ready.insert(key, members);
        }
    }

    pub(super) fn add(&mut self, key: &AddressKey, pod: &PodName, ready: bool) {
        let mut pods = self.take(key);
        let at = pods.partition_point(|(p, _)| p < pod);
        pods.insert(at, (pod.clone(), ready));
        self.put(key.clone(), pods);
    }

    pub(super) fn remove(&mut self, key: &AddressKey, pod: &str) {
        let mut pods = self.take(key);
        pods.retain(|(p, _)| p.as_str() != pod);
        self.put(key.clone(), pods);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.not_ready.is_empty()
    }

    /// The listing as (address, ready, pod), in address order: what subsets are grouped and
    /// ordered by.
    pub(super) fn listing(&self) -> impl Iterator<Item = (&AddressKey, bool, &str)> {
        let mut ready = self.ready.iter().peekable();
        let mut not_ready = self.not_ready.iter().peekable();
        std::iter::from_fn(move || {
            let take_ready = match (ready.peek(), not_ready.peek()) {
                (Some((r, _)), Some((n, _))) => r < n,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let (key, members, is_ready) = if take_ready {
                let (key, members) = ready.next()?;
                (key, members, true)
            } else {
                let (key, members) = not_ready.next()?;
                (key, members, false)
            };
            Some((key, is_ready, members.listed().as_str()))
        })
    }

    pub(super) fn same_addresses(&self, other: &Self) -> bool {
        let shown = |map: &BTreeMap<AddressKey, Members>, other: &BTreeMap<AddressKey, Members>| {
            map.len() == other.len()
                && map
                    .iter()
                    .zip(other)
                    .all(|((k, m), (ok, om))| k == ok && m.listed() == om.listed())
        };
        shown(&self.ready, &other.ready) && shown(&self.not_ready, &other.not_ready)
    }
}

/// What a selected pod lists: its address and the ports it serves.
#[derive(Debug, Clone)]
pub(super) struct Listing {
    pub(super) key: AddressKey,
    pub(super) ready: bool,
    pub(super) resolved: ResolvedPorts,
    /// Listed under "no port" (a headless Service without ports).
    pub(super) portless: bool,
}

impl Listing {
    pub(super) fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        let portless = self.portless.then_some(None);
        self.resolved.iter().map(|port| Some(*port)).chain(portless)
    }
}

/// One subset as kept after the cut to capacity: its ports and its addresses by pod.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KeptSubset<'a> {
    pub(super) ports: Vec<PortId>,
    pub(super) ready: Vec<(&'a AddressKey, &'a PodName)>,
    pub(super) not_ready: Vec<(&'a AddressKey, &'a PodName)>,
}

/// The first `count` addresses of a listing, with their pods.
pub(super) fn first(
    addresses: &BTreeMap<AddressKey, Members>,
    count: usize,
) -> Vec<(&AddressKey, &PodName)> {
    let first = addresses.iter().take(count);
    first
        .map(|(key, members)| (key, members.listed()))
        .collect()
}

/// What the last successful sync left in place.
#[derive(Debug, Clone)]
pub(super) struct Published {
    pub(super) resource_version: String,
    pub(super) truncated: bool,
    pub(super) subsets: Vec<PublishedSubset>,
}

/// A subset as published: its ports and its addresses by pod.
#[derive(Debug, Clone)]
pub(super) struct PublishedSubset {
    pub(super) ports: Vec<PortId>,
    pub(super) ready: Vec<(AddressKey, PodName)>,
    pub(super) not_ready: Vec<(AddressKey, PodName)>,
}

impl Published {
    pub(super) fn holds(&self, subsets: &[KeptSubset<'_>]) -> bool {
        let same = |kept: &[(&AddressKey, &PodName)], published: &[(AddressKey, PodName)]| {
            kept.len() == published.len()
                && kept
                    .iter()
                    .zip(published)
                    .all(|((key, pod), (k, p))| *key == k && *pod == p)
        };
        self.subsets.len() == subsets.len()
            && subsets.iter().zip(&self.subsets).all(|(kept, published)| {
                kept.ports == published.ports
                    && same(&kept.ready, &published.ready)
                    && same(&kept.not_ready, &published.not_ready)
            })
    }
}
