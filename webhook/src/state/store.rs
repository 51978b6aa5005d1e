//! The allocation store of one webhook replica: an actor that owns this replica's copy of
//! the allocators, plans Service changes on it and persists each batch of changes with one
//! compare-and-swap write per touched range.
//!
//! Replicas never hand out one value twice because a value only reaches a client after the
//! write that reserves it succeeded against the latest resourceVersion. On a conflict the
//! actor reloads every range, gives back what it had persisted for the batch (nobody was
//! told of those values yet) and plans the batch again. Any other failure reloads the state
//! before the next batch, and the clients get an error they can retry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use allocator::{Allocators, ClusterIpAllocator, NodePortAllocator, ServiceSpec, Snapshot, Value};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};

use super::crd::{RangeAllocation, RangeAllocationSpec, RangeKind};

/// How many commands one batch (and so one write per range) takes at most.
const MAX_BATCH: usize = 256;
/// How many times a batch is planned again after write conflicts before its clients get
/// an error.
const MAX_ATTEMPTS: usize = 8;
/// How many recent admissions are remembered to answer a reinvocation alike.
const RECENT_ADMISSIONS: usize = 4096;

/// Why the store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The request itself is refused (range full, value taken, invalid combination).
    #[error(transparent)]
    Allocation(#[from] allocator::Error),
    /// The state could not be read or written; nothing was handed out.
    #[error("could not persist the allocation state: {0}; try again")]
    Persist(String),
    /// The store is shutting down.
    #[error("the allocation store is stopped")]
    Stopped,
}

/// A Service change to allocate for.
#[derive(Clone, Debug)]
pub struct AdmitRequest {
    /// The AdmissionRequest uid: a reinvocation gets the same answer.
    pub uid: String,
    /// The Service before the change (updates).
    pub old: Option<ServiceSpec>,
    /// The Service as requested.
    pub new: ServiceSpec,
    /// Report what would be allocated; persist nothing.
    pub dry_run: bool,
}

enum Command {
    Admit(
        AdmitRequest,
        oneshot::Sender<Result<ServiceSpec, StoreError>>,
    ),
    /// Values no Service holds any more (or that repair found leaked).
    Release(Vec<Value>),
    /// Values Services hold that the state lacks (found by repair).
    Mark(Vec<Value>),
    Snapshot(oneshot::Sender<Allocators>),
}

/// A handle to the allocation store; cheap to clone.
#[derive(Clone)]
pub struct AllocationStore {
    commands: mpsc::Sender<Command>,
}

impl AllocationStore {
    /// Loads (or creates) the `RangeAllocation` objects of `allocators`' ranges and starts
    /// the actor. `allocators` gives the configured ranges; a stored object of another range
    /// is replaced by an empty one (repair refills it from the Services).
    pub async fn start(client: Client, allocators: Allocators) -> Result<Self, StoreError> {
        let mut actor = Actor {
            api: Api::all(client),
            allocators,
            versions: BTreeMap::new(),
            recent: VecDeque::new(),
            deferred_releases: Vec::new(),
            stale: false,
        };
        actor.reload().await?;
        let (commands, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(actor.run(receiver));
        Ok(Self { commands })
    }

    /// Plans and persists the allocations of a Service change; returns the Service with
    /// every allocated value filled in.
    pub async fn admit(&self, request: AdmitRequest) -> Result<ServiceSpec, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Admit(request, reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Releases values no Service holds any more.
    pub async fn release(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Release(values)).await
    }

    /// Marks values as allocated that Services hold but the state lacks.
    pub async fn mark(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Mark(values)).await
    }

    /// A copy of the allocators as this replica knows them.
    pub async fn snapshot(&self) -> Result<Allocators, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot(reply)).await?;
        answer.await.map_err(|_| StoreError::Stopped)
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| StoreError::Stopped)
    }
}

struct Actor {
    api: Api<RangeAllocation>,
    allocators: Allocators,
    versions: BTreeMap<RangeKind, String>,
    recent: VecDeque<(String, ServiceSpec)>,
    deferred_releases: Vec<Value>,
    stale: bool,
}

