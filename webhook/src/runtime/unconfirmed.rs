//! Gives back the values whose Service was not seen holding them in time, once a read from
//! kube-apiserver confirms that no Service holds them.
//!
//! Only the replica that gave a value knows it is unconfirmed, so it gives it back itself,
//! not the releasing replica: no two replicas free such a value on the same observation.
//! The read covers a Service stored just before the timeout whose watch event has not
//! arrived yet (the in-tree repair race of kubernetes#37488): its values are kept.

use std::collections::HashSet;
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
        for group in batch {
            let mut retry = RETRY_FIRST;
            let held = loop {
                match held_by_apiserver(&client, &group).await {
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
            if store.release(free).await.is_err() {
                return;
            }
        }
    }
}

/// The values the Service(s) an admission was for hold now, read from kube-apiserver.
async fn held_by_apiserver(client: &Client, group: &Expired) -> kube::Result<HashSet<Value>> {
    let api: Api<Service> = Api::namespaced(client.clone(), &group.namespace);
    let services = match &group.service {
        ServiceName::Named(name) => api.get_opt(name).await?.into_iter().collect(),
        ServiceName::Generated(prefix) => api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|s| {
                s.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect::<Vec<_>>(),
    };
    Ok(services
        .iter()
        .filter_map(|service| to_spec(service).ok())
        .flat_map(|spec| held_values(&spec))
        .collect())
}
