//! What the controllers published in a namespace, followed through watches: when it reached
//! a scenario's goal, and when each readiness flip showed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource};
use tokio::task::JoinHandle;

const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MIRRORING_MANAGER: &str = "endpointslicemirroring-controller.k8s.io";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// The final state a scenario waits for: every pod ready in slices, and the Endpoints.
#[derive(Clone, Copy, Debug, Default)]
pub struct Goal {
    /// Pods, each to be in exactly one slice, ready there.
    pub pods: usize,
    /// Endpoints objects.
    pub endpoints: usize,
    /// Ready addresses over all of them (none not ready).
    pub endpoints_ready: usize,
    /// Endpoints objects annotated `over-capacity: truncated`.
    pub truncated: usize,
}

/// What the controllers published in the namespace, as seen through watches; when it first
/// reached the goal (and stayed there); and the flips waiting to show in it.
#[derive(Default)]
pub struct Published {
    goal: Goal,
    /// Slice name -> pod -> ready (mirrored slices left out).
    slices: HashMap<String, HashMap<String, bool>>,
    /// Pod -> (slices holding it, of which ready).
    in_slices: HashMap<String, (u32, u32)>,
    /// Pods held by some slice.
    pods_in_slices: usize,
    /// Pods held by exactly one slice, ready there.
    pods_once_ready: usize,
    /// Endpoints name -> (pod -> ready, truncated).
    endpoints: HashMap<String, (HashMap<String, bool>, bool)>,
    endpoints_ready: usize,
    endpoints_not_ready: usize,
    truncated: usize,
    /// Since when the slices, and the Endpoints, have been at the goal.
    pub slices_done: Option<Instant>,
    pub endpoints_done: Option<Instant>,
    pub last_write: Option<Instant>,
    /// Pod -> its flip, until the pod, the slices and the Endpoints all showed it.
    pub flips: HashMap<String, Flip>,
    pub shown: Vec<Flip>,
}

/// A readiness flip of one pod, and when the bench's watches showed it.
#[derive(Clone, Copy, Debug)]
pub struct Flip {
    pub ready: bool,
    pub sent: Instant,
    pub pod: Option<Instant>,
    pub slice: Option<Instant>,
    pub endpoints: Option<Instant>,
}

impl Flip {
    pub fn new(ready: bool) -> Self {
        Self {
            ready,
            sent: Instant::now(),
            pod: None,
            slice: None,
            endpoints: None,
        }
    }
}