impl Actor {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.process(batch).await;
        }
        tracing::info!("allocation store stopped");
    }

    fn ranges(&self) -> Vec<RangeKind> {
        let mut ranges: Vec<RangeKind> = self
            .allocators
            .families()
            .into_iter()
            .map(RangeKind::ClusterIps)
            .collect();
        ranges.push(RangeKind::NodePorts);
        ranges
    }

    async fn process(&mut self, batch: Vec<Command>) {
        let mut admits = Vec::new();
        let mut releases = std::mem::take(&mut self.deferred_releases);
        let mut marks = Vec::new();
        for command in batch {
            match command {
                Command::Admit(request, reply) => admits.push((request, reply)),
                Command::Release(values) => releases.extend(values),
                Command::Mark(values) => marks.extend(values),
                Command::Snapshot(reply) => {
                    let _ = reply.send(self.allocators.clone());
                }
            }
        }
        if admits.is_empty() && releases.is_empty() && marks.is_empty() {
            return;
        }

        // Values this batch persisted in an attempt that then hit a conflict: given back
        // before planning again, as no client was told of them.
        let mut persisted_unanswered: Vec<Value> = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            if self.stale
                && let Err(error) = self.reload().await
            {
                tracing::warn!(%error, "allocation state not reloaded");
                break;
            }
            let mut touched: BTreeSet<RangeKind> = BTreeSet::new();
            for value in persisted_unanswered.drain(..) {
                self.allocators.release(value);
                touched.insert(RangeKind::of(value));
            }
            for &value in &releases {
                if self.allocators.release(value) {
                    touched.insert(RangeKind::of(value));
                }
            }
            for &value in &marks {
                if !self.allocators.has(value) && self.allocators.allocate(value).is_ok() {
                    touched.insert(RangeKind::of(value));
                }
            }
            let mut outcomes = Vec::with_capacity(admits.len());
            let mut reserved: Vec<Value> = Vec::new();
            for (request, _) in &admits {
                let outcome = self.plan(request);
                if let Ok((_, values)) = &outcome {
                    reserved.extend(values);
                    touched.extend(values.iter().map(|&v| RangeKind::of(v)));
                }
                outcomes.push(outcome);
            }

            match self.persist(&touched).await {
                Ok(()) => {
                    for ((request, reply), outcome) in admits.into_iter().zip(outcomes) {
                        let answer = match outcome {
                            Ok((filled, _)) => {
                                if !request.dry_run {
                                    self.remember(&request.uid, &filled);
                                }
                                Ok(filled)
                            }
                            Err(error) => Err(StoreError::Allocation(error)),
                        };
                        let _ = reply.send(answer);
                    }
                    return;
                }
                Err(PersistError::Conflict { written }) => {
                    tracing::debug!(
                        attempt,
                        "allocation state changed under this replica; planning the batch again"
                    );
                    persisted_unanswered = reserved
                        .into_iter()
                        .filter(|v| written.contains(&RangeKind::of(*v)))
                        .collect();
                    self.stale = true;
                }
                Err(PersistError::Other(error)) => {
                    tracing::warn!(%error, "allocation state not written");
                    self.stale = true;
                    self.deferred_releases = releases;
                    for (_, reply) in admits {
                        let _ = reply.send(Err(StoreError::Persist(error.clone())));
                    }
                    return;
                }
            }
        }
        self.stale = true;
        self.deferred_releases = releases;
        for (_, reply) in admits {
            let _ = reply.send(Err(StoreError::Persist(
                "the state kept changing under concurrent writers".to_string(),
            )));
        }
    }

    /// Plans one admission on the in-memory allocators, reserving what it allocates.
    /// Returns the filled Service and the values reserved (none for a dry run).
    fn plan(
        &mut self,
        request: &AdmitRequest,
    ) -> Result<(ServiceSpec, Vec<Value>), allocator::Error> {
        if let Some((_, filled)) = self.recent.iter().find(|(uid, _)| uid == &request.uid) {
            return Ok((filled.clone(), Vec::new()));
        }
        let transaction = match &request.old {
            None => self.allocators.create(&request.new, request.dry_run)?,
            Some(old) => self.allocators.update(old, &request.new, request.dry_run)?,
        };
        let filled = transaction.service().clone();
        let reserved = if request.dry_run {
            Vec::new()
        } else {
            transaction.reserved().to_vec()
        };
        // Releases wait until the Service without those values is observed (see release.rs):
        // dropping the transaction keeps the reservations and applies no release.
        drop(transaction);
        Ok((filled, reserved))
    }

    fn remember(&mut self, uid: &str, filled: &ServiceSpec) {
        if self.recent.len() == RECENT_ADMISSIONS {
            self.recent.pop_front();
        }
        self.recent.push_back((uid.to_string(), filled.clone()));
    }

    async fn persist(&mut self, touched: &BTreeSet<RangeKind>) -> Result<(), PersistError> {
        let mut written = BTreeSet::new();
        for &kind in touched {
            let object = self.object(kind);
            match self
                .api
                .replace(kind.object_name(), &PostParams::default(), &object)
                .await
            {
                Ok(stored) => {
                    self.versions
                        .insert(kind, stored.metadata.resource_version.unwrap_or_default());
                    written.insert(kind);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Err(PersistError::Conflict { written });
                }
                Err(error) => return Err(PersistError::Other(error.to_string())),
            }
        }
        Ok(())
    }

    fn snapshot_of(&self, kind: RangeKind) -> (Snapshot, u64, u64) {
        match kind {
            RangeKind::ClusterIps(family) => {
                let ips = self
                    .allocators
                    .cluster_ips_of(family)
                    .expect("configured family");
                (ips.snapshot(), ips.used(), ips.size())
            }
            RangeKind::NodePorts => {
                let ports = self.allocators.node_ports();
                (ports.snapshot(), ports.used(), ports.size())
            }
        }
    }

    fn object(&self, kind: RangeKind) -> RangeAllocation {
        let (snapshot, used, size) = self.snapshot_of(kind);
        RangeAllocation {
            metadata: ObjectMeta {
                name: Some(kind.object_name().to_string()),
                resource_version: self.versions.get(&kind).cloned(),
                ..ObjectMeta::default()
            },
            spec: RangeAllocationSpec {
                range: snapshot.range,
                data: ByteString(snapshot.data),
                used,
                size,
            },
        }
    }

    /// Reads every range's object, creating the missing ones from the in-memory state.
    async fn reload(&mut self) -> Result<(), StoreError> {
        for kind in self.ranges() {
            let name = kind.object_name();
            let stored = match self.api.get_opt(name).await.map_err(persist)? {
                Some(stored) => stored,
                None => {
                    self.versions.remove(&kind);
                    let fresh = self.object(kind);
                    match self.api.create(&PostParams::default(), &fresh).await {
                        Ok(created) => created,
                        Err(kube::Error::Api(status)) if status.code == 409 => {
                            self.api.get(name).await.map_err(persist)?
                        }
                        Err(error) => return Err(persist(error)),
                    }
                }
            };
            self.versions.insert(
                kind,
                stored.metadata.resource_version.clone().unwrap_or_default(),
            );
            let snapshot = Snapshot {
                range: stored.spec.range.clone(),
                data: stored.spec.data.0.clone(),
            };
            if let Err(error) = self.restore(kind, &snapshot) {
                tracing::warn!(object = name, %error, "stored allocation state does not fit the configured range; starting it empty (repair refills it from the Services)");
                self.reset(kind);
            }
        }
        self.stale = false;
        Ok(())
    }

    fn restore(&mut self, kind: RangeKind, snapshot: &Snapshot) -> allocator::Result<()> {
        match kind {
            RangeKind::ClusterIps(family) => self
                .allocators
                .cluster_ips_of_mut(family)
                .expect("configured family")
                .restore(snapshot),
            RangeKind::NodePorts => self.allocators.node_ports_mut().restore(snapshot),
        }
    }

    fn reset(&mut self, kind: RangeKind) {
        match kind {
            RangeKind::ClusterIps(family) => {
                let ips = self
                    .allocators
                    .cluster_ips_of_mut(family)
                    .expect("configured family");
                *ips = ClusterIpAllocator::new(ips.range());
            }
            RangeKind::NodePorts => {
                let ports = self.allocators.node_ports_mut();
                *ports = NodePortAllocator::new(ports.range());
            }
        }
    }
}

enum PersistError {
    /// A range changed since it was read; `written` were written before that.
    Conflict {
        written: BTreeSet<RangeKind>,
    },
    Other(String),
}

fn persist(error: kube::Error) -> StoreError {
    StoreError::Persist(error.to_string())
}
