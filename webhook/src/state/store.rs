//! The allocation store of one webhook replica: an actor that owns this replica's copy of
//! the allocators, plans Service changes on it and persists each batch of changes with one
//! compare-and-swap write per touched range.
//!
//! Replicas never hand out one value twice because a value only reaches a client after the
//! write that reserves it succeeded against the latest resourceVersion. On a conflict the
//! actor waits a random moment, reads a fresh copy of each range it has still to write and
//! replays the batch's changes on it: one read and one write per range, so that a replica
//! losing races to a busy one still gets through. Only when a value the batch reserved was
//! taken meanwhile does it reload every range, give back what it had persisted for the
//! batch (nobody was told of those values yet) and plan the batch again. Any other failure
//! reloads the state before the next batch, and the clients get an error they can retry.
//!
//! With pools on (see [`super::pool`]), a replica also keeps a few values of each range
//! persisted ahead of need, listed in its reservation entry: an admission whose values all
//! come from the pool is answered without a write, which is what keeps the handling time
//! of an admission well below one apiserver write.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use allocator::{Allocators, ServiceSpec, Value};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{Notify, mpsc, oneshot};

use super::batch::{Outcome, Planned, Recent, answered, plan_batch, replay};
use super::crd::{RangeAllocation, RangeAllocationSpec, RangeKind, Reservation};
use super::pool::PoolConfig;
use super::unconfirmed::{Expired, ServiceName, Unconfirmed, UnconfirmedConfig};

/// How many commands one batch (and so one write per range) takes at most.
const MAX_BATCH: usize = 256;
/// How many times a batch is written (replayed or planned again after each conflict)
/// before its clients get an error.
const MAX_ATTEMPTS: u32 = 16;
/// The first cap of the wait before writing again after a conflict; it doubles with each
/// attempt up to [`CONFLICT_BACKOFF_MAX`]. The waits of all attempts add up to at most
/// about 0.7 s, well inside the webhook's timeout.
const CONFLICT_BACKOFF_BASE: Duration = Duration::from_millis(1);
/// See [`CONFLICT_BACKOFF_BASE`].
const CONFLICT_BACKOFF_MAX: Duration = Duration::from_millis(64);

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
    /// The namespace holds as many values not yet confirmed by a stored Service as one
    /// replica gives a namespace.
    #[error(
        "namespace {namespace:?} already holds {limit} allocated values whose Services have not been seen created yet (the limit per namespace); retry once earlier requests have completed or timed out"
    )]
    TooManyUnconfirmed {
        /// The namespace.
        namespace: String,
        /// The limit.
        limit: usize,
    },
    /// The stored state belongs to other ranges than this replica's.
    #[error(
        "the stored allocation state {object} is for range {stored}, but this replica is configured with {configured}: start every replica with the same ranges (and kube-apiserver's); to change the ranges on purpose, delete RangeAllocation {object} and repair rebuilds it from the Services"
    )]
    RangeMismatch {
        /// The RangeAllocation object.
        object: &'static str,
        /// Its range.
        stored: String,
        /// This replica's.
        configured: String,
    },
}

/// A Service change to allocate for.
#[derive(Clone, Debug)]
pub struct AdmitRequest {
    /// The AdmissionRequest uid: a reinvocation gets the same answer.
    pub uid: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name (or, for a create with `generateName`, its prefix).
    pub service: ServiceName,
    /// The Service before the change (updates).
    pub old: Option<ServiceSpec>,
    /// The Service as requested.
    pub new: ServiceSpec,
    /// Report what would be allocated; persist nothing.
    pub dry_run: bool,
}

type Reply = oneshot::Sender<Result<ServiceSpec, StoreError>>;
type PendingAdmit = (AdmitRequest, Reply);

enum Command {
    /// Boxed: two Service specs would make every command as large.
    Admit(Box<PendingAdmit>),
    /// Values no Service holds any more (or that repair found leaked).
    Release(Vec<Value>),
    /// Values Services hold that the state lacks (found by repair); they are confirmed too.
    Mark(Vec<Value>),
    /// Values a Service was seen holding.
    Confirm(Vec<Value>),
    Snapshot(oneshot::Sender<StateView>),
    /// The refiller persisted `values` in this replica's pool of `kind`, in an entry it
    /// renewed at `renewed` (with no values: it only renewed the entry).
    Pooled {
        kind: RangeKind,
        values: Vec<Value>,
        renewed: Instant,
    },
    Pools(oneshot::Sender<BTreeMap<RangeKind, PoolView>>),
    /// Frees every pooled value (on shutdown); answers how many were freed.
    ReturnPools(oneshot::Sender<Result<usize, StoreError>>),
}

