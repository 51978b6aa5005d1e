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
use std::time::{Duration, Instant};

use allocator::{Allocators, IpFamily, IpRange, ServiceSpec, Value};
use kube::{Api, Client};
use tokio::sync::{Notify, mpsc, oneshot};

use super::batch::{AdmitRequest, Recent};
use super::crd::{RangeAllocation, RangeKind, Reservation};
use super::error::StoreError;
use super::held::describe;
use super::holder::Holder;
use super::unconfirmed::{Expired, Unconfirmed, UnconfirmedConfig};

/// How long an admission asking for a value of another replica's pool waits for it, in
/// all: well within kube-apiserver's webhook timeout and svcplane's request timeout.
pub const WANTED_WAIT: Duration = Duration::from_millis(1500);
/// How often at most a refusal is checked on a fresh copy when no watch has shown a newer
/// one yet: another replica's write reaches this replica's watch a moment after it lands,
/// and a create sent in that moment (right after the value was seen freed) must not be
/// refused; the bound keeps a flood of refused requests from turning into reads.
#[cfg(not(test))]
const REFUSAL_RECHECK: Duration = Duration::from_millis(100);
/// Long enough in unit tests for two refusals in a row to fall within it on any machine.
#[cfg(test)]
const REFUSAL_RECHECK: Duration = Duration::from_secs(3600);
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

    /// How long after its last renewal another replica's entry is dead: a pool lifetime, and
    /// at least half of one (when its replica stopped handing its pool out) plus the
    /// unconfirmed-allocation timeout `unconfirmed` (when whatever it handed out has
    /// reached kube-apiserver's storage or never will). Freeing what it lists sooner could
    /// give a value a Service on its way to storage still holds.
    pub fn dead_after(&self, unconfirmed: Duration) -> Duration {
        self.lifetime.max(self.lifetime / 2 + unconfirmed)
    }

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
    /// Values no Service holds any more: seen so by the Service watch (`observed`), or
    /// found leaked by repair.
    Release {
        values: Vec<Value>,
        observed: bool,
    },
    /// Values Services hold that the state lacks (found by repair); they are confirmed too.
    Mark(Vec<Value>),
    /// Values a Service was seen holding.
    Confirm(Vec<Value>),
    /// A view of this copy; `fresh`: of the stored state, read again first when a watch
    /// showed another replica's write.
    Snapshot {
        reply: oneshot::Sender<StateView>,
        fresh: bool,
    },
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
    /// Drops the reservation entries of dead replicas ([`PoolConfig::dead_after`]) and frees
    /// what they list that no Service holds (each entry's `values`), in the same write.
    Reclaim(Vec<DeadEntry>),
    /// This replica's unconfirmed values that no Service holds, given back.
    GiveBack(Vec<Value>),
    /// Values another replica asked for: freed if this replica's pool still holds them.
    Unpool(Vec<Value>),
    /// The cluster's ServiceCIDRs give these ClusterIP ranges, by family, each with whether
    /// new addresses may come from it.
    Ranges(BTreeMap<IpFamily, Vec<(IpRange, bool)>>),
}

/// This replica's allocation state, for repair.
#[derive(Clone, Debug)]
pub struct StateView {
    /// The allocators as this replica knows them.
    pub allocators: Allocators,
    /// Values in the pools of live replicas (this one's included) and this replica's
    /// unconfirmed values: allocated, held by no Service, yet no leak.
    pub pooled: BTreeSet<Value>,
    /// The reservation entries of other replicas not renewed for
    /// [`PoolConfig::dead_after`]: those replicas are gone, what they handed out is stored
    /// or never will be, and what they listed is theirs no more.
    pub dead: Vec<DeadEntry>,
    /// The entries of earlier lives of this replica's pod (see [`Holder`]), however
    /// recently renewed: those processes have stopped.
    pub previous_lives: Vec<DeadEntry>,
}

