//! Planning one batch of changes (admissions, releases, marks) on a replica's in-memory
//! allocators, before the store persists it: pure, so every rule of a batch is tested with
//! plain values.
//!
//! A batch changes each range by a [`RangeDelta`]. When the write of a range conflicts, the
//! delta is replayed on a fresher copy ([`replay`]); when a value it reserved was taken
//! meanwhile, the batch is abandoned ([`Planned::abandon`]) and planned again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use allocator::{Allocators, ServiceSpec, Value};

use super::crd::RangeKind;
use super::error::StoreError;
use super::unconfirmed::{ServiceName, Unconfirmed};

/// How many recent admissions are remembered to answer a reinvocation alike.
const RECENT_ADMISSIONS: usize = 4096;

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

#[cfg(test)]
impl AdmitRequest {
    /// A create of a Service with default fields named `uid`, in namespace `tenant`.
    pub(super) fn test_create(uid: &str) -> Self {
        AdmitRequest {
            uid: uid.to_string(),
            namespace: "tenant".to_string(),
            service: ServiceName::Named(uid.to_string()),
            old: None,
            new: ServiceSpec::default(),
            dry_run: false,
        }
    }
}

/// One admission's outcome in a planned batch: the filled Service and every value it was
/// given (pooled ones included), or why it is refused.
pub(super) type Outcome = Result<(ServiceSpec, Vec<Value>), StoreError>;

/// What a batch changed in one range, relative to the copy it was planned on; replayed on a
/// fresher copy after a write conflict, so that a replica that lost a race writes again
/// after one read of that range instead of planning the whole batch over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RangeDelta {
    /// Freed: values no Service holds, and reservations given back.
    pub released: Vec<Value>,
    /// Allocated because Services hold them.
    pub marked: Vec<Value>,
    /// Reserved by the batch's admissions: they must still be free in the fresher copy.
    pub reserved: Vec<Value>,
}

/// A batch planned on the in-memory allocators, not yet (entirely) persisted.
#[derive(Debug)]
pub(super) struct Planned {
    /// Each admission's filled Service and what it was given, or why it is refused.
    pub outcomes: Vec<Outcome>,
    /// What the batch changes in each range.
    pub deltas: BTreeMap<RangeKind, RangeDelta>,
    /// Ranges still to write.
    pub pending: BTreeSet<RangeKind>,
    /// Values the admissions were given from the pool: persisted already, so in no delta.
    pub from_pool: Vec<Value>,
}

/// The filled Services of recent admissions by uid, so that a reinvocation (or a retry of
/// the same request) is answered alike without allocating again. Looked up on every
/// admission: by hash, not by scanning.
#[derive(Debug, Default)]
pub(super) struct Recent {
    by_uid: HashMap<String, ServiceSpec>,
    /// The uids, oldest first.
    order: VecDeque<String>,
}

impl Recent {
    pub fn get(&self, uid: &str) -> Option<&ServiceSpec> {
        self.by_uid.get(uid)
    }

    pub fn remember(&mut self, uid: &str, filled: &ServiceSpec) {
        if self
            .by_uid
            .insert(uid.to_string(), filled.clone())
            .is_some()
        {
            return;
        }
        self.order.push_back(uid.to_string());
        if self.order.len() > RECENT_ADMISSIONS
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_uid.remove(&oldest);
        }
    }
}

/// Plans a batch on `allocators`: gives back `given_back` (what an abandoned attempt of
/// this batch persisted), applies the releases and marks, and plans every admission,
/// refusing those whose namespace would hold more unconfirmed values than `unconfirmed`
/// allows.
pub(super) fn plan_batch(
    allocators: &mut Allocators,
    recent: &Recent,
    unconfirmed: &Unconfirmed,
    admits: &[AdmitRequest],
    releases: &[Value],
    marks: &[Value],
    given_back: Vec<Value>,
) -> Planned {
    let mut deltas: BTreeMap<RangeKind, RangeDelta> = BTreeMap::new();
    for value in given_back.into_iter().chain(releases.iter().copied()) {
        if allocators.release(value) {
            delta(&mut deltas, value).released.push(value);
        }
    }
    for &value in marks {
        if !allocators.has(value) && allocators.mark(value).is_ok() {
            delta(&mut deltas, value).marked.push(value);
        }
    }
    // Pooled values are persisted already: handing them out needs no write. A few hundred
    // at most, looked up for the few values a batch reserves: a scan costs less than
    // hashing them all.
    let pooled: Vec<Value> = if admits.is_empty() {
        Vec::new()
    } else {
        allocators.pooled()
    };
    let mut from_pool = Vec::new();
    // What this batch gives each namespace, on top of what it holds unconfirmed.
    let mut given: HashMap<&str, usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(admits.len());
    for request in admits {
        let outcome = match plan(allocators, recent, request) {
            Ok((filled, reserved)) => {
                let namespace = request.namespace.as_str();
                let taken = given.entry(namespace).or_default();
                if *taken + reserved.len() > unconfirmed.room(namespace) {
                    give_back(allocators, &reserved, &pooled, &mut deltas);
                    Err(StoreError::TooManyUnconfirmed {
                        namespace: namespace.to_string(),
                        limit: unconfirmed.limit(),
                    })
                } else {
                    *taken += reserved.len();
                    for &value in &reserved {
                        if pooled.contains(&value) {
                            from_pool.push(value);
                        } else {
                            delta(&mut deltas, value).reserved.push(value);
                        }
                    }
                    Ok((filled, reserved))
                }
            }
            Err(error) => Err(StoreError::Allocation(error)),
        };
        outcomes.push(outcome);
    }
    Planned {
        outcomes,
        pending: deltas.keys().copied().collect(),
        deltas,
        from_pool,
    }
}

