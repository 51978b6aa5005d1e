//! Pools: values a replica persists ahead of need, so that most admissions are answered
//! without waiting for a write.
//!
//! The refiller of a replica keeps each range's pool between half of [`PoolConfig::size`](super::PoolConfig::size)
//! and that size. It takes free values of the dynamic band from the stored object, marks
//! them allocated there and lists them in the replica's reservation entry, in one
//! compare-and-swap write; only then does the replica hand them out. While the entry is
//! renewed (every quarter of [`PoolConfig::lifetime`](super::PoolConfig::lifetime)),
//! repair leaves its values alone; a replica stops handing out its pool half a lifetime
//! after the last renewal. The entry also lists the replica's unconfirmed values (given
//! out, no Service seen yet): once it is dead
//! ([`PoolConfig::dead_after`](super::PoolConfig::dead_after): a lifetime old, and half a
//! lifetime plus the unconfirmed-allocation timeout, when whatever the replica handed out is
//! stored or never will be), the releasing replica frees what it lists that no Service
//! holds and drops it, in one write, so the pool and the half-done admissions of a replica
//! that died are free again within that time.
//!
//! A pool never takes more than an eighth of the free values of a range's dynamic band, so
//! that pools do not hold what a nearly full range has left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use allocator::{Allocators, Value};
use k8s_openapi::ByteString;
use kube::{Api, Client};

use super::crd::{RangeAllocation, RangeKind, Reservation};
use super::holder::Holder;
use super::store::{AllocationStore, PoolConfig, PoolView};
use super::write::{RewriteError, Start, rewrite};

/// How many writes a refill tries before giving up until the next one.
const MAX_ATTEMPTS: u32 = 8;

/// Starts the refiller of `store`'s pools, unless pools are off. `template` gives the
/// configured ranges; `holder` names this replica's entries (unique per process).
pub fn spawn_refiller(
    client: Client,
    store: AllocationStore,
    template: Allocators,
    config: PoolConfig,
    holder: Holder,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.size == 0 {
        return None;
    }
    let refiller = Refiller {
        api: Api::all(client),
        store,
        template,
        config,
        holder,
        has_entry: BTreeMap::new(),
    };
    Some(tokio::spawn(refiller.run()))
}

struct Refiller {
    api: Api<RangeAllocation>,
    store: AllocationStore,
    template: Allocators,
    config: PoolConfig,
    holder: Holder,
    /// Ranges where this replica's entry exists, as last written.
    has_entry: BTreeMap<RangeKind, bool>,
}

impl Refiller {
    async fn run(mut self) {
        let tick = self.config.lifetime / 8;
        tracing::info!(
            holder = %self.holder,
            size = self.config.size,
            lifetime = ?self.config.lifetime,
            "pools on"
        );
        let mut stuck = StuckBackoff::new(tick);
        loop {
            let Ok(pools) = self.store.pools().await else {
                return;
            };
            let mut progress = Progress::Idle;
            for (kind, pool) in pools {
                let outcome = match self.refill(kind, &pool).await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        if stuck.should_log() {
                            tracing::warn!(range = kind.name(), %error, "pool not refilled");
                        }
                        Progress::Stuck
                    }
                };
                progress = progress.max(outcome);
            }
            match progress {
                Progress::Added => stuck.reset(),
                Progress::Idle => {
                    stuck.reset();
                    tokio::select! {
                        () = self.store.pool_low() => {}
                        () = tokio::time::sleep(tick) => {}
                    }
                }
                // A pool that cannot grow (its range nearly full, or the state unreadable)
                // waits, longer each time, instead of reading the range again for every
                // admission that finds it low.
                Progress::Stuck => tokio::time::sleep(stuck.next_wait()).await,
            }
        }
    }

    /// Refills or renews the pool of `kind` when due.
    async fn refill(&mut self, kind: RangeKind, pool: &PoolView) -> Result<Progress, String> {
        let now = Instant::now();
        let size = self.config.size_of(kind);
        let wanted = if pool.values.len() <= size / 2 {
            size - pool.values.len()
        } else {
            0
        };
        // The entry lists the pool and the unconfirmed values: renewed while it lists any.
        let lists = !(pool.values.is_empty() && pool.unconfirmed.is_empty());
        let renewal_due = lists
            && pool
                .usable_until
                .is_none_or(|until| until < now + self.config.lifetime / 4);
        let stale_entry = !lists && self.has_entry.get(&kind) == Some(&true);
        if wanted == 0 && !renewal_due && !stale_entry {
            return Ok(Progress::Idle);
        }
        let mut attempts = 0;
        let written = rewrite(
            &self.api,
            kind,
            Start::Now,
            &mut attempts,
            MAX_ATTEMPTS,
            |mut stored| {
                let renewed = Instant::now();
                let mut range = self.template.clone();
                range
                    .restore(kind, &stored.spec.snapshot())
                    .map_err(|e| Some(e.to_string()))?;
                let fresh = take_free(&mut range, kind, wanted);
                if fresh.is_empty() && !renewal_due && !stale_entry {
                    return Err(None);
                }
                let mut listed: Vec<Value> = pool.values.iter().chain(&fresh).copied().collect();
                listed.extend(pool.unconfirmed.iter().filter(|&&value| range.has(value)));
                listed.sort_unstable();
                listed.dedup();
                let entries = &mut stored.spec.reservations;
                let wall = SystemTime::now();
                // Entries list allocated values only (see the store's writes); dead entries
                // stay until the releasing replica frees what they list.
                for entry in entries.values_mut() {
                    entry.values.retain(|text| {
                        kind.parse_value(text).is_some_and(|value| range.has(value))
                    });
                }
                if listed.is_empty() {
                    entries.remove(self.holder.name());
                } else {
                    entries.insert(
                        self.holder.name().to_string(),
                        Reservation::new(listed, wall),
                    );
                }
                let snapshot = range
                    .snapshot_of(kind)
                    .ok_or_else(|| Some("the range is not configured".to_string()))?;
                stored.spec.data = ByteString(snapshot.data);
                stored.spec.used = range.usage_of(kind).map_or(0, |usage| usage.used);
                Ok((stored, (fresh, renewed)))
            },
        )
        .await;
        let (fresh, renewed) = match written {
            Ok((_, written)) => written,
            // Nothing to add and nothing to renew: the range has no room for the pool.
            Err(RewriteError::Stopped(None)) => return Ok(Progress::Stuck),
            Err(RewriteError::Stopped(Some(error))) => return Err(error),
            Err(RewriteError::Missing) => {
                return Err("the range's object does not exist yet".to_string());
            }
            Err(RewriteError::OutOfAttempts) => {
                return Err("the range kept changing under concurrent writers".to_string());
            }
            Err(RewriteError::Api(error)) => return Err(error.to_string()),
        };
        self.has_entry.insert(kind, lists || !fresh.is_empty());
        let added = if fresh.is_empty() {
            Progress::Idle
        } else {
            Progress::Added
        };
        tracing::debug!(
            range = kind.name(),
            added = fresh.len(),
            pooled = pool.values.len() + fresh.len(),
            "pool written"
        );
        self.store
            .pooled(kind, fresh, renewed)
            .await
            .map_err(|e| e.to_string())?;
        Ok(added)
    }
}

