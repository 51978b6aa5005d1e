//! The store's pools as its actor keeps them, and what it shows of them: the state view for
//! repair and the pools for the refiller.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

use allocator::Value;

use super::{Actor, DeadEntry, PoolView, StateView};
use crate::state::crd::{RangeKind, Reservation};

impl Actor {
    pub(super) fn view(&self) -> StateView {
        let now = SystemTime::now();
        let dead_after = self.dead_after();
        let mut pooled: BTreeSet<Value> = self.allocators.pooled().into_iter().collect();
        pooled.extend(self.unconfirmed.values());
        let mut dead = Vec::new();
        let mut previous_lives = Vec::new();
        for (&kind, entries) in &self.reservations {
            for (holder, entry) in entries {
                let gone = || DeadEntry {
                    kind,
                    holder: holder.clone(),
                    values: entry
                        .values(kind)
                        .filter(|&value| self.allocators.has(value))
                        .collect(),
                };
                if self.holder.is_previous_life(holder) {
                    previous_lives.push(gone());
                } else if entry.is_live(now, dead_after) {
                    pooled.extend(entry.values(kind));
                } else if holder != self.holder.name() {
                    dead.push(gone());
                }
            }
        }
        StateView {
            allocators: self.allocators.clone(),
            pooled,
            dead,
            previous_lives,
        }
    }

    /// Whether `holder`'s entry is dead on this copy: another replica's, of an earlier
    /// life of this pod or not renewed for
    /// [`PoolConfig::dead_after`](super::PoolConfig::dead_after).
    pub(super) fn is_dead(&self, holder: &str, entry: &Reservation, now: SystemTime) -> bool {
        holder != self.holder.name()
            && (self.holder.is_previous_life(holder) || !entry.is_live(now, self.dead_after()))
    }

    /// Whether a range's pool holds half its size or less: checked after every batch, so
    /// counted without listing the pools.
    pub(super) fn a_pool_is_low(&self) -> bool {
        self.ranges().into_iter().any(|kind| {
            let pooled = match kind {
                RangeKind::ClusterIps(family) => self
                    .allocators
                    .cluster_ips_of(family)
                    .map_or(0, |ips| ips.pooled().len()),
                RangeKind::NodePorts => self.allocators.node_ports().pooled().len(),
            };
            pooled <= self.pool.size_of(kind) / 2
        })
    }

    pub(super) fn pools(&self) -> BTreeMap<RangeKind, PoolView> {
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
    pub(super) fn add_to_pool(&mut self, kind: RangeKind, values: Vec<Value>, renewed: Instant) {
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
    pub(super) fn pool_in_use(&self, kind: RangeKind, now: Instant) -> bool {
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
    pub(super) fn expire_pools(&mut self) {
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
