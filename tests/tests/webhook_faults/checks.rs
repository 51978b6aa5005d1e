//! The invariants: no value held by two Services, and svcplane's stored state equal to
//! what the Services hold.

use std::collections::{BTreeMap, BTreeSet};

use allocator::{ClusterIpAllocator, NodePortAllocator, Snapshot, Value};
use anyhow::Result;
use k8s_openapi::api::core::v1::Service;
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

/// The values svcplane's `RangeAllocation` objects hold.
pub async fn stored(client: &Client) -> Result<BTreeSet<Value>> {
    let api: Api<RangeAllocation> = Api::all(client.clone());
    let mut values = BTreeSet::new();
    for object in api.list(&ListParams::default()).await? {
        let snapshot = Snapshot {
            range: object.spec.range.clone(),
            data: object.spec.data.0.clone(),
        };
        if object.name_any() == "node-ports" {
            let ports = NodePortAllocator::from_snapshot(&snapshot)?;
            values.extend(ports.iter().map(Value::NodePort));
        } else {
            let ips = ClusterIpAllocator::from_snapshot(&snapshot)?;
            values.extend(ips.iter().map(Value::ClusterIp));
        }
    }
    Ok(values)
}

/// How the stored state differs from what the Services hold.
#[derive(Debug, Default)]
pub struct Drift {
    /// Stored, held by no Service: leaked.
    pub leaked: BTreeSet<Value>,
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
            "{} leaked [{}], {} held but not stored [{}]",
            self.leaked.len(),
            few(&self.leaked),
            self.unknown.len(),
            few(&self.unknown)
        )
    }
}

/// The stored state against the Services.
pub async fn drift(client: &Client) -> Result<Drift> {
    let held: BTreeSet<Value> = holders(client).await?.into_keys().collect();
    let stored = stored(client).await?;
    Ok(Drift {
        leaked: stored.difference(&held).copied().collect(),
        unknown: held.difference(&stored).copied().collect(),
    })
}