/// What a refill achieved, ordered so that the most telling outcome of several ranges wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Progress {
    /// Nothing was due.
    Idle,
    /// A pool is low and could not grow.
    Stuck,
    /// Values were added.
    Added,
}

/// The waits of a refiller that cannot make progress: doubling from a tenth of a second up
/// to `max`; its warnings are logged once per wait at the longest.
struct StuckBackoff {
    max: Duration,
    wait: Duration,
    logged: Option<Instant>,
}

impl StuckBackoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Self {
        Self {
            max,
            wait: Duration::ZERO,
            logged: None,
        }
    }

    fn next_wait(&mut self) -> Duration {
        self.wait = (self.wait * 2).clamp(Self::FIRST, self.max.max(Self::FIRST));
        self.wait
    }

    fn reset(&mut self) {
        self.wait = Duration::ZERO;
    }

    fn should_log(&mut self) -> bool {
        let now = Instant::now();
        let due = self.logged.is_none_or(|at| now >= at + self.max);
        if due {
            self.logged = Some(now);
        }
        due
    }
}

/// Takes up to `wanted` free values of the dynamic band of `kind`, and no more than an
/// eighth of its free values.
fn take_free(allocators: &mut Allocators, kind: RangeKind, wanted: usize) -> Vec<Value> {
    let Some(usage) = allocators.usage_of(kind) else {
        return Vec::new();
    };
    let room = usize::try_from(usage.dynamic_free / 8).unwrap_or(usize::MAX);
    (0..wanted.min(room))
        .map_while(|_| allocators.allocate_next_of(kind).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator::{ClusterIpAllocator, NodePortAllocator, PortRange};

    #[test]
    fn a_stuck_refiller_waits_longer_each_time_up_to_the_tick() {
        let mut backoff = StuckBackoff::new(Duration::from_millis(700));
        let waits: Vec<u128> = (0..5).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), Duration::from_millis(100));
        assert!(backoff.should_log());
        assert!(!backoff.should_log(), "one warning per longest wait");
        assert_eq!(
            Progress::Idle.max(Progress::Stuck).max(Progress::Added),
            Progress::Added
        );
    }

    #[test]
    fn a_refill_takes_dynamic_values_and_leaves_most_of_a_nearly_full_range() {
        let mut allocators = Allocators::new(
            vec![ClusterIpAllocator::new("10.96.0.0/24".parse().unwrap())],
            NodePortAllocator::new(PortRange::default()),
        )
        .unwrap();
        let v4 = RangeKind::ClusterIps(allocator::IpFamily::V4);
        let ips = allocators.cluster_ips_of(allocator::IpFamily::V4).unwrap();
        let (size, band) = (ips.size(), ips.range().band_offset());
        let taken = take_free(&mut allocators, v4, 64);
        // A /24's dynamic band has 254 - 16 free addresses: an eighth is 29.
        assert_eq!((size, band, taken.len()), (254, 16, 29));
        let range = allocators.cluster_ips_of(allocator::IpFamily::V4).unwrap();
        for value in &taken {
            let Value::ClusterIp(ip) = value else {
                panic!("{value}")
            };
            assert!(range.has(*ip));
            assert!(
                range.range().offset_of(*ip).unwrap() >= band,
                "{ip} is static"
            );
        }
        let ports = take_free(&mut allocators, RangeKind::NodePorts, 64);
        assert_eq!(ports.len(), 64);
        assert_eq!(allocators.node_ports().used(), 64);
    }
}