fn delta(deltas: &mut BTreeMap<RangeKind, RangeDelta>, value: Value) -> &mut RangeDelta {
    deltas.entry(RangeKind::of(value)).or_default()
}

/// Frees what an admission refused after planning had reserved; a pooled value is
/// persisted as allocated, so freeing it is a change to write.
fn give_back(
    allocators: &mut Allocators,
    reserved: &[Value],
    pooled: &[Value],
    deltas: &mut BTreeMap<RangeKind, RangeDelta>,
) {
    for &value in reserved {
        if allocators.release(value) && pooled.contains(&value) {
            delta(deltas, value).released.push(value);
        }
    }
}

/// Plans one admission on `allocators`, reserving what it allocates. Returns the filled
/// Service and the values reserved (none for a dry run, or for a request answered before).
fn plan(
    allocators: &mut Allocators,
    recent: &Recent,
    request: &AdmitRequest,
) -> Result<(ServiceSpec, Vec<Value>), allocator::Error> {
    if let Some(filled) = recent.get(&request.uid) {
        return Ok((filled.clone(), Vec::new()));
    }
    if request.dry_run {
        // On a copy: a dry run gives back what it took, and a pooled value given back
        // would leave the pool.
        let mut scratch = allocators.clone();
        let transaction = match &request.old {
            None => scratch.create(&request.new, true)?,
            Some(old) => scratch.update(old, &request.new, true)?,
        };
        return Ok((transaction.service().clone(), Vec::new()));
    }
    let transaction = match &request.old {
        None => allocators.create(&request.new, false)?,
        Some(old) => allocators.update(old, &request.new, false)?,
    };
    let filled = transaction.service().clone();
    let reserved = transaction.reserved().to_vec();
    // What an update gives up is freed when the Service watch shows the Service without it
    // (runtime/watch.rs): dropping the transaction keeps the reservations and frees nothing.
    drop(transaction);
    Ok((filled, reserved))
}

/// An admission of a persisted batch is answered: its filled Service is remembered for a
/// reinvocation, and what it was given waits for its Service to be seen.
pub(super) fn answered(
    request: &AdmitRequest,
    outcome: Outcome,
    recent: &mut Recent,
    unconfirmed: &mut Unconfirmed,
    now: Instant,
) -> Result<ServiceSpec, StoreError> {
    outcome.map(|(filled, given)| {
        if !request.dry_run {
            recent.remember(&request.uid, &filled);
            unconfirmed.add(&request.namespace, &request.service, &given, now);
        }
        filled
    })
}

impl Planned {
    /// Whether an admission is refused for a reason another replica's writes can change:
    /// a requested value taken, or a range full.
    pub fn refuses_on_state(&self) -> bool {
        self.outcomes.iter().any(|outcome| {
            matches!(
                outcome,
                Err(StoreError::Allocation(error)) if matches!(
                    error.reason(),
                    allocator::Error::Full
                        | allocator::Error::IpAllocated
                        | allocator::Error::PortAllocated
                )
            )
        })
    }

    /// What the stored state holds for answers this attempt will not send: the values it
    /// reserved in the ranges it wrote, and those of `given_back` (values an earlier attempt
    /// persisted) whose range it did not write. Freeing them is up to a later write.
    pub fn unanswered(&self, given_back: Vec<Value>) -> Vec<Value> {
        self.deltas
            .iter()
            .filter(|(kind, _)| !self.pending.contains(kind))
            .flat_map(|(_, delta)| delta.reserved.iter().copied())
            .chain(
                given_back
                    .into_iter()
                    .filter(|value| self.pending.contains(&RangeKind::of(*value))),
            )
            .collect()
    }

    /// The batch will not be answered as planned: the values its admissions took from the
    /// pool go back to it. They are still allocated in the stored state and listed in this
    /// replica's reservation entry; dropped from the pool, no one would ever hand them out
    /// or free them until repair.
    pub fn abandon(self, allocators: &mut Allocators) {
        for value in self.from_pool {
            if allocators.has(value) {
                allocators.add_to_pool(value);
            }
        }
    }
}

/// Replays `delta` on `allocators` in the order it was planned: releases, marks, then
/// reservations. `false` when a reserved value is taken in this copy.
pub(super) fn replay(allocators: &mut Allocators, delta: &RangeDelta) -> bool {
    for &value in &delta.released {
        allocators.release(value);
    }
    for &value in &delta.marked {
        if !allocators.has(value) {
            let _ = allocators.mark(value);
        }
    }
    delta
        .reserved
        .iter()
        .all(|&value| allocators.allocate(value).is_ok())
}

#[cfg(test)]
mod tests;
