//! The watches that keep the allocation state true: Services (releases and repair),
//! ServiceCIDRs (the ClusterIP ranges) and, when the cross-namespace check is on, Pods.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::networking::v1::IPAddress;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use plumbing::{Event, ObjectKey};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::pods::{PodAddresses, PodIpIndex};
use super::{Releaser, WebhookConfig};
use crate::services::spec::to_spec;
use crate::state::held::{HeldIndex, describe, held_values};
use crate::state::repair::{Finding, IpAddresses, Regarding, Repairer};
use crate::state::store::{WANTED_ANNOTATION, wanted_in};
use crate::state::{AllocationStore, DeadEntry, RangeAllocation, RangeKind};

/// The running watches and repair loop; aborted together.
pub struct Watches(JoinSet<()>);

impl Watches {
    /// Whether one of them has ended since the last call: each is meant to run as long as
    /// the process.
    pub fn any_ended(&mut self) -> bool {
        self.0.try_join_next().is_some()
    }

    /// Stops them.
    pub fn abort(mut self) {
        self.0.abort_all();
    }
}

/// Starts the watches and returns once the Services have been listed, the ClusterIP ranges
/// follow the cluster's ServiceCIDRs (where the API is served) and a first repair has
/// marked every value the Services hold.
pub async fn start(
    client: Client,
    store: AllocationStore,
    pod_ips: Arc<PodIpIndex>,
    virtual_ips: tokio::sync::watch::Sender<Vec<IpNet>>,
    config: &WebhookConfig,
) -> Watches {
    let mut tasks = JoinSet::new();
    let held = Arc::new(Mutex::new(HeldIndex::default()));
    let (listed, on_listed) = oneshot::channel();
    tasks.spawn(watch_services(
        client.clone(),
        store.clone(),
        Arc::clone(&held),
        config.releaser.clone(),
        listed,
    ));
    tasks.spawn(watch_ranges(client.clone(), store.clone()));
    let (ranges_set, on_ranges_set) = oneshot::channel();
    tasks.spawn(super::service_cidrs::watch(
        client.clone(),
        store.clone(),
        config.service_cluster_ip_ranges.clone(),
        virtual_ips,
        ranges_set,
    ));
    if config.deny_foreign_pod_ips {
        tasks.spawn(watch_pods(client.clone(), pod_ips));
    }
    let _ = on_listed.await;
    let _ = on_ranges_set.await;

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "svcplane-webhook".to_string(),
            instance: config.pod_name.clone(),
        },
    );
    if config.pool.size > 0 {
        tasks.spawn(reclaim_dead_entries(
            client.clone(),
            store.clone(),
            config.releaser.clone(),
            config.pool.lifetime / 4,
        ));
    }
    let mut repair = RepairLoop {
        client: client.clone(),
        store,
        releaser: config.releaser.clone(),
        held,
        recorder,
        repairer: Repairer::default(),
    };
    repair.sweep(Sweep::AtStart).await;
    let interval = config.repair_interval;
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            repair.sweep(Sweep::Periodic).await;
        }
    });
    Watches(tasks)
}

/// What the index keeps of a Service: its key and the values it holds.
struct HeldBy {
    service: ObjectKey,
    values: Vec<allocator::Value>,
}

impl From<Service> for HeldBy {
    fn from(service: Service) -> Self {
        let key = ObjectKey::of(&service);
        let values = match to_spec(&service) {
            Ok(spec) => held_values(&spec),
            Err(error) => {
                tracing::warn!(service = %key, %error, "Service not understood; its values are not tracked");
                Vec::new()
            }
        };
        HeldBy {
            service: key,
            values,
        }
    }
}

