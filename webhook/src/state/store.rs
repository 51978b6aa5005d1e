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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use allocator::{Allocators, ServiceSpec, Value};
use kube::{Api, Client};
use tokio::sync::{Notify, mpsc, oneshot};

use super::batch::{AdmitRequest, Outcome, Recent, answered, plan_batch};
use super::crd::{RangeAllocation, RangeKind, Reservation};
use super::error::StoreError;
use super::unconfirmed::{Expired, Unconfirmed, UnconfirmedConfig};
use super::write::{conflict_backoff, random};
use persist::{PersistError, Rebased};

/// How many commands one batch (and so one write per range) takes at most.
const MAX_BATCH: usize = 256;
/// How many times a batch is written (replayed or planned again after each conflict)
/// before its clients get an error.
const MAX_ATTEMPTS: u32 = 16;
/// How a replica pools values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Cluster IPs kept ready per range (node ports: a quarter of it); 0 turns pools off
    /// (every allocation is then written before its answer).
    pub size: usize,
    /// How long a reservation entry lives without renewal: the same on every replica.
    pub lifetime: Duration,
}

impl PoolConfig {
    /// No pools.
    pub const OFF: PoolConfig = PoolConfig {
        size: 0,
        lifetime: Duration::from_secs(60),
    };

    /// How many values the pool of `kind` holds when full. Node ports are fewer and
    /// requested by number more often than cluster IPs: their pools are a quarter as large.
    pub fn size_of(&self, kind: RangeKind) -> usize {
        match kind {
            RangeKind::ClusterIps(_) => self.size,
            RangeKind::NodePorts => self.size.div_ceil(4),
        }
    }
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
    /// The stored object of `kind` was seen at `version`.
    Observed {
        kind: RangeKind,
        version: String,
    },
    /// Drops the reservation entries of replicas gone for a pool lifetime and frees what
    /// they list that no Service holds (each entry's `values`), in the same write.
    Reclaim(Vec<DeadEntry>),
    /// This replica's unconfirmed values that no Service holds, given back.
    GiveBack(Vec<Value>),
}

/// This replica's allocation state, for repair.
#[derive(Clone, Debug)]
pub struct StateView {
    /// The allocators as this replica knows them.
    pub allocators: Allocators,
    /// Values in the pools of live replicas (this one's included) and this replica's
    /// unconfirmed values: allocated, held by no Service, yet no leak.
    pub pooled: BTreeSet<Value>,
    /// The reservation entries of other replicas not renewed for a pool lifetime: those
    /// replicas are gone, and what they listed is theirs no more.
    pub dead: Vec<DeadEntry>,
}

/// The reservation entry of a replica gone for a pool lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadEntry {
    /// The range.
    pub kind: RangeKind,
    /// The replica's name.
    pub holder: String,
    /// The allocated values it lists: its pool, and what it gave out that no Service may
    /// hold.
    pub values: Vec<Value>,
}

/// The pool of one range, for the refiller.
#[derive(Clone, Debug, Default)]
pub struct PoolView {
    /// The values in the pool, oldest first.
    pub values: Vec<Value>,
    /// This replica's unconfirmed values of the range: listed in its entry with the pool,
    /// so that if the replica dies, whoever sees its entry dead frees those no Service holds.
    pub unconfirmed: Vec<Value>,
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
    /// `pool` sets the pools, which the refiller ([`super::pool::spawn_refiller`]) fills
    /// in this replica's reservation entries, named `holder`; the store's own writes renew
    /// them too.
    /// Values given at admission whose wait for their Service ran out are sent to
    /// `expired`, whose reader gives back those no Service holds.
    pub async fn start(
        client: Client,
        allocators: Allocators,
        pool: PoolConfig,
        holder: String,
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
            holder,
            pool_usable_until: BTreeMap::new(),
            refill: Arc::clone(&refill),
            recent: Recent::default(),
            deferred_releases: Vec::new(),
            stale: false,
            outdated: BTreeSet::new(),
            dropping: BTreeSet::new(),
            reclaiming: BTreeMap::new(),
            giving_back: BTreeSet::new(),
            had_entry: BTreeSet::new(),
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

    /// Drops the entries of dead replicas (see [`StateView::dead`]) and frees the values
    /// each lists in `values` (those no Service holds), in one write per range. A value is
    /// freed only if the copy written on still lists it in that entry: a value is unlisted
    /// in the write that frees it, so it is never freed twice.
    pub async fn reclaim(&self, entries: Vec<DeadEntry>) -> Result<(), StoreError> {
        self.send(Command::Reclaim(entries)).await
    }

    /// Gives back this replica's unconfirmed values that no Service holds. Where this
    /// replica's entry listed them and is gone from the stored object (the releasing replica
    /// took this replica for dead and reclaimed it), they are left alone: they may have been
    /// freed and given out again since.
    pub async fn give_back(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::GiveBack(values)).await
    }

