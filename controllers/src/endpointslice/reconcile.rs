//! The slice reconciler: from the slices that exist and the endpoints that should, the fewest
//! creates, updates and deletes.
//!
//! The rules are the in-tree reconciler's. Endpoints stay in the slice they are in; a slice
//! whose endpoints changed is updated in place; new endpoints first fill slices that are being
//! updated anyway (fullest first); a remainder smaller than a slice goes into the unchanged
//! slice it leaves closest to full; only the rest is created, and a create takes over a slice
//! that would be deleted rather than adding one. Slices are never rebalanced for their own
//! sake.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::desired::{DesiredEndpointSlices, new_slice, owned_by, slice_labels};
use super::identity::{
    DesiredEndpoint, EndpointKey, PortsKey, same_endpoint, same_endpoint_beyond_hints,
};
use crate::error::{Error, Result};
use crate::fast_hash::FastHash;
use crate::service::{IpFamily, is_being_deleted};
use crate::well_known::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, LABEL_SLICE_MANAGED_BY, format_trigger_time,
};

/// `--max-endpoints-per-slice`: how many endpoints a slice holds at most (1 to 1000, default
/// 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MaxEndpointsPerSlice(u16);

impl MaxEndpointsPerSlice {
    /// The in-tree default, 100.
    pub const DEFAULT: Self = MaxEndpointsPerSlice(100);

    /// Checks the range 1..=1000.
    pub fn new(value: i64) -> Result<Self> {
        match u16::try_from(value) {
            Ok(v) if (1..=1000).contains(&v) => Ok(MaxEndpointsPerSlice(v)),
            _ => Err(Error::MaxEndpointsPerSliceOutOfRange(value)),
        }
    }

    /// The limit as a count.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for MaxEndpointsPerSlice {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for MaxEndpointsPerSlice {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let value = text
            .trim()
            .parse::<i64>()
            .map_err(|_| Error::MaxEndpointsPerSliceNotANumber(text.to_string()))?;
        Self::new(value)
    }
}

impl fmt::Display for MaxEndpointsPerSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Inputs of [`plan_endpoint_slices`] that do not come from the cluster objects.
#[derive(Debug, Clone, Copy)]
pub struct SliceParams<'a> {
    /// This controller's `endpointslice.kubernetes.io/managed-by` value.
    pub managed_by: &'a str,
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: MaxEndpointsPerSlice,
    /// The earliest change not yet reflected in a write, tracked by the caller; written on every
    /// created or updated slice (`None` removes it from them).
    pub trigger_time: Option<&'a Time>,
}

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlicePlan {
    /// New slices, with `generateName` and no name.
    pub create: Vec<EndpointSlice>,
    /// Existing slices with their new content; name, uid and resourceVersion are kept so the
    /// update is conditional on the cached version.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete, as they were found.
    pub delete: Vec<EndpointSlice>,
}

impl SlicePlan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    /// The number of API writes the plan takes.
    pub fn writes(&self) -> usize {
        self.create.len() + self.update.len() + self.delete.len()
    }
}

/// The slices not being deleted, by name: the order both reconcilers plan in.
pub(crate) fn live_by_name<S: Borrow<EndpointSlice>>(existing: &[S]) -> Vec<&EndpointSlice> {
    let mut live: Vec<&EndpointSlice> = existing
        .iter()
        .map(Borrow::borrow)
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    live
}

