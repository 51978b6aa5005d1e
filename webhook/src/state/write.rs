//! Writing a range's object the way every writer of the allocation state does (the store's
//! batches, the pool refiller): read a fresh copy, apply the change to it, write it back
//! with its resourceVersion; on a conflict wait a random moment and do it again, up to a
//! number of attempts shared with the caller.

use std::hash::BuildHasher;
use std::time::Duration;

use kube::Api;
use kube::api::PostParams;

use super::crd::{RangeAllocation, RangeKind};

/// The first cap of the wait before writing again after a conflict; it doubles with each
/// attempt up to [`CONFLICT_BACKOFF_MAX`]. The waits of 16 attempts add up to at most about
/// 0.7 s, well inside the webhook's timeout.
const CONFLICT_BACKOFF_BASE: Duration = Duration::from_millis(1);
/// See [`CONFLICT_BACKOFF_BASE`].
const CONFLICT_BACKOFF_MAX: Duration = Duration::from_millis(64);

/// Why a rewrite ended without a write.
#[derive(Debug)]
pub(super) enum RewriteError<S> {
    /// The change gave up on the fresh copy, for reason `S`.
    Stopped(S),
    /// The object does not exist.
    Missing,
    /// Every attempt was spent on conflicts.
    OutOfAttempts,
    /// Reading or writing failed otherwise.
    Api(kube::Error),
}

/// Where a rewrite starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Read and write at once.
    Now,
    /// A write just conflicted: wait a random moment first.
    AfterConflict,
}

/// Reads the object of range `kind`, lets `change` turn the fresh copy into the object to
/// write (with a result `T`) or give up, and writes it; after a conflict, does it again.
/// Each write counts in `attempts`, which stops at `max_attempts`. Returns the object as
/// written and the result of the change that was written.
pub(super) async fn rewrite<T, S>(
    api: &Api<RangeAllocation>,
    kind: RangeKind,
    start: Start,
    attempts: &mut u32,
    max_attempts: u32,
    mut change: impl FnMut(RangeAllocation) -> Result<(RangeAllocation, T), S>,
) -> Result<(RangeAllocation, T), RewriteError<S>> {
    let mut conflicted = start == Start::AfterConflict;
    loop {
        if *attempts >= max_attempts {
            return Err(RewriteError::OutOfAttempts);
        }
        if conflicted {
            // Writers busy at once would otherwise retry in lockstep and keep overwriting
            // each other until every attempt is spent.
            tokio::time::sleep(conflict_backoff(*attempts, random())).await;
        }
        *attempts += 1;
        let stored = match api.get_opt(kind.name()).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(RewriteError::Missing),
            Err(error) if worth_another_try(&error) => {
                tracing::debug!(%error, range = kind.name(), "reading the allocation state failed; trying again");
                conflicted = true;
                continue;
            }
            Err(error) => return Err(RewriteError::Api(error)),
        };
        let (object, result) = change(stored).map_err(RewriteError::Stopped)?;
        match api
            .replace(kind.name(), &PostParams::default(), &object)
            .await
        {
            Ok(written) => return Ok((written, result)),
            Err(error) if worth_another_try(&error) => {
                tracing::debug!(
                    attempts = *attempts,
                    range = kind.name(),
                    %error,
                    "allocation state not written (changed under this writer, or the outcome is unknown); writing again on a fresh copy"
                );
                conflicted = true;
            }
            Err(error) => return Err(RewriteError::Api(error)),
        }
    }
}

/// Whether a read or compare-and-swap write that failed with `error` is worth another try on
/// a fresh copy: a conflict, or an outcome the apiserver did not state (the connection
/// broke, as when kube-apiserver restarts; a timeout; the apiserver unavailable). Reading
/// again first makes the retry safe even when the failed write did land.
pub(super) fn worth_another_try(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 409 || status.code == 429 || status.code >= 500,
        _ => true,
    }
}

/// The wait before attempt `attempt + 1` after a conflict: uniform in `[0, cap]` ("full
/// jitter"), the cap doubling from [`CONFLICT_BACKOFF_BASE`] up to [`CONFLICT_BACKOFF_MAX`].
/// `random` is any uniformly random number.
pub(super) fn conflict_backoff(attempt: u32, random: u64) -> Duration {
    let cap = CONFLICT_BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(CONFLICT_BACKOFF_MAX);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(random % (cap_nanos + 1))
}

/// A random number from the standard library's per-instance random hasher keys.
pub(super) fn random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

#[cfg(test)]
mod tests;