/// This replica's allocation state, for repair.
#[derive(Clone, Debug)]
pub struct StateView {
    /// The allocators as this replica knows them.
    pub allocators: Allocators,
    /// Values in the pools of live replicas (this one's included) and this replica's
    /// unconfirmed values: allocated, held by no Service, yet no leak.
    pub pooled: BTreeSet<Value>,
}

/// The pool of one range, for the refiller.
#[derive(Clone, Debug, Default)]
pub struct PoolView {
    /// The values in the pool, oldest first.
    pub values: Vec<Value>,
    /// Until when the pool may be handed out, unless its entry is renewed.
    pub usable_until: Option<Instant>,
}

/// A handle to the allocation store; cheap to clone.
#[derive(Clone)]
pub struct AllocationStore {
    commands: mpsc::Sender<Command>,
    refill: Arc<Notify>,
}

impl AllocationStore {
    /// Loads (or creates) the `RangeAllocation` objects of `allocators`' ranges and starts
    /// the actor. `allocators` gives the configured ranges; a stored object of another range
    /// is an error ([`StoreError::RangeMismatch`]): it is never reset.
    /// `pool` sets the pools, which the refiller ([`super::pool::spawn_refiller`]) fills.
    /// Values given at admission whose wait for their Service ran out are sent to
    /// `expired`, whose reader gives back those no Service holds.
    pub async fn start(
        client: Client,
        allocators: Allocators,
        pool: PoolConfig,
        unconfirmed: UnconfirmedConfig,
        expired: mpsc::UnboundedSender<Vec<Expired>>,
    ) -> Result<Self, StoreError> {
        let refill = Arc::new(Notify::new());
        let mut actor = Actor {
            api: Api::all(client),
            allocators,
            versions: BTreeMap::new(),
            reservations: BTreeMap::new(),
            pool,
            pool_usable_until: BTreeMap::new(),
            refill: Arc::clone(&refill),
            recent: Recent::default(),
            deferred_releases: Vec::new(),
            stale: false,
            unconfirmed: Unconfirmed::new(unconfirmed),
            expired,
        };
        actor.reload().await?;
        let (commands, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(actor.run(receiver));
        Ok(Self { commands, refill })
    }

    /// Whether the store's actor has stopped: nothing will be answered any more.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// Plans and persists the allocations of a Service change; returns the Service with
    /// every allocated value filled in.
    pub async fn admit(&self, request: AdmitRequest) -> Result<ServiceSpec, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Admit(Box::new((request, reply))))
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

    /// A Service was seen holding `values`: those given at admission are confirmed.
    pub async fn confirm(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Confirm(values)).await
    }

    /// A copy of the allocation state as this replica knows it.
    pub async fn snapshot(&self) -> Result<StateView, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot(reply)).await?;
        answer.await.map_err(|_| StoreError::Stopped)
    }

    /// The pools as they are now.
    pub(super) async fn pools(&self) -> Result<BTreeMap<RangeKind, PoolView>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Pools(reply)).await?;
        answer.await.map_err(|_| StoreError::Stopped)
    }

    /// Hands `values`, persisted in this replica's entry renewed at `renewed`, to the pool
    /// of `kind`.
    pub(super) async fn pooled(
        &self,
        kind: RangeKind,
        values: Vec<Value>,
        renewed: Instant,
    ) -> Result<(), StoreError> {
        self.send(Command::Pooled {
            kind,
            values,
            renewed,
        })
        .await
    }

    /// Frees the values of this replica's pools, as it stops: no other replica would hand
    /// them out before repair freed them. Returns how many were freed.
    pub async fn return_pools(&self) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ReturnPools(reply)).await?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Resolves when a pool ran low.
    pub(super) async fn pool_low(&self) {
        self.refill.notified().await;
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
    /// The resourceVersion of the object each range was last read or written as.
    versions: BTreeMap<RangeKind, String>,
    /// The reservation entries of that same object, written back unchanged.
    reservations: BTreeMap<RangeKind, BTreeMap<String, Reservation>>,
    pool: PoolConfig,
    /// Per range, until when its pool may be handed out: half the entry's lifetime after
    /// the refiller last renewed it, so that no other replica can deem it dead meanwhile.
    pool_usable_until: BTreeMap<RangeKind, Instant>,
    refill: Arc<Notify>,
    recent: Recent,
    deferred_releases: Vec<Value>,
    stale: bool,
    unconfirmed: Unconfirmed,
    expired: mpsc::UnboundedSender<Vec<Expired>>,
}