fn endpoints_of(slice: &EndpointSlice) -> &[Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

fn labels_without_manager(labels: Option<&BTreeMap<String, String>>) -> BTreeMap<&str, &str> {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LABEL_SLICE_MANAGED_BY)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Whether the slice's labels are what they should be. The manager label is not compared: a
/// slice adopted from the in-tree controller is relabelled when it is written anyway, not
/// rewritten for the label alone.
fn labels_current(slice: &EndpointSlice, desired: &BTreeMap<String, String>) -> bool {
    labels_without_manager(slice.metadata.labels.as_ref()) == labels_without_manager(Some(desired))
}

/// Whether an existing slice can stand as the placeholder: empty, no ports, right labels and
/// owner.
fn is_placeholder_like(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    endpoints_of(slice).is_empty()
        && slice.ports.as_deref().unwrap_or_default().is_empty()
        && slice.address_type == placeholder.address_type
        && slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.owner_references == placeholder.metadata.owner_references
        && labels_current(
            slice,
            placeholder
                .metadata
                .labels
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        )
}

/// Slices of one address type and port list, being reconciled.
struct GroupPlan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

fn fill<'a, W: DesiredEndpoint<'a>>(
    slice: &mut EndpointSlice,
    pending: &mut BTreeMap<EndpointKey<'_>, W>,
    max: usize,
) {
    let endpoints = slice.endpoints.get_or_insert_with(Vec::new);
    while endpoints.len() < max {
        let Some((_, endpoint)) = pending.pop_first() else {
            break;
        };
        endpoints.push(endpoint.to_endpoint());
    }
}

/// What the reconciler is told about one group's desired endpoints. `pending` are the
/// endpoints it has to place: every desired endpoint, or after a sync only those of pods
/// changed since. `settled` recognises, in an existing slice, a desired endpoint that is
/// not pending (placed by an earlier sync and unchanged since).
pub(crate) struct GroupTarget<'a, W> {
    pub address_type: IpFamily,
    pub ports: &'a [EndpointPort],
    pub ports_key: PortsKey,
    pub pending: HashMap<EndpointKey<'a>, W, FastHash>,
}

/// A Service's desired slices as the reconciler takes them: the groups to place, and what an
/// earlier sync established (see [`GroupTarget`]).
pub(crate) struct Targets<'a, W> {
    pub address_types: &'a [IpFamily],
    pub groups: Vec<GroupTarget<'a, W>>,
    /// The desired endpoint an existing one of the group (address type, ports) stands for, when
    /// it is not pending.
    pub settled: &'a dyn Fn(IpFamily, &PortsKey, &Endpoint) -> Option<W>,
    /// Whether an existing slice is known to hold exactly desired, non-pending endpoints with the
    /// right labels: it is then left as it is without reading its endpoints.
    pub clean: &'a dyn Fn(&EndpointSlice) -> bool,
    /// Auto hints: endpoints are compared without their hints, and this is called for each
    /// address type with the slices to create, the slices to update and the Service's other
    /// slices of that type, before creates take the place of deleted slices (as in-tree, where
    /// hints are added before `finalize`).
    pub auto_hints: Option<&'a AutoHints<'a>>,
}

/// What [`Targets::auto_hints`] calls: address type, creates, updates, unchanged slices.
pub(crate) type AutoHints<'a> =
    dyn Fn(IpFamily, &mut [EndpointSlice], &mut Vec<EndpointSlice>, &[&EndpointSlice]) + 'a;

impl<'a> Targets<'a, &'a Endpoint> {
    /// Every desired endpoint pending, nothing settled: a sync from scratch.
    pub(crate) fn from_scratch(desired: &'a DesiredEndpointSlices) -> Self {
        Targets {
            address_types: &desired.address_types,
            groups: desired
                .groups
                .iter()
                .map(|group| GroupTarget {
                    address_type: group.address_type,
                    ports: &group.ports,
                    ports_key: PortsKey::of(&group.ports),
                    pending: group
                        .endpoints
                        .iter()
                        .map(|e| (EndpointKey::of(e), e))
                        .collect(),
                })
                .collect(),
            settled: &|_, _, _| None,
            clean: &|_| false,
            auto_hints: None,
        }
    }
}