/// The reservation entry of a dead replica ([`PoolConfig::dead_after`]).
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
    /// For marking values wanted, outside the actor: one mark in flight at a time, so that
    /// requests for other replicas' values (a tenant's, say) cost at most one write at once
    /// and never hold up the actor.
    api: Api<RangeAllocation>,
    marking: Arc<tokio::sync::Semaphore>,
}

impl AllocationStore {
    /// Loads (or creates) the `RangeAllocation` objects of `allocators`' ranges and starts
    /// the actor. `allocators` gives the configured ranges; a stored object of another range
    /// is an error ([`StoreError::RangeMismatch`]): it is never reset.
    /// `pool` sets the pools, which the refiller (`state::pool::spawn_refiller`) fills
    /// in this replica's reservation entries, named `holder`; the store's own writes renew
    /// them too.
    /// Values given at admission whose wait for their Service ran out are sent to
    /// `expired`, whose reader gives back those no Service holds.
    pub async fn start(
        client: Client,
        allocators: Allocators,
        pool: PoolConfig,
        holder: Holder,
        unconfirmed: UnconfirmedConfig,
        expired: mpsc::UnboundedSender<Vec<Expired>>,
    ) -> Result<Self, StoreError> {
        let refill = Arc::new(Notify::new());
        let api = Api::all(client);
        let mut actor = Actor {
            api: api.clone(),
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
            refusal_rechecked: None,
            dropping: BTreeSet::new(),
            rewrite: BTreeSet::new(),
            reclaiming: BTreeMap::new(),
            giving_back: BTreeSet::new(),
            had_entry: BTreeSet::new(),
            unconfirmed: Unconfirmed::new(unconfirmed),
            expired,
        };
        actor.reload().await?;
        let (commands, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(actor.run(receiver));
        Ok(Self {
            commands,
            refill,
            api,
            marking: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// Whether the store's actor has stopped: nothing will be answered any more.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// Plans and persists the allocations of a Service change; returns the Service with
    /// every allocated value filled in.
    ///
    /// A requested value that sits in another live replica's pool is free as far as the
    /// cluster's Services go, and kube-apiserver would give it: this replica marks it wanted
    /// on its range's object, the replica that pools it gives it up (if it has not handed it
    /// out meanwhile), and the admission is planned again once a watch shows the range
    /// written, for up to `WANTED_WAIT` (1.5 s) in all; then it is refused as taken.
    pub async fn admit(&self, request: AdmitRequest) -> Result<ServiceSpec, StoreError> {
        let started = tokio::time::Instant::now();
        let mut asked = false;
        let mut pause = Duration::from_millis(50);
        loop {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::Admit(Box::new((request.clone(), reply))))
                .await
                .map_err(|_| StoreError::Stopped)?;
            match answer.await.map_err(|_| StoreError::Stopped)? {
                Err(StoreError::InAnotherPool { error, values }) => {
                    // The last try is at the end of the wait, not a pause before it.
                    let left = WANTED_WAIT.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(StoreError::Allocation(error));
                    }
                    // Asked once; while another admission's mark is being written, not at
                    // all (it is then refused as taken, as without asking).
                    if !asked {
                        asked = true;
                        if let Ok(_one_at_a_time) = self.marking.try_acquire() {
                            wanted::mark_wanted(&self.api, values).await;
                        }
                    }
                    tokio::time::sleep(pause.min(left)).await;
                    pause *= 2;
                }
                answer => return answer,
            }
        }
    }

    /// Values another replica asked for (see [`AllocationStore::admit`]): freed if this
    /// replica's pool still holds them, never if it handed them out.
    pub async fn unpool(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Unpool(values)).await
    }

    /// Releases values repair found no Service holding. A mark of the same value earlier in
    /// the queue wins: it comes from a newer view than repair's list.
    pub async fn release(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Release {
            values,
            observed: false,
        })
        .await
    }