async fn watch_services(
    client: Client,
    store: AllocationStore,
    held: Arc<Mutex<HeldIndex>>,
    releaser: Releaser,
    listed: oneshot::Sender<()>,
) {
    let mut listed = Some(listed);
    let mut relisting = false;
    let mut relisted: Vec<allocator::Value> = Vec::new();
    let events = plumbing::watch::<Service, _>(client, watcher::Config::default(), HeldBy::from);
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        // Values to mark as allocated: those of a Service the apiserver allocated on its own
        // (the webhook was not called: failure policy Ignore, or Services from before
        // installation). A relist leaves them to the repair sweep that follows it.
        let mut learned = Vec::new();
        let list_done = matches!(event, Event::RelistDone);
        let released = {
            let mut index = held.lock().expect("held index lock poisoned");
            match event {
                Event::RelistStart => {
                    relisting = true;
                    index.relist_start();
                    Vec::new()
                }
                Event::Apply(held) if relisting => {
                    relisted.extend_from_slice(&held.values);
                    index.relist_apply(&held.service, held.values);
                    Vec::new()
                }
                Event::Apply(held) => {
                    learned.clone_from(&held.values);
                    index.apply(&held.service, held.values)
                }
                Event::Unreadable(key) if relisting => {
                    index.relist_keep(&key);
                    Vec::new()
                }
                // An unreadable change keeps what was known of the Service.
                Event::Unreadable(_) => Vec::new(),
                Event::Delete(held) => index.delete(&held.service),
                Event::RelistDone => {
                    relisting = false;
                    index.relist_done()
                }
            }
        };
        if list_done && let Some(listed) = listed.take() {
            let _ = listed.send(());
        }
        // The values relisted Services hold, confirmed in one command once the list is done.
        let seen = if list_done {
            std::mem::take(&mut relisted)
        } else {
            Vec::new()
        };
        if !seen.is_empty()
            && let Err(error) = store.confirm(seen).await
        {
            tracing::warn!(%error, "values not confirmed");
        }
        // Only the releasing replica marks: its marks and releases follow one watch, in
        // order. Another replica's watch may show a Service after the releaser has seen it
        // deleted and freed its values; a mark then would allocate them again for nobody.
        // Elsewhere, the values are confirmed only.
        if !learned.is_empty() {
            let sent = if releaser.is_active() {
                store.mark(learned).await
            } else {
                store.confirm(learned).await
            };
            if let Err(error) = sent {
                tracing::warn!(%error, "values not marked");
            }
        }
        if !released.is_empty() && !releaser.is_active() {
            tracing::debug!(values = %describe(&released), "values no Service holds any more; the releasing replica frees them");
        } else if !released.is_empty() {
            tracing::info!(values = %describe(&released), "releasing values no Service holds any more");
            if let Err(error) = store.release_observed(released).await {
                tracing::warn!(%error, "release not queued");
            }
        }
    }
}

/// Tells the store each version of the stored ranges, so that it reads a range again
/// before refusing what another replica's write may have freed (its copy is otherwise only
/// refreshed by its own writes), and the values another replica marked wanted, which the
/// store gives up if its pool still holds them.
async fn watch_ranges(client: Client, store: AllocationStore) {
    let api: Api<PartialObjectMeta<RangeAllocation>> = Api::all(client);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => object,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "range watch interrupted");
                continue;
            }
        };
        let kind = object
            .metadata
            .name
            .as_deref()
            .and_then(RangeKind::from_name);
        let Some(kind) = kind else { continue };
        let wanted = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(WANTED_ANNOTATION))
            .map(|text| wanted_in(kind, text))
            .unwrap_or_default();
        if !wanted.is_empty() && store.unpool(wanted).await.is_err() {
            return;
        }
        if let Some(version) = object.metadata.resource_version
            && store.observed(kind, version).await.is_err()
        {
            return;
        }
    }
}

async fn watch_pods(client: Client, index: Arc<PodIpIndex>) {
    let config = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let events = plumbing::watch::<Pod, _>(client, config, PodAddresses::from);
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Event::RelistStart => index.relist_start(),
            Event::Apply(pod) => index.apply(pod),
            Event::Delete(pod) => index.delete(&pod),
            Event::Unreadable(key) => index.relist_keep(key),
            Event::RelistDone => index.relist_done(),
        }
    }
}