impl Published {
    pub fn new(goal: Goal) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            goal,
            ..Self::default()
        }))
    }

    /// Records that a watch showed `pod` with `ready`, if that is what its flip waits for.
    fn flip_seen(
        &mut self,
        pod: &str,
        ready: bool,
        at: Instant,
        field: fn(&mut Flip) -> &mut Option<Instant>,
    ) {
        let Some(flip) = self.flips.get_mut(pod) else {
            return;
        };
        if flip.ready != ready {
            return;
        }
        field(flip).get_or_insert(at);
        if flip.pod.is_some() && flip.slice.is_some() && flip.endpoints.is_some() {
            let flip = *flip;
            self.flips.remove(pod);
            self.shown.push(flip);
        }
    }

    pub fn pod_seen(&mut self, pod: &Pod, deleted: bool, at: Instant) {
        if deleted {
            return;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.flip_seen(&name, ready, at, |f| &mut f.pod);
    }

    fn count_pod(&mut self, pod: &str, slices: i32, ready: i32) {
        let entry = self.in_slices.entry(pod.to_string()).or_default();
        let before = *entry;
        entry.0 = (entry.0 as i32 + slices) as u32;
        entry.1 = (entry.1 as i32 + ready) as u32;
        let after = *entry;
        if before.0 == 0 && after.0 > 0 {
            self.pods_in_slices += 1;
        }
        if before.0 > 0 && after.0 == 0 {
            self.pods_in_slices -= 1;
        }
        if before == (1, 1) {
            self.pods_once_ready -= 1;
        }
        if after == (1, 1) {
            self.pods_once_ready += 1;
        }
    }

    pub fn slice_seen(&mut self, slice: &EndpointSlice, deleted: bool, at: Instant) {
        let name = slice.metadata.name.clone().unwrap_or_default();
        if is_mirrored(slice) {
            return;
        }
        self.last_write = Some(at);
        let new: HashMap<String, bool> = if deleted {
            HashMap::new()
        } else {
            slice
                .endpoints
                .iter()
                .flatten()
                .filter_map(|e| {
                    let pod = e.target_ref.as_ref()?.name.clone()?;
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    Some((pod, ready))
                })
                .collect()
        };
        let old = self.slices.remove(&name).unwrap_or_default();
        for (pod, ready) in &old {
            self.count_pod(pod, -1, -i32::from(*ready));
        }
        for (pod, ready) in &new {
            self.count_pod(pod, 1, i32::from(*ready));
            self.flip_seen(pod, *ready, at, |f| &mut f.slice);
        }
        if !deleted {
            self.slices.insert(name, new);
        }
        let done = self.pods_once_ready == self.goal.pods && self.pods_in_slices == self.goal.pods;
        self.slices_done = if done {
            self.slices_done.or(Some(at))
        } else {
            None
        };
    }

    pub fn endpoints_seen(&mut self, endpoints: &Endpoints, deleted: bool, at: Instant) {
        let name = endpoints.metadata.name.clone().unwrap_or_default();
        self.last_write = Some(at);
        let truncated = is_truncated(endpoints);
        let mut new = HashMap::new();
        if !deleted {
            for subset in endpoints.subsets.iter().flatten() {
                for (addresses, ready) in [
                    (&subset.addresses, true),
                    (&subset.not_ready_addresses, false),
                ] {
                    for address in addresses.iter().flatten() {
                        if let Some(pod) = address.target_ref.as_ref().and_then(|t| t.name.clone())
                        {
                            new.insert(pod, ready);
                        }
                    }
                }
            }
        }
        if let Some((old, truncated)) = self.endpoints.remove(&name) {
            self.truncated -= usize::from(truncated);
            for ready in old.values() {
                if *ready {
                    self.endpoints_ready -= 1;
                } else {
                    self.endpoints_not_ready -= 1;
                }
            }
        }
        for (pod, ready) in &new {
            if *ready {
                self.endpoints_ready += 1;
            } else {
                self.endpoints_not_ready += 1;
            }
            self.flip_seen(pod, *ready, at, |f| &mut f.endpoints);
        }
        if !deleted {
            self.truncated += usize::from(truncated);
            self.endpoints.insert(name, (new, truncated));
        }
        let done = self.endpoints.len() == self.goal.endpoints
            && self.endpoints_ready == self.goal.endpoints_ready
            && self.endpoints_not_ready == 0
            && self.truncated == self.goal.truncated;
        self.endpoints_done = if done {
            self.endpoints_done.or(Some(at))
        } else {
            None
        };
    }

    /// What is still missing, or nothing once both the slices and the Endpoints are done.
    pub fn missing(&self) -> Option<String> {
        (self.slices_done.is_none() || self.endpoints_done.is_none()).then(|| {
            format!(
                "{} of {} pods once and ready in slices ({} in slices); Endpoints: {} of {} objects, {} of {} ready addresses, {} not ready, {} of {} truncated",
                self.pods_once_ready,
                self.goal.pods,
                self.pods_in_slices,
                self.endpoints.len(),
                self.goal.endpoints,
                self.endpoints_ready,
                self.goal.endpoints_ready,
                self.endpoints_not_ready,
                self.truncated,
                self.goal.truncated
            )
        })
    }
}

/// Whether the mirroring controller writes the slice (not the controllers measured).
pub fn is_mirrored(slice: &EndpointSlice) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MIRRORING_MANAGER)
}

/// Whether the Endpoints are annotated `over-capacity: truncated`.
pub fn is_truncated(endpoints: &Endpoints) -> bool {
    endpoints
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OVER_CAPACITY))
        .is_some_and(|v| v == "truncated")
}

/// Watches the namespace's slices and Endpoints into `published`.
pub fn watch_published(
    client: &Client,
    namespace: &str,
    published: &Arc<Mutex<Published>>,
) -> [JoinHandle<()>; 2] {
    [
        watch::<EndpointSlice>(
            Api::namespaced(client.clone(), namespace),
            published.clone(),
            Published::slice_seen,
        ),
        watch::<Endpoints>(
            Api::namespaced(client.clone(), namespace),
            published.clone(),
            Published::endpoints_seen,
        ),
    ]
}

/// Lists then watches `api`, applying every object seen; lists again after a watch error
/// (objects deleted meanwhile are missed, which the scenarios never do).
pub fn watch<K>(
    api: Api<K>,
    published: Arc<Mutex<Published>>,
    apply: fn(&mut Published, &K, bool, Instant),
) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut version = String::new();
        loop {
            if version.is_empty() {
                match api.list(&ListParams::default()).await {
                    Ok(list) => {
                        let now = Instant::now();
                        let mut published = published.lock().unwrap();
                        for item in &list.items {
                            apply(&mut published, item, false, now);
                        }
                        version = list.metadata.resource_version.unwrap_or_default();
                    }
                    Err(error) => {
                        eprintln!("bench: listing {}: {error}; retrying", K::kind(&()));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let params = WatchParams::default().timeout(290);
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(error) => {
                    eprintln!("bench: watching {}: {error}; retrying", K::kind(&()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                let now = Instant::now();
                let (object, deleted) = match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(status) => {
                        eprintln!(
                            "bench: watch of {}: {status:?}; listing again",
                            K::kind(&())
                        );
                        version.clear();
                        break;
                    }
                };
                if let Some(v) = object.meta().resource_version.clone() {
                    version = v;
                }
                apply(&mut published.lock().unwrap(), &object, deleted, now);
            }
        }
    })
}

pub async fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> Option<String>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let Some(seen) = done() else {
            return Ok(());
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
