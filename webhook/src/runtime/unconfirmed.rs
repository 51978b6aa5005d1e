//! Gives back the values whose Service was not seen holding them in time, once a read from
//! kube-apiserver confirms that no Service holds them.
//!
//! Only the replica that gave a value knows it is unconfirmed, so it gives it back itself,
//! not the releasing replica: no two replicas free such a value on the same observation.
//! The read covers a Service stored just before the timeout whose watch event has not
//! arrived yet (the in-tree repair race of kubernetes#37488): its values are kept.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use allocator::Value;
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::services::spec::to_spec;
use crate::state::held::{describe, held_values};
use crate::state::{AllocationStore, Expired, ServiceName};

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs until `expired` closes (the store stopped).
pub async fn give_back_unconfirmed(
    client: Client,
    store: AllocationStore,
    mut expired: mpsc::UnboundedReceiver<Vec<Expired>>,
) {
    while let Some(batch) = expired.recv().await {
        let mut listed = Listed::new();
        for group in batch {
            let mut retry = RETRY_FIRST;
            let held = loop {
                match held_by_apiserver(&client, &group, &mut listed).await {
                    Ok(held) => break held,
                    Err(error) => {
                        tracing::warn!(namespace = %group.namespace, service = ?group.service, %error, ?retry, "could not read the Services of unconfirmed values; trying again");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            };
            let free: Vec<Value> = group
                .values
                .iter()
                .copied()
                .filter(|value| !held.contains(value))
                .collect();
            if free.is_empty() {
                continue;
            }
            tracing::info!(
                namespace = %group.namespace,
                service = ?group.service,
                values = %describe(&free),
                "giving back values whose Service was not created"
            );
            if store.give_back(free).await.is_err() {
                return;
            }
        }
    }
}

/// Each Service of a namespace (its name) with the values it holds.
type Listed = HashMap<String, Vec<(String, Vec<Value>)>>;

/// The values the Service(s) an admission was for hold now, read from kube-apiserver. For a
/// create with `generateName` (the webhook never learns the name) those of the namespace's
/// Services with that prefix: the namespace is listed once per batch, in `listed`.
async fn held_by_apiserver(
    client: &Client,
    group: &Expired,
    listed: &mut Listed,
) -> kube::Result<HashSet<Value>> {
    let api: Api<Service> = Api::namespaced(client.clone(), &group.namespace);
    let prefix = match &group.service {
        ServiceName::Named(name) => {
            return Ok(api
                .get_opt(name)
                .await?
                .iter()
                .flat_map(values_of)
                .collect());
        }
        ServiceName::Generated(prefix) => prefix,
    };
    if !listed.contains_key(&group.namespace) {
        let services = api.list(&ListParams::default()).await?.items;
        let named = services
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), values_of(s)))
            .collect();
        listed.insert(group.namespace.clone(), named);
    }
    Ok(listed[&group.namespace]
        .iter()
        .filter(|(name, _)| name.starts_with(prefix.as_str()))
        .flat_map(|(_, values)| values.iter().copied())
        .collect())
}

fn values_of(service: &Service) -> Vec<Value> {
    to_spec(service)
        .map(|spec| held_values(&spec))
        .unwrap_or_default()
}