fn plan_group<'a, W: DesiredEndpoint<'a>>(
    existing: Vec<&EndpointSlice>,
    group: GroupTarget<'a, W>,
    targets: &Targets<'a, W>,
    new: impl Fn(&[EndpointPort]) -> EndpointSlice,
    labels: &BTreeMap<String, String>,
    max: usize,
) -> GroupPlan {
    let mut pending = group.pending;
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();

    // 1. Keep desired endpoints where they are, refreshing changed ones; drop the rest.
    for slice in existing {
        if (targets.clean)(slice) {
            unchanged.push(slice);
            continue;
        }
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in endpoints_of(slice) {
            let wanted = pending
                .remove(&EndpointKey::of(endpoint))
                .or_else(|| (targets.settled)(group.address_type, &group.ports_key, endpoint));
            match wanted {
                Some(wanted) => {
                    changed |= if targets.auto_hints.is_some() {
                        !same_endpoint_beyond_hints(wanted, endpoint)
                    } else {
                        !same_endpoint(wanted, endpoint)
                    };
                    kept.push(wanted);
                }
                None => changed = true,
            }
        }
        // A slice left empty is deleted (or reused for a create): no empty slice sits next to
        // endpoints.
        if kept.is_empty() {
            delete.push(slice.clone());
        } else if changed || !labels_current(slice, labels) {
            // Its endpoints are replaced: copied from the desired ones, not from the old slice.
            let mut updated = EndpointSlice {
                address_type: slice.address_type.clone(),
                endpoints: Some(kept.into_iter().map(W::to_endpoint).collect()),
                metadata: slice.metadata.clone(),
                ports: slice.ports.clone(),
            };
            updated.metadata.labels = Some(labels.clone());
            update.push(updated);
        } else {
            unchanged.push(slice);
        }
    }

    // What is left is placed in key order: looked up by hash until now, sorted only here.
    let mut pending: BTreeMap<EndpointKey<'_>, W> = pending.into_iter().collect();

    // 2. Fill the slices that are written anyway, fullest first.
    update.sort_by(|a, b| {
        endpoints_of(b)
            .len()
            .cmp(&endpoints_of(a).len())
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    for slice in &mut update {
        fill(slice, &mut pending, max);
    }

    // 3. A remainder smaller than a slice goes into the unchanged slice it leaves closest to
    //    full; everything else goes into new slices.
    let mut create = Vec::new();
    while !pending.is_empty() {
        let remaining = pending.len();
        let closest = (remaining < max)
            .then(|| {
                unchanged
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| endpoints_of(s).len() + remaining <= max)
                    .min_by_key(|(_, s)| {
                        (
                            max - endpoints_of(s).len() - remaining,
                            s.metadata.name.clone(),
                        )
                    })
                    .map(|(i, _)| i)
            })
            .flatten();
        match closest {
            Some(index) => {
                let mut slice = unchanged.swap_remove(index).clone();
                slice.metadata.labels = Some(labels.clone());
                fill(&mut slice, &mut pending, max);
                update.push(slice);
            }
            None => {
                let mut slice = new(group.ports);
                fill(&mut slice, &mut pending, max);
                create.push(slice);
            }
        }
    }
    GroupPlan {
        create,
        update,
        delete,
    }
}

/// A create turned into an update of a slice that was going to be deleted: the deleted slice's
/// identity (name, uid, resourceVersion) with the new slice's content.
fn recycle(doomed: EndpointSlice, replacement: EndpointSlice) -> EndpointSlice {
    let mut slice = doomed;
    slice.metadata.labels = replacement.metadata.labels;
    slice.metadata.owner_references = replacement.metadata.owner_references;
    slice.ports = replacement.ports;
    slice.endpoints = replacement.endpoints;
    slice
}

fn set_trigger_time(slice: &mut EndpointSlice, time: Option<&Time>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match time {
        Some(time) => annotations.insert(
            ANNOTATION_LAST_CHANGE_TRIGGER_TIME.into(),
            format_trigger_time(time),
        ),
        None => annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME),
    };
    if annotations.is_empty() {
        slice.metadata.annotations = None;
    }
}

/// The writes that bring the Service's existing slices to `desired`.
///
/// `existing` are the slices the caller found for this Service and this controller (label
/// `kubernetes.io/service-name`, and `endpointslice.kubernetes.io/managed-by` of this
/// controller or one it takes over from). Slices already being deleted are ignored. Slices
/// owned by another UID of the Service (a deleted namesake) and slices of address types the
/// Service no longer has are deleted and never reused. Each address type without endpoints
/// keeps exactly one empty placeholder slice. Nothing is created for a Service being deleted.
pub fn plan_endpoint_slices<S: Borrow<EndpointSlice>>(
    service: &Service,
    existing: &[S],
    desired: &DesiredEndpointSlices,
    params: &SliceParams<'_>,
) -> SlicePlan {
    plan_slices(service, existing, Targets::from_scratch(desired), params)
}