impl Actor {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        loop {
            let next_deadline = self.unconfirmed.next_deadline();
            let first = tokio::select! {
                command = receiver.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                () = sleep_until(next_deadline) => {
                    self.expire_unconfirmed();
                    continue;
                }
            };
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

    /// Hands the values whose wait for their Service ran out to the reader of `expired`.
    fn expire_unconfirmed(&mut self) {
        let expired = self.unconfirmed.expire(Instant::now());
        if !expired.is_empty() {
            let _ = self.expired.send(expired);
        }
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
        let mut returns = Vec::new();
        for command in batch {
            match command {
                Command::Admit(pending) => admits.push(*pending),
                Command::Release(values) => releases.extend(values),
                Command::Mark(values) => {
                    self.unconfirmed.confirm(&values);
                    marks.extend(values);
                }
                Command::Confirm(values) => self.unconfirmed.confirm(&values),
                Command::Snapshot(reply) => {
                    let _ = reply.send(self.view());
                }
                Command::Pooled {
                    kind,
                    values,
                    renewed,
                } => self.add_to_pool(kind, values, renewed),
                Command::Pools(reply) => {
                    let _ = reply.send(self.pools());
                }
                Command::ReturnPools(reply) => returns.push(reply),
            }
        }
        if !(admits.is_empty() && releases.is_empty() && marks.is_empty()) {
            self.expire_pools();
            self.process_changes(admits, releases, marks).await;
        }
        if !returns.is_empty() {
            let pooled = self.allocators.pooled();
            self.pool_usable_until.clear();
            self.allocators.drain_pools();
            let count = pooled.len();
            self.process_changes(Vec::new(), pooled, Vec::new()).await;
            let outcome = if self.deferred_releases.is_empty() {
                Ok(count)
            } else {
                Err(StoreError::Persist(
                    "the pooled values could not be freed; repair will".to_string(),
                ))
            };
            for reply in returns {
                let _ = reply.send(outcome.clone());
            }
            return;
        }
        let low = self
            .pools()
            .iter()
            .any(|(&kind, pool)| pool.values.len() <= self.pool.size_of(kind) / 2);
        if self.pool.size > 0 && low {
            self.refill.notify_one();
        }
    }

    async fn process_changes(
        &mut self,
        admits: Vec<PendingAdmit>,
        releases: Vec<Value>,
        marks: Vec<Value>,
    ) {
        let (requests, replies): (Vec<AdmitRequest>, Vec<_>) = admits.into_iter().unzip();
        // Values this batch persisted in an attempt that then had to be planned again:
        // given back first, as no client was told of them.
        let mut persisted_unanswered: Vec<Value> = Vec::new();
        let mut attempts = 0;
        let failure = loop {
            if attempts >= MAX_ATTEMPTS {
                break "the state kept changing under concurrent writers".to_string();
            }
            attempts += 1;
            if self.stale
                && let Err(error) = self.reload().await
            {
                tracing::warn!(%error, "allocation state not reloaded");
                break error.to_string();
            }
            let given_back = std::mem::take(&mut persisted_unanswered);
            let mut planned = plan_batch(
                &mut self.allocators,
                &self.recent,
                &self.unconfirmed,
                &requests,
                &releases,
                &marks,
                given_back.clone(),
            );
            let rebased = match self.persist(&planned.pending).await {
                Ok(()) => Ok(Rebased::Written),
                Err(PersistError::Conflict { written }) => {
                    planned.pending.retain(|kind| !written.contains(kind));
                    self.write_rebased(&mut planned, &mut attempts).await
                }
                Err(PersistError::Other(error)) => Err(error),
            };
            match rebased {
                Ok(Rebased::Written) => {
                    self.answer(requests, replies, planned.outcomes);
                    return;
                }
                Ok(Rebased::Replan) => {
                    tracing::debug!(
                        attempts,
                        "a value of this batch was taken meanwhile; planning the batch again"
                    );
                    persisted_unanswered = planned.unanswered(given_back);
                    planned.abandon(&mut self.allocators);
                    self.stale = true;
                }
                Ok(Rebased::OutOfAttempts) => {
                    persisted_unanswered = planned.unanswered(given_back);
                    planned.abandon(&mut self.allocators);
                    break "the state kept changing under concurrent writers".to_string();
                }
                Err(error) => {
                    tracing::warn!(%error, "allocation state not written");
                    planned.abandon(&mut self.allocators);
                    break error;
                }
            }
        };
        // What earlier attempts persisted for answers never sent is freed with the releases.
        let mut releases = releases;
        releases.extend(persisted_unanswered);
        self.fail(replies, releases, failure);
    }

