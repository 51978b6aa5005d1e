//! The invariants: no value held by two Services, and svcplane's stored state equal to
//! what the Services hold plus what live replicas keep in their pools and the addresses
//! kube-apiserver's IPAddress objects record.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use allocator::Value;
use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::IPAddress;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use webhook::services::spec::to_spec;
use webhook::state::RangeAllocation;
use webhook::state::held::held_values;

/// Every value some Service of the cluster holds, with the Services holding it.
pub async fn holders(client: &Client) -> Result<BTreeMap<Value, Vec<String>>> {
    let services: Api<Service> = Api::all(client.clone());
    let mut holders: BTreeMap<Value, Vec<String>> = BTreeMap::new();
    for service in services.list(&ListParams::default()).await? {
        let key = format!(
            "{}/{}",
            service.namespace().unwrap_or_default(),
            service.name_any()
        );
        let spec = to_spec(&service).map_err(|error| anyhow::anyhow!("{key}: {error}"))?;
        let values: BTreeSet<Value> = held_values(&spec).into_iter().collect();
        for value in values {
            holders.entry(value).or_default().push(key.clone());
        }
    }
    Ok(holders)
}

/// Values held by more than one Service.
pub fn duplicates(holders: &BTreeMap<Value, Vec<String>>) -> Vec<(Value, Vec<String>)> {
    holders
        .iter()
        .filter(|(_, services)| services.len() > 1)
        .map(|(value, services)| (*value, services.clone()))
        .collect()
}

/// The values svcplane's `RangeAllocation` objects hold, and those of them listed in
/// reservation entries renewed less than `entry_life` ago (see `setup::entry_life`).
pub async fn stored(
    client: &Client,
    entry_life: Duration,
) -> Result<(BTreeSet<Value>, BTreeSet<Value>)> {
    let api: Api<RangeAllocation> = Api::all(client.clone());
    let mut values = BTreeSet::new();
    let mut pooled = BTreeSet::new();
    let now = SystemTime::now();
    for object in api.list(&ListParams::default()).await? {
        let kind = object
            .kind()
            .ok_or_else(|| anyhow::anyhow!("unknown range object {}", object.name_any()))?;
        for entry in object.spec.reservations.values() {
            if entry.is_live(now, entry_life) {
                pooled.extend(entry.values(kind));
            }
        }
        values.extend(kind.values(&object.spec.snapshot())?);
    }
    Ok((values, pooled))
}

/// The values each reservation entry lists, by entry name, over every range.
pub async fn entries(client: &Client) -> Result<BTreeMap<String, BTreeSet<Value>>> {
    let api: Api<RangeAllocation> = Api::all(client.clone());
    let mut entries: BTreeMap<String, BTreeSet<Value>> = BTreeMap::new();
    for object in api.list(&ListParams::default()).await? {
        let kind = object
            .kind()
            .ok_or_else(|| anyhow::anyhow!("unknown range object {}", object.name_any()))?;
        for (holder, entry) in &object.spec.reservations {
            entries
                .entry(holder.clone())
                .or_default()
                .extend(entry.values(kind));
        }
    }
    Ok(entries)
}

/// The cluster IPs kube-apiserver's IPAddress objects record.
async fn recorded_by_apiserver(client: &Client) -> Result<BTreeSet<Value>> {
    let addresses: Api<IPAddress> = Api::all(client.clone());
    Ok(addresses
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|object| object.metadata.name.as_deref()?.parse().ok())
        .map(Value::ClusterIp)
        .collect())
}

/// How the stored state differs from what the Services hold.
#[derive(Debug, Default)]
pub struct Drift {
    /// Stored, held by no Service, in no live pool, recorded by no IPAddress object: leaked.
    pub leaked: BTreeSet<Value>,
    /// Stored, held by no Service, in the pool of a live replica.
    pub pooled: usize,
    /// Stored, held by no Service, in no live pool, but recorded by an IPAddress object:
    /// kube-apiserver would refuse them too (a create it stopped in the middle of leaves
    /// one until its own repair removes it), so svcplane keeps them (see repair).
    pub by_apiserver: usize,
    /// Held by a Service, not stored: not learned (yet).
    pub unknown: BTreeSet<Value>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.leaked.is_empty() && self.unknown.is_empty()
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let few = |set: &BTreeSet<Value>| {
            set.iter()
                .take(8)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "{} leaked [{}], {} in live pools, {} recorded by IPAddress objects only, {} held but not stored [{}]",
            self.leaked.len(),
            few(&self.leaked),
            self.pooled,
            self.by_apiserver,
            self.unknown.len(),
            few(&self.unknown)
        )
    }
}

/// The stored state against the Services, the live pools and kube-apiserver's IPAddress
/// objects.
pub async fn drift(client: &Client, entry_life: Duration) -> Result<Drift> {
    let held: BTreeSet<Value> = holders(client).await?.into_keys().collect();
    let (stored, pooled) = stored(client, entry_life).await?;
    let recorded = recorded_by_apiserver(client).await?;
    let unheld: BTreeSet<Value> = stored.difference(&held).copied().collect();
    let unpooled: BTreeSet<Value> = unheld.difference(&pooled).copied().collect();
    Ok(Drift {
        leaked: unpooled.difference(&recorded).copied().collect(),
        pooled: unheld.intersection(&pooled).count(),
        by_apiserver: unpooled.intersection(&recorded).count(),
        unknown: held.difference(&stored).copied().collect(),
    })
}