/// [`plan_endpoint_slices`] for targets that may say which slices and endpoints an earlier sync
/// settled.
pub(crate) fn plan_slices<'a, S: Borrow<EndpointSlice>, W: DesiredEndpoint<'a>>(
    service: &Service,
    existing: &[S],
    mut targets: Targets<'a, W>,
    params: &SliceParams<'_>,
) -> SlicePlan {
    let max = params.max_endpoints_per_slice.get();
    let labels = slice_labels(service, params.managed_by);
    let mut plan = SlicePlan::default();

    let mut by_type: BTreeMap<IpFamily, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in live_by_name(existing) {
        match slice.address_type.parse::<IpFamily>().ok() {
            Some(family) if targets.address_types.contains(&family) => {
                by_type.entry(family).or_default().push(slice)
            }
            _ => plan.delete.push(slice.clone()),
        }
    }

    let mut groups_by_type: BTreeMap<IpFamily, Vec<GroupTarget<'a, W>>> = BTreeMap::new();
    for group in std::mem::take(&mut targets.groups) {
        groups_by_type
            .entry(group.address_type)
            .or_default()
            .push(group);
    }
    for &family in targets.address_types {
        let slices = by_type.remove(&family).unwrap_or_default();
        let total = slices.len();
        let mut foreign = Vec::new();
        let mut owned = Vec::new();
        let mut by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            if owned_by(slice, service) {
                owned.push(slice);
                by_ports
                    .entry(PortsKey::of_slice(slice))
                    .or_default()
                    .push(slice);
            } else {
                foreign.push(slice.clone());
            }
        }

        let mut create = Vec::new();
        let mut update = Vec::new();
        let mut delete = Vec::new();
        let new =
            |ports: &[EndpointPort]| new_slice(service, family, ports.to_vec(), params.managed_by);
        for group in groups_by_type.remove(&family).unwrap_or_default() {
            let existing = by_ports.remove(&group.ports_key).unwrap_or_default();
            let planned = plan_group(existing, group, &targets, new, &labels, max);
            create.extend(planned.create);
            update.extend(planned.update);
            delete.extend(planned.delete);
        }
        delete.extend(by_ports.into_values().flatten().cloned());

        let survivors = total - delete.len() - foreign.len();
        if survivors == 0 && create.is_empty() {
            let placeholder = new_slice(service, family, Vec::new(), params.managed_by);
            match delete
                .iter()
                .position(|s| is_placeholder_like(s, &placeholder))
            {
                Some(index) => {
                    delete.remove(index);
                }
                None => create.push(placeholder),
            }
        }

        if let Some(auto_hints) = targets.auto_hints {
            let written: HashSet<&str> = update
                .iter()
                .chain(delete.iter())
                .filter_map(|s| s.metadata.name.as_deref())
                .collect();
            let unchanged: Vec<&EndpointSlice> = owned
                .iter()
                .copied()
                .filter(|s| !written.contains(s.metadata.name.as_deref().unwrap_or_default()))
                .collect();
            auto_hints(family, &mut create, &mut update, &unchanged);
            for slice in &mut update {
                slice.metadata.labels = Some(labels.clone());
            }
        }

        // A slice about to be deleted takes the place of a slice about to be created.
        delete.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut kept_for_deletion = Vec::new();
        for doomed in delete {
            match create.pop() {
                Some(replacement) => update.push(recycle(doomed, replacement)),
                None => kept_for_deletion.push(doomed),
            }
        }

        if is_being_deleted(service) {
            create.clear();
        }
        for slice in create.iter_mut().chain(update.iter_mut()) {
            set_trigger_time(slice, params.trigger_time);
        }
        plan.create.extend(create);
        plan.update.extend(update);
        plan.delete.extend(kept_for_deletion);
        plan.delete.extend(foreign);
    }
    plan
}

#[cfg(test)]
mod tests;