    /// After a write conflict: writes each range `planned` has still to write after a read
    /// of a fresh copy on which the batch's changes are replayed, so that the window another
    /// replica can write in is one read and one write; a random wait precedes each try that
    /// follows a conflict. Counts each write in `attempts`.
    async fn write_rebased(
        &mut self,
        planned: &mut Planned,
        attempts: &mut u32,
    ) -> Result<Rebased, String> {
        let mut conflicted = true;
        while let Some(&kind) = planned.pending.first() {
            if *attempts >= MAX_ATTEMPTS {
                return Ok(Rebased::OutOfAttempts);
            }
            if conflicted {
                let backoff = conflict_backoff(*attempts, random());
                tracing::debug!(
                    attempts,
                    ?backoff,
                    range = kind.name(),
                    "allocation state changed under this replica; replaying the batch on a fresh copy"
                );
                // Replicas busy at once would otherwise retry in lockstep and keep
                // overwriting each other until every attempt is spent.
                tokio::time::sleep(backoff).await;
            }
            *attempts += 1;
            let stored = match self.api.get_opt(kind.name()).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Ok(Rebased::Replan),
                Err(error) => return Err(error.to_string()),
            };
            if self
                .allocators
                .restore(kind, &stored.spec.snapshot())
                .is_err()
            {
                return Ok(Rebased::Replan);
            }
            self.learn(kind, stored);
            if !replay(&mut self.allocators, &planned.deltas[&kind]) {
                return Ok(Rebased::Replan);
            }
            match self.persist(&BTreeSet::from([kind])).await {
                Ok(()) => {
                    planned.pending.remove(&kind);
                    conflicted = false;
                }
                Err(PersistError::Conflict { .. }) => conflicted = true,
                Err(PersistError::Other(error)) => return Err(error),
            }
        }
        Ok(Rebased::Written)
    }

    /// Answers the admissions of a persisted batch; what they were given waits for their
    /// Services to be seen.
    fn answer(&mut self, requests: Vec<AdmitRequest>, replies: Vec<Reply>, outcomes: Vec<Outcome>) {
        let now = Instant::now();
        for ((request, reply), outcome) in requests.into_iter().zip(replies).zip(outcomes) {
            let answer = answered(
                &request,
                outcome,
                &mut self.recent,
                &mut self.unconfirmed,
                now,
            );
            let _ = reply.send(answer);
        }
    }

    /// Answers every admission of a batch that could not be persisted with an error the
    /// client can retry; its releases wait for the next batch.
    fn fail(&mut self, replies: Vec<Reply>, releases: Vec<Value>, error: String) {
        self.stale = true;
        self.deferred_releases = releases;
        for reply in replies {
            let _ = reply.send(Err(StoreError::Persist(error.clone())));
        }
    }

