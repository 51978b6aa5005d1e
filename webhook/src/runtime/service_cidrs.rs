//! The cluster's ServiceCIDR objects (networking.k8s.io/v1, Kubernetes 1.33+) as ClusterIP
//! ranges: the webhook allocates from them as kube-apiserver does, so that an operator who
//! adds a ServiceCIDR grows svcplane's ranges too. Where the API is not served the ranges
//! stay those of the flags.
//!
//! Kubernetes v1.37.2, `pkg/registry/core/service/ipallocator/cidrallocator.go`: a range is
//! usable when some ServiceCIDR listing it is ready (its Ready condition is True, or it has
//! none yet) and is not being deleted (`syncAllocators`, `isReady`); a ServiceCIDR of a
//! family the apiserver's flags lack is ignored, and so is an IPv6 prefix shorter than /64
//! (`NewIPAllocator`).

use std::collections::BTreeMap;

use allocator::{IpFamily, IpRange};
use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio::sync::oneshot;

use crate::state::AllocationStore;

/// What the ServiceCIDRs give.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// The ranges of each family, in CIDR order, each with whether new addresses may come
    /// from it.
    pub by_family: BTreeMap<IpFamily, Vec<(IpRange, bool)>>,
    /// The CIDRs svcplane cannot allocate from, with why.
    pub unusable: Vec<(String, String)>,
}

/// The ranges the ServiceCIDR objects `cidrs` give.
pub fn ranges_of<'a>(cidrs: impl IntoIterator<Item = &'a ServiceCIDR>) -> Ranges {
    let mut usable: BTreeMap<IpRange, bool> = BTreeMap::new();
    let mut ranges = Ranges::default();
    for object in cidrs {
        let ready = is_ready(object) && object.metadata.deletion_timestamp.is_none();
        let listed = object.spec.as_ref().and_then(|spec| spec.cidrs.as_ref());
        for text in listed.into_iter().flatten() {
            match text.parse::<IpRange>() {
                // Several objects may list one CIDR: it is usable if one of them is.
                Ok(range) => *usable.entry(range).or_default() |= ready,
                Err(error) => ranges.unusable.push((text.clone(), error.to_string())),
            }
        }
    }
    for (range, usable) in usable {
        ranges
            .by_family
            .entry(range.family())
            .or_default()
            .push((range, usable));
    }
    ranges
}

/// What user-written endpoints may not point into: `flags` (the ranges svcplane was given)
/// and every range of `ranges`, usable or not (a ServiceCIDR being deleted still holds its
/// Services' addresses), each once.
pub fn virtual_ip_cidrs(flags: &[IpNet], ranges: &Ranges) -> Vec<IpNet> {
    let mut cidrs = flags.to_vec();
    for (range, _) in ranges.by_family.values().flatten() {
        if !cidrs.contains(&range.cidr()) {
            cidrs.push(range.cidr());
        }
    }
    cidrs
}

/// Ready is True, or there is no Ready condition yet (the apiserver allocates from a new
/// ServiceCIDR before kube-controller-manager marks it).
fn is_ready(object: &ServiceCIDR) -> bool {
    let conditions = object.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .find(|condition| condition.type_ == "Ready")
        .is_none_or(|condition| condition.status == "True")
}

