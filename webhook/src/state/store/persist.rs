//! How the store's actor persists its state: one compare-and-swap write per range a batch
//! touched, the replay of a batch on a fresh copy after a conflict, and the reload of every
//! range.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use kube::api::{ObjectMeta, PostParams};

use super::{Actor, MAX_ATTEMPTS};
use crate::state::batch::{Planned, replay};
use crate::state::crd::{RangeAllocation, RangeAllocationSpec, RangeKind};
use crate::state::error::StoreError;
use crate::state::write::{RewriteError, Start, rewrite, worth_another_try};

impl Actor {
    /// After a write conflict: writes each range `planned` has still to write after a read
    /// of a fresh copy on which the batch's changes are replayed, so that the window another
    /// replica can write in is one read and one write; a random wait precedes each try that
    /// follows a conflict. Counts each write in `attempts`.
    pub(super) async fn write_rebased(
        &mut self,
        planned: &mut Planned,
        attempts: &mut u32,
    ) -> Result<Rebased, String> {
        let api = self.api.clone();
        let mut start = Start::AfterConflict;
        while let Some(&kind) = planned.pending.first() {
            let delta = &planned.deltas[&kind];
            let written = rewrite(&api, kind, start, attempts, MAX_ATTEMPTS, |stored| {
                // A copy of another range, or one on which a value the batch reserved is
                // taken: the batch is planned again.
                self.allocators
                    .restore(kind, &stored.spec.snapshot())
                    .map_err(|_| ())?;
                self.learn(kind, stored);
                // A value this copy shows must not be freed: the batch is planned again
                // without it.
                if !delta.released.iter().all(|&value| self.may_free(value)) {
                    return Err(());
                }
                if !replay(&mut self.allocators, delta) {
                    return Err(());
                }
                Ok(self.object(kind))
            })
            .await;
            match written {
                Ok((stored, stamped)) => {
                    self.learn(kind, stored);
                    self.written(kind, stamped);
                    planned.pending.remove(&kind);
                    start = Start::Now;
                }
                Err(RewriteError::Stopped(()) | RewriteError::Missing) => {
                    return Ok(Rebased::Replan);
                }
                Err(RewriteError::OutOfAttempts) => return Ok(Rebased::OutOfAttempts),
                Err(RewriteError::Api(error)) => return Err(error.to_string()),
            }
        }
        Ok(Rebased::Written)
    }

    pub(super) async fn persist(
        &mut self,
        touched: &BTreeSet<RangeKind>,
    ) -> Result<(), PersistError> {
        let mut written = BTreeSet::new();
        for &kind in touched {
            let (object, stamped) = self.object(kind);
            match self
                .api
                .replace(kind.name(), &PostParams::default(), &object)
                .await
            {
                Ok(stored) => {
                    self.learn(kind, stored);
                    self.written(kind, stamped);
                    written.insert(kind);
                }
                // Read the range again and replay: a conflict, or a write whose outcome
                // is unknown (a CAS replay on a fresh copy is right either way).
                Err(error) if worth_another_try(&error) => {
                    return Err(PersistError::Conflict { written });
                }
                Err(error) => return Err(PersistError::Other(error.to_string())),
            }
        }
        Ok(())
    }

    /// The object to write for range `kind`: the in-memory range, the entries as last
    /// read, this replica's own renewed when its pool is in use. Returns when the entry
    /// was renewed, if it was.
    pub(super) fn object(&self, kind: RangeKind) -> (RangeAllocation, Option<Instant>) {
        let snapshot = self
            .allocators
            .snapshot_of(kind)
            .expect("a configured range");
        let usage = self.allocators.usage_of(kind).expect("a configured range");
        let mut reservations = self.reservations.get(&kind).cloned().unwrap_or_default();
        // An entry lists allocated values only: a value is unlisted in the write that frees
        // it, so that what a dead replica listed is freed once at most. An entry to drop is
        // dropped only while it is dead on this copy (its replica may have renewed it since).
        let now = SystemTime::now();
        reservations.retain(|holder, entry| {
            entry.values.retain(|text| {
                kind.parse_value(text)
                    .is_some_and(|value| self.allocators.has(value))
            });
            let dropped =
                self.dropping.contains(&(kind, holder.clone())) && self.is_dead(holder, entry, now);
            holder == self.holder.name() || !(entry.values.is_empty() || dropped)
        });
        // A write of a range renews this replica's entry while its pool is in use, so that
        // a refiller slowed down by a busy store does not let the pool expire.
        let stamped = Instant::now();
        let renewing = self.pool_in_use(kind, stamped)
            && reservations
                .get_mut(self.holder.name())
                .map(|entry| entry.renew(SystemTime::now()))
                .is_some();
        let object = RangeAllocation {
            metadata: ObjectMeta {
                name: Some(kind.name().to_string()),
                resource_version: self.versions.get(&kind).cloned(),
                ..ObjectMeta::default()
            },
            spec: RangeAllocationSpec::new(snapshot, usage, reservations),
        };
        (object, renewing.then_some(stamped))
    }

    /// A write of range `kind` stamped at `stamped` succeeded: the dead entries it dropped
    /// are gone, and when it renewed this replica's entry, the pool may be handed out for
    /// half a lifetime from then.
    fn written(&mut self, kind: RangeKind, stamped: Option<Instant>) {
        self.dropping.retain(|&(dropped, _)| dropped != kind);
        if let Some(stamped) = stamped {
            let until = stamped + self.pool.lifetime / 2;
            let usable = self.pool_usable_until.entry(kind).or_insert(until);
            *usable = (*usable).max(until);
        }
    }

    pub(super) fn learn(&mut self, kind: RangeKind, stored: RangeAllocation) {
        self.versions
            .insert(kind, stored.metadata.resource_version.unwrap_or_default());
        if stored.spec.reservations.contains_key(self.holder.name()) {
            self.had_entry.insert(kind);
        }
        self.reservations.insert(kind, stored.spec.reservations);
        self.outdated.remove(&kind);
    }

    /// Reads every range's object, creating the missing ones from the in-memory state.
    pub(super) async fn reload(&mut self) -> Result<(), StoreError> {
        for kind in self.ranges() {
            let name = kind.name();
            let stored = match self.api.get_opt(name).await.map_err(persist)? {
                Some(stored) => stored,
                None => {
                    self.versions.remove(&kind);
                    let (fresh, _) = self.object(kind);
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
                    configured: self.object(kind).0.spec.range,
                });
            }
            self.learn(kind, stored);
        }
        self.stale = false;
        Ok(())
    }
}

/// How writing a batch after a conflict ended.
pub(super) enum Rebased {
    /// Every range is written.
    Written,
    /// A value the batch reserved was taken meanwhile: plan it again.
    Replan,
    /// Every attempt is spent.
    OutOfAttempts,
}

pub(super) enum PersistError {
    /// A range changed since it was read, or a write's outcome is unknown: read it again;
    /// `written` were written before that.
    Conflict {
        written: BTreeSet<RangeKind>,
    },
    Other(String),
}

fn persist(error: kube::Error) -> StoreError {
    StoreError::Persist(error.to_string())
}