    async fn persist(&mut self, touched: &BTreeSet<RangeKind>) -> Result<(), PersistError> {
        let mut written = BTreeSet::new();
        for &kind in touched {
            let object = self.object(kind);
            match self
                .api
                .replace(kind.name(), &PostParams::default(), &object)
                .await
            {
                Ok(stored) => {
                    self.learn(kind, stored);
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

    fn object(&self, kind: RangeKind) -> RangeAllocation {
        let snapshot = self
            .allocators
            .snapshot_of(kind)
            .expect("a configured range");
        let usage = self.allocators.usage_of(kind).expect("a configured range");
        RangeAllocation {
            metadata: ObjectMeta {
                name: Some(kind.name().to_string()),
                resource_version: self.versions.get(&kind).cloned(),
                ..ObjectMeta::default()
            },
            spec: RangeAllocationSpec {
                range: snapshot.range,
                data: ByteString(snapshot.data),
                used: usage.used,
                size: usage.size,
                reservations: self.reservations.get(&kind).cloned().unwrap_or_default(),
            },
        }
    }

    /// Takes the resourceVersion and reservation entries of `stored`, the object `kind`
    /// was just read or written as.
    fn learn(&mut self, kind: RangeKind, stored: RangeAllocation) {
        self.versions
            .insert(kind, stored.metadata.resource_version.unwrap_or_default());
        self.reservations.insert(kind, stored.spec.reservations);
    }

    fn view(&self) -> StateView {
        let now = SystemTime::now();
        let mut pooled: BTreeSet<Value> = self.allocators.pooled().into_iter().collect();
        pooled.extend(self.unconfirmed.values());
        for (&kind, entries) in &self.reservations {
            for entry in entries.values() {
                if entry.is_live(now, self.pool.lifetime) {
                    pooled.extend(entry.values(kind));
                }
            }
        }
        StateView {
            allocators: self.allocators.clone(),
            pooled,
        }
    }

    fn pools(&self) -> BTreeMap<RangeKind, PoolView> {
        let mut pools: BTreeMap<RangeKind, PoolView> = self
            .ranges()
            .into_iter()
            .map(|kind| {
                let view = PoolView {
                    values: Vec::new(),
                    usable_until: self.pool_usable_until.get(&kind).copied(),
                };
                (kind, view)
            })
            .collect();
        for value in self.allocators.pooled() {
            if let Some(pool) = pools.get_mut(&RangeKind::of(value)) {
                pool.values.push(value);
            }
        }
        pools
    }

    /// Puts `values`, persisted by the refiller, in the pool of `kind`. They are allocated
    /// in the stored object; this copy may not know it yet (its next write of the range
    /// then conflicts and replays on the stored object).
    fn add_to_pool(&mut self, kind: RangeKind, values: Vec<Value>, renewed: Instant) {
        for value in values {
            if !self.allocators.has(value) {
                let _ = self.allocators.allocate(value);
            }
            self.allocators.add_to_pool(value);
        }
        self.pool_usable_until
            .insert(kind, renewed + self.pool.lifetime / 2);
    }

    /// Empties the pools whose entry was not renewed in time: another replica may deem it
    /// dead soon and repair may free its values. They stay allocated (repair frees them).
    fn expire_pools(&mut self) {
        let now = Instant::now();
        for kind in self.ranges() {
            let usable = self
                .pool_usable_until
                .get(&kind)
                .is_some_and(|&until| until > now);
            if usable {
                continue;
            }
            let drained = self.allocators.drain_pool_of(kind);
            if drained > 0 {
                tracing::warn!(
                    range = kind.name(),
                    values = drained,
                    "pool not renewed in time; its values are left to repair"
                );
            }
        }
    }

    /// Reads every range's object, creating the missing ones from the in-memory state.
    async fn reload(&mut self) -> Result<(), StoreError> {
        for kind in self.ranges() {
            let name = kind.name();
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
            if self
                .allocators
                .restore(kind, &stored.spec.snapshot())
                .is_err()
            {
                return Err(StoreError::RangeMismatch {
                    object: name,
                    stored: stored.spec.range,
                    configured: self.object(kind).spec.range,
                });
            }
            self.learn(kind, stored);
        }
        self.stale = false;
        Ok(())
    }
}

/// How writing a batch after a conflict ended.
enum Rebased {
    /// Every range is written.
    Written,
    /// A value the batch reserved was taken meanwhile: plan it again.
    Replan,
    /// Every attempt is spent.
    OutOfAttempts,
}

/// The wait before attempt `attempt + 1` after a conflict: uniform in `[0, cap]` ("full
/// jitter"), the cap doubling from [`CONFLICT_BACKOFF_BASE`] up to [`CONFLICT_BACKOFF_MAX`].
/// `random` is any uniformly random number.
fn conflict_backoff(attempt: u32, random: u64) -> Duration {
    let cap = CONFLICT_BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(CONFLICT_BACKOFF_MAX);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(random % (cap_nanos + 1))
}

/// A random number from the standard library's per-instance random hasher keys.
fn random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u8)
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

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_backoff_is_jittered_under_a_doubling_cap() {
        assert_eq!(conflict_backoff(1, 0), Duration::ZERO);
        let mut total = Duration::ZERO;
        for attempt in 1..MAX_ATTEMPTS {
            let cap = (CONFLICT_BACKOFF_BASE * 2u32.pow(attempt)).min(CONFLICT_BACKOFF_MAX);
            for _ in 0..64 {
                assert!(conflict_backoff(attempt, random()) <= cap);
            }
            let at_cap = conflict_backoff(attempt, u64::try_from(cap.as_nanos()).unwrap());
            assert_eq!(at_cap, cap);
            total += at_cap;
        }
        assert_eq!(total, Duration::from_millis(702));
    }

    #[test]
    fn random_numbers_differ() {
        let draws: BTreeSet<u64> = (0..32).map(|_| random()).collect();
        assert!(draws.len() > 30);
    }
}