    /// Releases values the Service watch saw no Service hold any more. This wins over a mark
    /// of the same value earlier in the queue: the watch sent that mark before it saw the
    /// Service go (one created and deleted at once).
    pub async fn release_observed(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Release {
            values,
            observed: true,
        })
        .await
    }

    /// Marks values as allocated that Services hold but the state lacks.
    pub async fn mark(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Mark(values)).await
    }

    /// A Service was seen holding `values`: those given at admission are confirmed.
    pub async fn confirm(&self, values: Vec<Value>) -> Result<(), StoreError> {
        self.send(Command::Confirm(values)).await
    }

    /// Sets the ClusterIP ranges to those the cluster's ServiceCIDRs give, by family (a
    /// family the map lacks has no usable range).
    pub async fn set_ranges(
        &self,
        by_family: BTreeMap<IpFamily, Vec<(IpRange, bool)>>,
    ) -> Result<(), StoreError> {
        self.send(Command::Ranges(by_family)).await
    }

    /// A copy of the allocation state as this replica knows it.
    pub async fn snapshot(&self) -> Result<StateView, StoreError> {
        self.view(false).await
    }

    /// The allocation state as stored: this replica's copy, read again first if another
    /// replica wrote since (as its watch saw). Which entries are dead is judged on it: a
    /// copy read long ago shows an entry renewed since as dead.
    pub async fn fresh_snapshot(&self) -> Result<StateView, StoreError> {
        self.view(true).await
    }

    async fn view(&self, fresh: bool) -> Result<StateView, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot { reply, fresh }).await?;
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
    holder: Holder,
    /// Per range, until when its pool may be handed out: half the entry's lifetime after
    /// the refiller last renewed it, so that no other replica can deem it dead meanwhile.
    pool_usable_until: BTreeMap<RangeKind, Instant>,
    refill: Arc<Notify>,
    recent: Recent,
    deferred_releases: Vec<Value>,
    stale: bool,
    /// Ranges seen stored at another version than this copy's: another replica wrote them.
    outdated: BTreeSet<RangeKind>,
    /// When a refusal was last checked on a fresh copy no watch had announced.
    refusal_rechecked: Option<Instant>,
    /// Entries of dead replicas to drop at the next write of their range.
    dropping: BTreeSet<(RangeKind, String)>,
    /// Ranges whose ServiceCIDRs came or went: written even with no value to change, so
    /// that the stored state lists the ranges the cluster has.
    rewrite: BTreeSet<RangeKind>,
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

    /// Values a Service was seen holding leave this replica's pool, staying allocated.
    /// kube-apiserver gives a value on its own when the webhook is not called (the
    /// mutating webhook fails open, and svcplane's own namespace is not sent to it), and it
    /// may be one this replica pools: handed out again, it would have another Service
    /// refused as already allocated.
    fn unpool_held(&mut self, values: &[Value]) {
        let held = self.pooled_among(values);
        for &value in &held {
            // A pooled value is allocated already: marking it only takes it out of the pool.
            let _ = self.allocators.mark(value);
        }
        if !held.is_empty() {
            tracing::warn!(values = %describe(&held), "pooled values a Service holds (given by kube-apiserver without svcplane) left the pool");
        }
    }

    /// Those of `values` this replica's pools hold. Called for every Service the watch shows:
    /// a few values against a few hundred pooled, a scan costs less than hashing the pools.
    fn pooled_among(&self, values: &[Value]) -> Vec<Value> {
        if values.is_empty() {
            return Vec::new();
        }
        let pooled = self.allocators.pooled();
        values
            .iter()
            .copied()
            .filter(|value| pooled.contains(value))
            .collect()
    }

    /// How long after its last renewal another replica's entry is dead
    /// ([`PoolConfig::dead_after`]).
    fn dead_after(&self) -> Duration {
        self.pool.dead_after(self.unconfirmed.timeout())
    }

    async fn process(&mut self, batch: Vec<Command>) {
        let mut admits = Vec::new();
        let mut releases = std::mem::take(&mut self.deferred_releases);
        let mut marks = Vec::new();
        let mut returns = Vec::new();
        let mut fresh_views = Vec::new();
        for command in batch {
            match command {
                // A caller that gave up (its request timed out while the batch before was
                // written) is not planned: what it would be given nobody would hold.
                Command::Admit(pending) if pending.1.is_closed() => {
                    tracing::debug!(uid = %pending.0.uid, "admission dropped: its caller is gone");
                }
                Command::Admit(pending) => admits.push(*pending),
                // A batch applies its releases before its marks, so a mark wins: a Service
                // was seen holding the value. Except over the watch's own later release: a
                // Service created and deleted at once sends a mark then a release, and the
                // value must end free, not held by no Service.
                Command::Release { values, observed } => {
                    if observed {
                        supersede(&mut marks, &values);
                    }
                    releases.extend(values);
                }
                Command::Mark(values) => {
                    self.unconfirmed.confirm(&values);
                    self.unpool_held(&values);
                    for value in supersede(&mut releases, &values) {
                        self.reclaiming.remove(&value);
                        self.giving_back.remove(&value);
                    }
                    marks.extend(values);
                }
                Command::Confirm(values) => {
                    self.unconfirmed.confirm(&values);
                    self.unpool_held(&values);
                }
                Command::Snapshot { reply, fresh: true } => fresh_views.push(reply),
                Command::Snapshot { reply, .. } => {
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
                        for &value in &entry.values {
                            self.reclaiming.insert(value, entry.holder.clone());
                        }
                        releases.extend(entry.values);
                        self.dropping.insert((entry.kind, entry.holder));
                    }
                }
                Command::GiveBack(values) => {
                    self.giving_back.extend(values.iter().copied());
                    releases.extend(values);
                }
                // Checked here, in the order of the batches: a value handed out by an earlier
                // batch is no longer pooled and stays; one freed here leaves the pool before
                // this batch's admissions are planned.
                Command::Unpool(values) => {
                    let given_up = self.pooled_among(&values);
                    if !given_up.is_empty() {
                        tracing::info!(values = %describe(&given_up), "giving up pooled values another replica asked for");
                        releases.extend(given_up);
                    }
                }
                // Pooled addresses of a range no longer usable are freed: they must not be
                // handed out, and nothing else would free them while the pool lives.
                Command::Ranges(by_family) => {
                    for family in self.allocators.families() {
                        let kind = RangeKind::ClusterIps(family);
                        let known = |allocators: &Allocators| -> Vec<IpRange> {
                            let ips = allocators.cluster_ips_of(family);
                            ips.map(|ips| ips.ranges().iter().map(|r| r.range).collect())
                                .unwrap_or_default()
                        };
                        let before = known(&self.allocators);
                        let ranges = by_family.get(&family).map_or(&[][..], Vec::as_slice);
                        let unpooled = self.allocators.set_ranges(family, ranges);
                        releases.extend(unpooled.into_iter().flatten());
                        if known(&self.allocators) != before {
                            self.rewrite.insert(kind);
                        }
                    }
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
            && self.dropping.is_empty()
            && self.rewrite.is_empty())
        {
            self.expire_pools();
            self.process_changes(admits, releases, marks).await;
        }
        if !fresh_views.is_empty() {
            if (self.stale || !self.outdated.is_empty())
                && let Err(error) = self.reload().await
            {
                tracing::debug!(%error, "the state was not read again; viewing this copy");
            }
            let view = self.view();
            for reply in fresh_views {
                let _ = reply.send(view.clone());
            }
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
        if self.pool.size > 0 && self.a_pool_is_low() {
            self.refill.notify_one();
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

mod changes;
mod persist;
mod pools;
#[cfg(test)]
mod tests;
mod wanted;

pub use wanted::{WANTED_ANNOTATION, wanted_in};
