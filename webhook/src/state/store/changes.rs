//! How the store's actor gets a batch of changes through: plans it on this replica's copy,
//! persists it (replaying it or planning it again after conflicts), then answers its
//! admissions or fails them with an error they can retry.

use std::time::{Instant, SystemTime};

use allocator::Value;

use super::persist::{PersistError, Rebased};
use super::{Actor, MAX_ATTEMPTS, PendingAdmit, REFUSAL_RECHECK, Reply};
use crate::state::batch::{AdmitRequest, Outcome, answered, plan_batch};
use crate::state::crd::RangeKind;
use crate::state::error::StoreError;
use crate::state::write::{conflict_backoff, random};

/// Whether `error` refuses a requested value as taken, or a range as full.
fn is_taken(error: &allocator::Error) -> bool {
    matches!(
        error.reason(),
        allocator::Error::IpAllocated | allocator::Error::PortAllocated | allocator::Error::Full
    )
}

impl Actor {
    pub(super) async fn process_changes(
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
            // Dropping an entry is a write of its range, even with no value to free; so is a
            // change of the ranges the ServiceCIDRs give.
            let unchanged = self.dropping.iter().map(|(kind, _)| kind);
            for &kind in unchanged.chain(&self.rewrite) {
                planned.deltas.entry(kind).or_default();
                planned.pending.insert(kind);
            }
            // Another replica may have freed what this copy refuses for: read it again
            // before refusing (once per batch: when a watch saw a newer copy, or else at
            // most every REFUSAL_RECHECK, as the watch may not have seen it yet).
            if !refusals_checked && planned.refuses_on_state() && self.may_recheck_refusals() {
                refusals_checked = true;
                tracing::debug!(
                    "a refusal depends on ranges another replica may have changed; reading them again"
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
                    self.rewrite.clear();
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
            let outcome = match outcome {
                // A dry run asks nobody to give anything up: it changes nothing.
                Err(StoreError::Allocation(error)) if is_taken(&error) && !request.dry_run => {
                    let values = if *error.reason() == allocator::Error::Full {
                        self.pooled_in_full_ranges()
                    } else {
                        self.pooled_elsewhere(&request)
                    };
                    if values.is_empty() {
                        Err(StoreError::Allocation(error))
                    } else {
                        Err(StoreError::InAnotherPool { error, values })
                    }
                }
                outcome => outcome,
            };
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

    /// Whether a refusal may be checked on a fresh copy now (and if so, counts it).
    fn may_recheck_refusals(&mut self) -> bool {
        if !self.outdated.is_empty() {
            return true;
        }
        if self
            .refusal_rechecked
            .is_some_and(|at| at.elapsed() < REFUSAL_RECHECK)
        {
            return false;
        }
        self.refusal_rechecked = Some(Instant::now());
        true
    }

    /// Whether `value` may be freed on this copy: a value reclaimed from a dead replica only
    /// while that replica's entry still lists it; a value this replica gives back only while
    /// its own entry is stored, if it ever was (otherwise the entry was reclaimed, and with
    /// it perhaps this value). Any other value may.
    pub(super) fn may_free(&self, value: Value) -> bool {
        let kind = RangeKind::of(value);
        let entries = self.reservations.get(&kind);
        if let Some(holder) = self.reclaiming.get(&value) {
            // Checked on this copy, which may be fresher than the one that showed the entry
            // dead: a replica that renewed its entry meanwhile is alive and may hand the
            // value out.
            let listed = entries
                .and_then(|entries| entries.get(holder))
                .is_some_and(|entry| {
                    self.is_dead(holder, entry, SystemTime::now())
                        && entry.values(kind).any(|listed| listed == value)
                });
            if !listed {
                tracing::debug!(%value, %holder, "no longer listed by a dead entry (renewed, or gone); not freed");
            }
            return listed;
        }
        if self.giving_back.contains(&value)
            && self.had_entry.contains(&kind)
            && !entries.is_some_and(|entries| entries.contains_key(self.holder.name()))
        {
            tracing::warn!(%value, "this replica's entry was reclaimed as dead; its unconfirmed value is left to repair");
            return false;
        }
        true
    }
}