/// Follows the ServiceCIDR objects and hands their ranges to `store` on every change, and
/// with `flags` to `virtual_ips` (what the endpoint check refuses); `listed` is told once
/// the first ranges are set (or the API is found not served).
pub async fn watch(
    client: Client,
    store: AllocationStore,
    flags: Vec<IpNet>,
    virtual_ips: tokio::sync::watch::Sender<Vec<IpNet>>,
    listed: oneshot::Sender<()>,
) {
    let api: Api<ServiceCIDR> = Api::all(client);
    let mut listed = Some(listed);
    match api.list(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::info!(
                "this apiserver serves no ServiceCIDR API (Kubernetes before 1.33): ClusterIP ranges are the flags'"
            );
            let _ = listed.take().map(|listed| listed.send(()));
            return std::future::pending().await;
        }
        // Admission does not wait on what it cannot read (RBAC without ServiceCIDRs, say):
        // the flags' ranges serve until the watch below gets through.
        Err(error) => {
            tracing::error!(%error, "ServiceCIDRs not readable: ClusterIP ranges are the flags' until they are");
            let _ = listed.take().map(|listed| listed.send(()));
        }
        Ok(_) => {}
    }
    let (reader, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut last: Option<Ranges> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "ServiceCIDR watch interrupted");
                continue;
            }
        }
        let objects = reader.state();
        let ranges = ranges_of(objects.iter().map(|object| object.as_ref()));
        if last.as_ref() != Some(&ranges) {
            for (cidr, why) in &ranges.unusable {
                tracing::warn!(%cidr, %why, "svcplane cannot allocate from this ServiceCIDR range");
            }
            for (family, family_ranges) in &ranges.by_family {
                let shown: Vec<String> = family_ranges
                    .iter()
                    .map(|(range, usable)| {
                        format!("{range}{}", if *usable { "" } else { " (not usable)" })
                    })
                    .collect();
                tracing::info!(%family, ranges = %shown.join(", "), "ClusterIP ranges from the ServiceCIDRs");
            }
            if store.set_ranges(ranges.by_family.clone()).await.is_err() {
                return;
            }
            virtual_ips.send_replace(virtual_ip_cidrs(&flags, &ranges));
            last = Some(ranges);
        }
        if let Some(listed) = listed.take() {
            let _ = listed.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cidr(name: &str, cidrs: &[&str], ready: Option<&str>, deleting: bool) -> ServiceCIDR {
        let mut object = json!({
            "metadata": { "name": name },
            "spec": { "cidrs": cidrs },
        });
        if let Some(status) = ready {
            object["status"] = json!({ "conditions": [{
                "type": "Ready", "status": status, "reason": "", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]});
        }
        if deleting {
            object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(object).unwrap()
    }

    fn range(text: &str) -> IpRange {
        text.parse().unwrap()
    }

    #[test]
    fn usable_means_ready_or_not_yet_marked_and_not_being_deleted() {
        let objects = [
            cidr(
                "kubernetes",
                &["10.96.0.0/16", "fd00:10:96::/108"],
                Some("True"),
                false,
            ),
            cidr("new", &["10.100.0.0/24"], None, false),
            cidr("failed", &["10.101.0.0/24"], Some("False"), false),
            cidr("going", &["10.102.0.0/24"], Some("True"), true),
        ];
        let ranges = ranges_of(&objects);
        assert_eq!(
            ranges.by_family[&IpFamily::V4],
            [
                (range("10.96.0.0/16"), true),
                (range("10.100.0.0/24"), true),
                (range("10.101.0.0/24"), false),
                (range("10.102.0.0/24"), false),
            ]
        );
        assert_eq!(
            ranges.by_family[&IpFamily::V6],
            [(range("fd00:10:96::/108"), true)]
        );
        assert!(ranges.unusable.is_empty());
    }

    #[test]
    fn endpoints_may_not_point_into_any_range_usable_or_not_nor_the_flags() {
        let objects = [
            cidr("kubernetes", &["10.96.0.0/16"], Some("True"), false),
            cidr("new", &["10.100.0.0/24"], None, false),
            cidr("going", &["10.102.0.0/24"], Some("True"), true),
        ];
        let flags: Vec<IpNet> = vec!["10.96.0.0/16".parse().unwrap()];
        let cidrs: Vec<String> = virtual_ip_cidrs(&flags, &ranges_of(&objects))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(cidrs, ["10.96.0.0/16", "10.100.0.0/24", "10.102.0.0/24"]);
    }

    #[test]
    fn a_range_two_objects_list_is_usable_while_one_of_them_is() {
        // cidrallocator.go syncAllocators: allocators are keyed by CIDR.
        let objects = [
            cidr("a", &["10.100.0.0/24"], Some("True"), true),
            cidr("b", &["10.100.0.0/24"], Some("True"), false),
        ];
        assert_eq!(
            ranges_of(&objects).by_family[&IpFamily::V4],
            [(range("10.100.0.0/24"), true)]
        );
    }

    #[test]
    fn ranges_svcplane_cannot_hold_are_named() {
        // ipallocator.go NewIPAllocator refuses IPv6 prefixes shorter than /64.
        let objects = [cidr("wide", &["fd00::/48", "10.0.0.0/30"], None, false)];
        let ranges = ranges_of(&objects);
        assert!(ranges.by_family.is_empty());
        let named: Vec<&str> = ranges.unusable.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(named, ["fd00::/48", "10.0.0.0/30"]);
    }
}