    /// Frees the values of this replica's pools, as it stops: no other replica would hand
    /// them out before repair freed them. Returns how many were freed.
    pub async fn return_pools(&self) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ReturnPools(reply)).await?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// The stored object of range `kind` was seen at `version` (by a watch): when this
    /// replica's copy is of another version, a refusal that a fresher copy could turn into
    /// an allocation (a value taken, a range full) is only given after reading it again.
    pub async fn observed(&self, kind: RangeKind, version: String) -> Result<(), StoreError> {
        self.send(Command::Observed { kind, version }).await
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
    /// The name of this replica's reservation entries.
    holder: String,
    /// Per range, until when its pool may be handed out: half the entry's lifetime after
    /// the refiller last renewed it, so that no other replica can deem it dead meanwhile.
    pool_usable_until: BTreeMap<RangeKind, Instant>,
    refill: Arc<Notify>,
    recent: Recent,
    deferred_releases: Vec<Value>,
    stale: bool,
    /// Ranges seen stored at another version than this copy's: another replica wrote them.
    outdated: BTreeSet<RangeKind>,
    /// Entries of dead replicas to drop at the next write of their range.
    dropping: BTreeSet<(RangeKind, String)>,
    /// Values to free because a dead replica's entry lists them, with that replica.
    reclaiming: BTreeMap<Value, String>,
    /// Values to free that this replica gave out unconfirmed.
    giving_back: BTreeSet<Value>,
    /// Ranges where this replica's own entry was seen stored.
    had_entry: BTreeSet<RangeKind>,
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
                // The last command on a value wins: a Service created and deleted at once
                // sends a mark then a release, which the batch would otherwise apply the
                // other way round (releases first), leaving the value held by no Service.
                Command::Release(values) => {
                    supersede(&mut marks, &values);
                    releases.extend(values);
                }
                Command::Mark(values) => {
                    self.unconfirmed.confirm(&values);
                    for value in supersede(&mut releases, &values) {
                        self.reclaiming.remove(&value);
                        self.giving_back.remove(&value);
                    }
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
                Command::Reclaim(entries) => {
                    for entry in entries {
                        supersede(&mut marks, &entry.values);
                        for &value in &entry.values {
                            self.reclaiming.insert(value, entry.holder.clone());
                        }
                        releases.extend(entry.values);
                        self.dropping.insert((entry.kind, entry.holder));
                    }
                }
                Command::GiveBack(values) => {
                    supersede(&mut marks, &values);
                    self.giving_back.extend(values.iter().copied());
                    releases.extend(values);
                }
                Command::Observed { kind, version } => {
                    if self.versions.get(&kind) != Some(&version) {
                        self.outdated.insert(kind);
                    }
                }
            }
        }
        if !(admits.is_empty()
            && releases.is_empty()
            && marks.is_empty()
            && self.dropping.is_empty())
        {
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
        mut releases: Vec<Value>,
        marks: Vec<Value>,
    ) {
        let (requests, replies): (Vec<AdmitRequest>, Vec<_>) = admits.into_iter().unzip();
        // Values this batch persisted in an attempt that then had to be planned again:
        // given back first, as no client was told of them.
        let mut persisted_unanswered: Vec<Value> = Vec::new();
        // Whether a refusal was already checked on a fresh copy in this batch.
        let mut refusals_checked = false;
        let mut attempts = 0;
        let failure = loop {
            if attempts >= MAX_ATTEMPTS {
                break "the state kept changing under concurrent writers".to_string();
            }
            attempts += 1;
            if self.stale
                && let Err(error) = self.reload().await
            {
                // Unreadable for now (the apiserver restarting, say): read again within
                // this batch's attempts before failing its admissions.
                if matches!(error, StoreError::Persist(_)) && attempts < MAX_ATTEMPTS {
                    tracing::debug!(%error, attempts, "allocation state not reloaded; trying again");
                    tokio::time::sleep(conflict_backoff(attempts, random())).await;
                    continue;
                }
                tracing::warn!(%error, "allocation state not reloaded");
                break error.to_string();
            }
            let given_back = std::mem::take(&mut persisted_unanswered);
            // What this copy shows must not be freed (see `may_free`) is left to repair.
            let (freeable, kept): (Vec<Value>, Vec<Value>) =
                releases.iter().partition(|&&value| self.may_free(value));
            for value in kept {
                self.reclaiming.remove(&value);
                self.giving_back.remove(&value);
            }
            releases = freeable;
            let mut planned = plan_batch(
                &mut self.allocators,
                &self.recent,
                &self.unconfirmed,
                &requests,
                &releases,
                &marks,
                given_back.clone(),
            );
            // Dropping an entry is a write of its range, even with no value to free.
            for &(kind, _) in &self.dropping {
                planned.deltas.entry(kind).or_default();
                planned.pending.insert(kind);
            }
            // Another replica may have freed what this copy refuses for: read it again
            // before refusing (once per batch, and only when a watch saw a newer copy).
            if !refusals_checked && planned.refuses_on_state() && !self.outdated.is_empty() {
                refusals_checked = true;
                tracing::debug!(
                    "a refusal depends on ranges another replica changed; reading them again"
                );
                planned.abandon(&mut self.allocators);
                persisted_unanswered = given_back;
                self.stale = true;
                continue;
            }
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
                    for value in &releases {
                        self.reclaiming.remove(value);
                        self.giving_back.remove(value);
                    }
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
        releases.extend(persisted_unanswered);
        self.fail(replies, releases, failure);
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

    /// Whether `value` may be freed on this copy: a value reclaimed from a dead replica only
    /// while that replica's entry still lists it; a value this replica gives back only while
    /// its own entry is stored, if it ever was (otherwise the entry was reclaimed, and with
    /// it perhaps this value). Any other value may.
    pub(super) fn may_free(&self, value: Value) -> bool {
        let kind = RangeKind::of(value);
        let entries = self.reservations.get(&kind);
        if let Some(holder) = self.reclaiming.get(&value) {
            let listed = entries
                .and_then(|entries| entries.get(holder))
                .is_some_and(|entry| entry.values(kind).any(|listed| listed == value));
            if !listed {
                tracing::debug!(%value, %holder, "no longer listed by the dead replica's entry; not freed");
            }
            return listed;
        }
        if self.giving_back.contains(&value)
            && self.had_entry.contains(&kind)
            && !entries.is_some_and(|entries| entries.contains_key(&self.holder))
        {
            tracing::warn!(%value, "this replica's entry was reclaimed as dead; its unconfirmed value is left to repair");
            return false;
        }
        true
    }

    fn view(&self) -> StateView {
        let now = SystemTime::now();
        let mut pooled: BTreeSet<Value> = self.allocators.pooled().into_iter().collect();
        pooled.extend(self.unconfirmed.values());
        let mut dead = Vec::new();
        for (&kind, entries) in &self.reservations {
            for (holder, entry) in entries {
                if entry.is_live(now, self.pool.lifetime) {
                    pooled.extend(entry.values(kind));
                } else if *holder != self.holder {
                    dead.push(DeadEntry {
                        kind,
                        holder: holder.clone(),
                        values: entry
                            .values(kind)
                            .filter(|&value| self.allocators.has(value))
                            .collect(),
                    });
                }
            }
        }
        StateView {
            allocators: self.allocators.clone(),
            pooled,
            dead,
        }
    }

    fn pools(&self) -> BTreeMap<RangeKind, PoolView> {
        let mut pools: BTreeMap<RangeKind, PoolView> = self
            .ranges()
            .into_iter()
            .map(|kind| {
                let view = PoolView {
                    values: Vec::new(),
                    unconfirmed: Vec::new(),
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
        for value in self.unconfirmed.values() {
            if let Some(pool) = pools.get_mut(&RangeKind::of(value)) {
                pool.unconfirmed.push(value);
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

    /// Whether the pool of `kind` may still be handed out at `now`.
    fn pool_usable(&self, kind: RangeKind, now: Instant) -> bool {
        self.pool_usable_until
            .get(&kind)
            .is_some_and(|&until| until > now)
    }

    /// Whether the pool of `kind` has values and may be handed out at `now`.
    fn pool_in_use(&self, kind: RangeKind, now: Instant) -> bool {
        self.pool_usable(kind, now)
            && self
                .allocators
                .pooled()
                .iter()
                .any(|&value| RangeKind::of(value) == kind)
    }

    /// Empties the pools whose entry was not renewed in time: another replica may deem it
    /// dead soon and the releasing replica may free its values. They stay allocated (that
    /// replica frees them once the entry is dead).
    fn expire_pools(&mut self) {
        let now = Instant::now();
        for kind in self.ranges() {
            if self.pool_usable(kind, now) {
                continue;
            }
            let drained = self.allocators.drain_pool_of(kind);
            if drained > 0 {
                tracing::warn!(
                    range = kind.name(),
                    values = drained,
                    "pool not renewed in time; its values are left to the releasing replica"
                );
            }
        }
    }
}

/// Sleeps until `deadline`; forever without one.
/// Removes from `earlier` the values a later command names; returns those removed.
fn supersede(earlier: &mut Vec<Value>, later: &[Value]) -> Vec<Value> {
    if earlier.is_empty() {
        return Vec::new();
    }
    let later: HashSet<Value> = later.iter().copied().collect();
    let (removed, kept) = std::mem::take(earlier)
        .into_iter()
        .partition(|value| later.contains(value));
    *earlier = kept;
    removed
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

mod persist;
#[cfg(test)]
mod tests;