/// On the releasing replica, every `every`: the entries of dead replicas (not renewed for a
/// pool lifetime, and for at least half of one plus the unconfirmed-allocation timeout,
/// `PoolConfig::dead_after`) are dropped and what they list that no Service holds is freed,
/// so that the pool and the unconfirmed values of a replica that died are free again within
/// that time instead of three repair sweeps. The Services are read from kube-apiserver (a
/// list, not the watch's copy): a Service admitted by that replica just before it died is
/// seen.
async fn reclaim_dead_entries(
    client: Client,
    store: AllocationStore,
    releaser: Releaser,
    every: std::time::Duration,
) {
    let services: Api<Service> = Api::all(client);
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if !releaser.is_active() {
            continue;
        }
        let Ok(state) = store.fresh_snapshot().await else {
            return;
        };
        let reclaimed = reclaim(
            &services,
            &store,
            state.dead,
            &state.pooled,
            "reclaiming the entry of a dead replica",
        );
        if reclaimed.await.is_err() {
            return;
        }
    }
}

/// Frees what the entries of earlier lives of this replica's pod list (a container
/// restarted in its pod; see `Holder`), without waiting for them to die of age: once one
/// unconfirmed-allocation timeout has passed since this life started, whatever those lives
/// handed out has reached kube-apiserver's storage or never will, so what no Service holds
/// is free. This replica does it itself, whether it releases or not; the releasing replica
/// would only take them for dead `PoolConfig::dead_after` after their last renewal.
pub(super) async fn reclaim_previous_lives(client: Client, store: AllocationStore, wait: Duration) {
    tokio::time::sleep(wait).await;
    let services: Api<Service> = Api::all(client);
    loop {
        let Ok(state) = store.snapshot().await else {
            return;
        };
        let reclaimed = reclaim(
            &services,
            &store,
            state.previous_lives,
            &state.pooled,
            "freeing what an earlier life of this pod listed",
        );
        match reclaimed.await {
            Ok(true) | Err(()) => return,
            // The Services could not be listed: try again.
            Ok(false) => tokio::time::sleep(wait / 4).await,
        }
    }
}

/// Drops `entries` and frees what they list that no Service holds and no live pool lists;
/// `Ok(false)` when the Services could not be listed (nothing done), `Err` when the store
/// has stopped.
async fn reclaim(
    services: &Api<Service>,
    store: &AllocationStore,
    mut entries: Vec<DeadEntry>,
    pooled: &BTreeSet<allocator::Value>,
    what: &'static str,
) -> Result<bool, ()> {
    if entries.is_empty() {
        return Ok(true);
    }
    // A list, not the watch's copy: a Service admitted just before the entry's replica
    // stopped is seen.
    let listed = match services.list(&Default::default()).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(%error, "Services not listed; {what} waits");
            return Ok(false);
        }
    };
    let held: std::collections::HashSet<allocator::Value> = listed
        .items
        .iter()
        .filter_map(|service| to_spec(service).ok())
        .flat_map(|spec| held_values(&spec))
        .collect();
    for entry in &mut entries {
        entry
            .values
            .retain(|value| !held.contains(value) && !pooled.contains(value));
        tracing::info!(
            holder = %entry.holder,
            range = entry.kind.name(),
            values = %describe(&entry.values),
            "{what}"
        );
    }
    store.reclaim(entries).await.map(|()| true).map_err(|_| ())
}

/// Which repair sweep runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// Before this replica serves: it marks what the listed Services hold (default/kubernetes,
    /// Services from before installation), whichever replica releases, so that it never
    /// hands those values out.
    AtStart,
    /// Later ones: only the releasing replica marks (see `watch_services`).
    Periodic,
}

struct RepairLoop {
    client: Client,
    store: AllocationStore,
    releaser: Releaser,
    held: Arc<Mutex<HeldIndex>>,
    recorder: Recorder,
    repairer: Repairer,
}

