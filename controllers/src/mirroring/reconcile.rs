//! The mirroring reconciler: from the mirrored slices that exist and the groups that should,
//! the fewest creates, updates and deletes.
//!
//! Each group (address type and port list) is exactly one slice, as in-tree. A slice that
//! already holds what its group should is left alone; otherwise one slice of the group is
//! updated in place and any other of the group deleted. A slice about to be deleted takes the
//! place of a slice about to be created (same address type) instead of both writes happening.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};

use super::desired::{DesiredMirroredSlices, PortKey};
use crate::endpointslice::{EndpointGroup, SlicePlan, live_by_name};
use crate::service::IpFamily;
use crate::well_known::LABEL_SLICE_MANAGED_BY;

type GroupKey = (Option<IpFamily>, Option<Vec<PortKey>>);

fn group_key_of_slice(slice: &EndpointSlice) -> GroupKey {
    (
        slice.address_type.parse::<IpFamily>().ok(),
        PortKey::list_of_slice(slice.ports.as_deref().unwrap_or_default()),
    )
}

fn group_key(group: &EndpointGroup) -> GroupKey {
    (Some(group.address_type), PortKey::list_of_group(group))
}

/// An endpoint as consumers see it, in a form that compares: addresses sorted, empty strings
/// and empty conditions as absent, the target's resourceVersion left out.
fn comparable(endpoint: &Endpoint) -> String {
    let mut e = endpoint.clone();
    e.addresses.sort();
    if let Some(target) = &mut e.target_ref {
        target.resource_version = None;
    }
    if e.conditions == Some(EndpointConditions::default()) {
        e.conditions = None;
    }
    for field in [&mut e.hostname, &mut e.node_name, &mut e.zone] {
        if field.as_deref() == Some("") {
            *field = None;
        }
    }
    serde_json::to_string(&e).expect("an Endpoint serializes to JSON")
}

fn same_endpoints(a: &[Endpoint], b: &[Endpoint]) -> bool {
    let sorted = |list: &[Endpoint]| {
        let mut all: Vec<String> = list.iter().map(comparable).collect();
        all.sort();
        all
    };
    a.len() == b.len() && sorted(a) == sorted(b)
}

fn labels_without_manager(labels: Option<&BTreeMap<String, String>>) -> BTreeMap<&String, &String> {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LABEL_SLICE_MANAGED_BY)
        .collect()
}

/// Whether the slice already mirrors the group. The manager label is not compared: a slice
/// taken over from the in-tree mirroring controller is relabelled only when written anyway.
fn is_current(
    slice: &EndpointSlice,
    group: &EndpointGroup,
    desired: &DesiredMirroredSlices,
) -> bool {
    let meta = &desired.metadata;
    let annotations = |a: Option<&BTreeMap<String, String>>| a.filter(|a| !a.is_empty()).cloned();
    same_endpoints(
        slice.endpoints.as_deref().unwrap_or_default(),
        &group.endpoints,
    ) && labels_without_manager(slice.metadata.labels.as_ref())
        == labels_without_manager(meta.labels.as_ref())
        && annotations(slice.metadata.annotations.as_ref())
            == annotations(meta.annotations.as_ref())
        && slice.metadata.owner_references == meta.owner_references
}

/// The group's content under an existing slice's identity (name, uid, resourceVersion), so the
/// update is conditional on the version the plan was computed from.
fn rewritten(
    mut slice: EndpointSlice,
    group: &EndpointGroup,
    desired: &DesiredMirroredSlices,
) -> EndpointSlice {
    let meta = &desired.metadata;
    slice.metadata.labels = meta.labels.clone();
    slice.metadata.annotations = meta.annotations.clone();
    slice.metadata.owner_references = meta.owner_references.clone();
    slice.address_type = group.address_type.as_str().into();
    slice.ports = Some(group.ports.clone());
    slice.endpoints = Some(group.endpoints.clone());
    slice
}

fn new_slice(group: &EndpointGroup, desired: &DesiredMirroredSlices) -> EndpointSlice {
    EndpointSlice {
        metadata: desired.metadata.clone(),
        address_type: group.address_type.as_str().into(),
        endpoints: Some(group.endpoints.clone()),
        ports: Some(group.ports.clone()),
    }
}

/// The writes that bring an Endpoints object's mirrored slices to `desired`; `None` (mirroring
/// does not apply, see [`desired_mirrored_slices`](super::desired_mirrored_slices)) deletes
/// them all.
///
/// `existing` are the slices labelled with the Endpoints' name as `kubernetes.io/service-name`
/// and managed by svcplane's or the in-tree mirroring controller; slices already being deleted
/// are ignored. Nothing is created for an Endpoints object being deleted.
pub fn plan_mirrored_slices<S: Borrow<EndpointSlice>>(
    existing: &[S],
    desired: Option<&DesiredMirroredSlices>,
) -> SlicePlan {
    let live = live_by_name(existing);
    let Some(desired) = desired else {
        return SlicePlan {
            delete: live.into_iter().cloned().collect(),
            ..SlicePlan::default()
        };
    };

    let mut by_group: BTreeMap<GroupKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in live {
        by_group
            .entry(group_key_of_slice(slice))
            .or_default()
            .push(slice);
    }

    let mut create: Vec<&EndpointGroup> = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();
    for group in &desired.groups {
        let mut slices = by_group.remove(&group_key(group)).unwrap_or_default();
        match slices.iter().position(|s| is_current(s, group, desired)) {
            Some(index) => {
                slices.remove(index);
            }
            None if slices.is_empty() => create.push(group),
            None => update.push(rewritten(slices.remove(0).clone(), group, desired)),
        }
        delete.extend(slices.into_iter().cloned());
    }
    delete.extend(by_group.into_values().flatten().cloned());

    // A slice about to be deleted takes the place of a create of its address type.
    let mut kept_for_deletion = Vec::new();
    for doomed in delete {
        let family = doomed.address_type.parse::<IpFamily>().ok();
        match create.iter().position(|g| Some(g.address_type) == family) {
            Some(index) => update.push(rewritten(doomed, create.remove(index), desired)),
            None => kept_for_deletion.push(doomed),
        }
    }

    if desired.endpoints_being_deleted {
        create.clear();
    }
    SlicePlan {
        create: create.into_iter().map(|g| new_slice(g, desired)).collect(),
        update,
        delete: kept_for_deletion,
    }
}

#[cfg(test)]
mod tests;