/// kube-apiserver's IPAddress objects; `None` where the API is not served (before
/// Kubernetes 1.33) or could not be read this time.
async fn ip_addresses(client: &Client) -> Option<IpAddresses> {
    let api: Api<IPAddress> = Api::all(client.clone());
    let listed = match api.list(&ListParams::default()).await {
        Ok(listed) => listed,
        Err(kube::Error::Api(status)) if status.code == 404 => return None,
        Err(error) => {
            tracing::warn!(%error, "IPAddress objects not read; this sweep goes without them");
            return None;
        }
    };
    let addresses = listed.items.into_iter().filter_map(|object| {
        let ip = object.metadata.name.as_deref()?.parse().ok()?;
        let service = Some(object.spec.parent_ref)
            .filter(|parent| parent.group.as_deref().unwrap_or("").is_empty())
            .filter(|parent| parent.resource == "services")
            .map(|parent| format!("{}/{}", parent.namespace.unwrap_or_default(), parent.name));
        Some((ip, service))
    });
    Some(addresses.collect())
}

impl RepairLoop {
    #[tracing::instrument(name = "repair", skip_all)]
    async fn sweep(&mut self, which: Sweep) {
        let state = match self.store.snapshot().await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "repair skipped");
                return;
            }
        };
        let services: HashMap<String, Vec<allocator::Value>> = {
            let index = self.held.lock().expect("held index lock poisoned");
            index
                .services()
                .map(|(key, values)| (key.to_string(), values.clone()))
                .collect()
        };
        // Listed after the Services were taken: see `Repairer::sweep`.
        let addresses = ip_addresses(&self.client).await;
        let sweep = self.repairer.sweep(
            services.iter(),
            &state.allocators,
            &state.pooled,
            addresses.as_ref(),
        );
        tracing::info!(
            services = services.len(),
            marked = sweep.mark.len(),
            freed = sweep.release.len(),
            pending_leaks = sweep.pending_leaks,
            findings = sweep.findings.len(),
            "repair sweep"
        );
        let marks = which == Sweep::AtStart || self.releaser.is_active();
        if marks
            && !sweep.mark.is_empty()
            && let Err(error) = self.store.mark(sweep.mark).await
        {
            tracing::warn!(%error, "repair could not mark values");
        }
        if !sweep.release.is_empty() && self.releaser.is_active() {
            tracing::info!(values = %describe(&sweep.release), "freeing values leaked for three sweeps");
            if let Err(error) = self.store.release(sweep.release).await {
                tracing::warn!(%error, "repair could not free leaked values");
            }
        }
        for finding in sweep.findings {
            self.report(&finding).await;
        }
    }

    async fn report(&self, finding: &Finding) {
        let Some((regarding, related)) = finding.regarding() else {
            tracing::info!(reason = finding.reason(), message = %finding.message(), "repair finding without an event");
            return;
        };
        let event = KubeEvent {
            type_: match finding {
                Finding::NotAllocated { .. } | Finding::HeldByIpAddress { .. } => EventType::Normal,
                _ => EventType::Warning,
            },
            reason: finding.reason().to_string(),
            note: Some(finding.message()),
            action: "Repair".to_string(),
            secondary: related.map(reference),
        };
        if let Err(error) = self.recorder.publish(&event, &reference(regarding)).await {
            tracing::warn!(%error, reason = finding.reason(), "repair event not recorded");
        }
    }
}

/// The reference an event carries to `object`.
fn reference(object: Regarding) -> ObjectReference {
    match object {
        Regarding::Service(key) => {
            let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
            ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Service".to_string()),
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                ..ObjectReference::default()
            }
        }
        Regarding::IpAddress(name) => ObjectReference {
            api_version: Some("networking.k8s.io/v1".to_string()),
            kind: Some("IPAddress".to_string()),
            name: Some(name),
            ..ObjectReference::default()
        },
    }
}
