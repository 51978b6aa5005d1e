//! Allocation of offsets `0..size` on a roaring bitmap: the strategy shared by the IP and
//! port allocators.
//!
//! # Static and dynamic bands
//!
//! The offsets are split at `band_offset` into a lower *static* band `[0, band_offset)` and an
//! upper *dynamic* band `[band_offset, size)` (KEP-3070, KEP-3668). [`allocate_next`] prefers
//! the dynamic band, so that users who pick fixed values in the static band rarely collide
//! with automatic ones: it draws a random start in the dynamic band and takes the first free
//! offset at or after it, wrapping around inside the band; only when the dynamic band is full
//! does it do the same in the static band. A request for a specific offset ([`allocate`]) is
//! allowed anywhere.
//!
//! # Dense window for huge bands
//!
//! Roaring compresses well only when values share their high bits. Random offsets spread
//! uniformly over a band of 2^64 values would each land in a container of their own, so for
//! dynamic bands larger than [`UNIFORM_BAND_LIMIT`] (2^24, which covers every IPv4 range up to a
//! /8 and IPv6 ranges up to /104) the random start is drawn from a *window* at the bottom of
//! the dynamic band, `[band_offset, band_offset + window)`, where `window` is the smallest power
//! of two that is at least four times the number of allocated offsets, and at least
//! [`MIN_WINDOW`] (2^16). The window thus grows with usage and stays at most about a quarter
//! full, even when users took some of its values by hand: a free offset is found after a couple
//! of probes (constant time while sparse), and the allocated offsets stay packed into few
//! roaring containers (a /64 holding 1,000,000 allocations uses a window of 2^22 addresses:
//! 64 containers). The window shrinks again when values are released; values allocated beyond
//! it stay valid.
//!
//! Finding a free offset never probes one value at a time: it asks roaring for the run of
//! allocated offsets that starts at the random start (`next_range` on a 32-bit bitmap, a
//! galloping search with `contains_range` on a 64-bit treemap) and takes the offset just after
//! it, so `allocate_next` stays fast when the band is 99% full.
//!
//! # Pool
//!
//! An allocator can hold a *pool*: offsets that are allocated (they are in the bitmap and
//! in every snapshot) but not handed to anyone yet. [`allocate_next`] hands them out first,
//! in the order they were pooled, without touching the bitmap. A caller whose snapshots are
//! shared (the webhook's replicas) persists a batch of offsets once, pools them, and can
//! then answer allocations without a write each.
//!
//! [`allocate_next`]: OffsetAllocator::allocate_next
//! [`allocate`]: OffsetAllocator::allocate

use std::collections::VecDeque;
use std::fmt;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use roaring::{RoaringBitmap, RoaringTreemap};

use crate::error::{Error, Result};

/// Dynamic bands up to this many offsets draw their random start uniformly over the whole
/// band, as the in-tree allocator does.
pub const UNIFORM_BAND_LIMIT: u64 = 1 << 24;

/// The smallest window of a dynamic band larger than [`UNIFORM_BAND_LIMIT`].
pub const MIN_WINDOW: u64 = 1 << 16;

/// The state of an allocator as stored by svcplane: the range it belongs to and roaring's
/// portable serialization of the allocated offsets (the 32-bit format when the range has at
/// most 2^32 offsets, the 64-bit `RoaringTreemap` format beyond).
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The range the offsets belong to, e.g. `10.96.0.0/12` or `30000-32767`.
    pub range: String,
    /// The serialized roaring bitmap of the allocated offsets.
    pub data: Vec<u8>,
    /// The further ranges of the same values, each with its own offsets: the other
    /// ClusterIP ranges of a family (ServiceCIDRs); empty otherwise.
    pub extra: Vec<Snapshot>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("range", &self.range)
            .field("data_len", &self.data.len())
            .field("extra", &self.extra)
            .finish()
    }
}

/// The set of allocated offsets: 32-bit roaring when the range fits, 64-bit beyond.
#[derive(Clone, Debug, PartialEq)]
enum Offsets {
    Narrow(RoaringBitmap),
    Wide(RoaringTreemap),
}

impl Offsets {
    fn for_size(size: u64) -> Self {
        if size <= 1 << 32 {
            Offsets::Narrow(RoaringBitmap::new())
        } else {
            Offsets::Wide(RoaringTreemap::new())
        }
    }

    // Narrow sets only hold offsets below `size <= 2^32`: the casts below never truncate.
    fn contains(&self, offset: u64) -> bool {
        match self {
            Offsets::Narrow(set) => set.contains(offset as u32),
            Offsets::Wide(set) => set.contains(offset),
        }
    }

    fn insert(&mut self, offset: u64) -> bool {
        match self {
            Offsets::Narrow(set) => set.insert(offset as u32),
            Offsets::Wide(set) => set.insert(offset),
        }
    }

    fn remove(&mut self, offset: u64) -> bool {
        match self {
            Offsets::Narrow(set) => set.remove(offset as u32),
            Offsets::Wide(set) => set.remove(offset),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Offsets::Narrow(set) => set.len(),
            Offsets::Wide(set) => set.len(),
        }
    }

    fn count_below(&self, end: u64) -> u64 {
        if end == 0 {
            return 0;
        }
        match self {
            Offsets::Narrow(set) => set.range_cardinality(..end as u32),
            Offsets::Wide(set) => set.range_cardinality(..end),
        }
    }

    fn max(&self) -> Option<u64> {
        match self {
            Offsets::Narrow(set) => set.max().map(u64::from),
            Offsets::Wide(set) => set.max(),
        }
    }

    /// The first offset in `[from, to)` that is not in the set.
    fn first_free(&self, from: u64, to: u64) -> Option<u64> {
        if from >= to {
            return None;
        }
        if !self.contains(from) {
            return Some(from);
        }
        match self {
            Offsets::Narrow(set) => {
                let mut iter = set.iter();
                iter.advance_to(from as u32);
                let run = iter.next_range()?;
                let after = u64::from(*run.end()) + 1;
                (after < to).then_some(after)
            }
            Offsets::Wide(set) => {
                // `[from, from + taken)` is known to be allocated; gallop, then bisect, for
                // the length of the run.
                let limit = to - from;
                let mut taken: u64 = 1;
                let mut step: u64 = 1;
                let mut not_all = loop {
                    let probe = taken.saturating_add(step).min(limit);
                    if !set.contains_range(from..from + probe) {
                        break probe;
                    }
                    if probe == limit {
                        return None;
                    }
                    taken = probe;
                    step = step.saturating_mul(2);
                };
                while not_all - taken > 1 {
                    let mid = taken + (not_all - taken) / 2;
                    if set.contains_range(from..from + mid) {
                        taken = mid;
                    } else {
                        not_all = mid;
                    }
                }
                Some(from + taken)
            }
        }
    }

    fn serialized_size(&self) -> usize {
        match self {
            Offsets::Narrow(set) => set.serialized_size(),
            Offsets::Wide(set) => set.serialized_size(),
        }
    }

    fn serialize(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(self.serialized_size());
        // Writing into a Vec cannot fail.
        let written = match self {
            Offsets::Narrow(set) => set.serialize_into(&mut data),
            Offsets::Wide(set) => set.serialize_into(&mut data),
        };
        debug_assert!(written.is_ok());
        data
    }

    fn deserialize(&self, data: &[u8]) -> std::io::Result<Self> {
        Ok(match self {
            Offsets::Narrow(_) => Offsets::Narrow(RoaringBitmap::deserialize_from(data)?),
            Offsets::Wide(_) => Offsets::Wide(RoaringTreemap::deserialize_from(data)?),
        })
    }

    fn iter(&self) -> Iter<'_> {
        match self {
            Offsets::Narrow(set) => Iter(Inner::Narrow(set.iter())),
            Offsets::Wide(set) => Iter(Inner::Wide(Box::new(set.iter()))),
        }
    }
}

/// Iterator over the allocated offsets of an [`OffsetAllocator`], in ascending order.
#[derive(Clone)]
pub struct Iter<'a>(Inner<'a>);

#[derive(Clone)]
enum Inner<'a> {
    Narrow(roaring::bitmap::Iter<'a>),
    Wide(Box<roaring::treemap::Iter<'a>>),
}

impl Iterator for Iter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        match &mut self.0 {
            Inner::Narrow(iter) => iter.next().map(u64::from),
            Inner::Wide(iter) => iter.next(),
        }
    }
}

/// Allocates offsets `0..size` with the static/dynamic band rule (see the [module
/// docs](self)).
///
/// It owns a small random generator, seeded from the operating system by
/// [`new`](Self::new), or deterministically with [`with_seed`](Self::with_seed); callers that
/// want to inject their own use [`allocate_next_with`](Self::allocate_next_with).
#[derive(Clone, Debug)]
pub struct OffsetAllocator {
    range: String,
    size: u64,
    band_offset: u64,
    offsets: Offsets,
    used: u64,
    used_static: u64,
    pool: VecDeque<u64>,
    rng: SmallRng,
}

impl OffsetAllocator {
    /// An empty allocator of `size` offsets whose dynamic band starts at `band_offset`
    /// (clamped to `size`). `range` names the range in snapshots and errors.
    pub fn new(range: impl Into<String>, size: u64, band_offset: u64) -> Self {
        OffsetAllocator {
            range: range.into(),
            size,
            band_offset: band_offset.min(size),
            offsets: Offsets::for_size(size),
            used: 0,
            used_static: 0,
            pool: VecDeque::new(),
            rng: SmallRng::from_os_rng(),
        }
    }

    /// The same allocator with its random generator seeded from `seed`, for reproducible
    /// allocation sequences.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = SmallRng::seed_from_u64(seed);
        self
    }

    /// The name of the range, as given to [`new`](Self::new).
    pub fn range(&self) -> &str {
        &self.range
    }

    /// The number of offsets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the dynamic band starts.
    pub fn band_offset(&self) -> u64 {
        self.band_offset
    }

    /// The number of allocated offsets.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The number of free offsets.
    pub fn free(&self) -> u64 {
        self.size - self.used
    }

    /// The number of allocated offsets of the static band (below
    /// [`band_offset`](Self::band_offset)).
    pub fn static_used(&self) -> u64 {
        self.used_static
    }

    /// The number of free offsets of the dynamic band.
    pub fn dynamic_free(&self) -> u64 {
        (self.size - self.band_offset) - (self.used - self.used_static)
    }

    /// Whether `offset` is allocated.
    pub fn has(&self, offset: u64) -> bool {
        offset < self.size && self.offsets.contains(offset)
    }

    /// Reserves `offset`. An offset of the pool is taken out of it.
    pub fn allocate(&mut self, offset: u64) -> Result<()> {
        if offset >= self.size {
            return Err(Error::OffsetNotInRange {
                offset,
                size: self.size,
            });
        }
        if let Some(index) = self.pool.iter().position(|&pooled| pooled == offset) {
            self.pool.remove(index);
            return Ok(());
        }
        if !self.offsets.insert(offset) {
            return Err(Error::OffsetAllocated { offset });
        }
        self.count_in(offset);
        Ok(())
    }

    /// Reserves a free offset chosen with the band rule, using the allocator's own random
    /// generator.
    pub fn allocate_next(&mut self) -> Result<u64> {
        let mut rng = self.rng.clone();
        let result = self.allocate_next_with(&mut rng);
        self.rng = rng;
        result
    }

    /// Hands out the oldest offset of the pool, or else reserves a free offset chosen with the
    /// band rule, drawing the random start from `rng`. Fails with [`Error::Full`] at once
    /// when every offset is taken and the pool is empty.
    pub fn allocate_next_with(&mut self, rng: &mut impl Rng) -> Result<u64> {
        if let Some(offset) = self.pool.pop_front() {
            return Ok(offset);
        }
        if self.used >= self.size {
            return Err(Error::Full);
        }
        let band = self.band_offset;
        let dynamic_free = self.dynamic_free();
        let offset = if dynamic_free > 0 {
            let window_end = band + self.window();
            let start = rng.random_range(band..window_end);
            self.offsets
                .first_free(start, window_end)
                .or_else(|| self.offsets.first_free(band, start))
        } else {
            let start = rng.random_range(0..band);
            self.offsets
                .first_free(start, band)
                .or_else(|| self.offsets.first_free(0, start))
        };
        // The counters say a free offset exists, so the scans find one.
        let offset = offset.ok_or(Error::Full)?;
        self.offsets.insert(offset);
        self.count_in(offset);
        Ok(offset)
    }

    /// Frees `offset` (taking it out of the pool if it is there). Returns whether it was
    /// allocated; freeing a free or out-of-range offset does nothing.
    pub fn release(&mut self, offset: u64) -> bool {
        if offset >= self.size || !self.offsets.remove(offset) {
            return false;
        }
        self.pool.retain(|&pooled| pooled != offset);
        self.used -= 1;
        if offset < self.band_offset {
            self.used_static -= 1;
        }
        true
    }

    /// Adds an allocated `offset` to the pool, for [`allocate_next`](Self::allocate_next) to
    /// hand out. Returns whether it was added: a free offset, or one pooled already, is not.
    pub fn add_to_pool(&mut self, offset: u64) -> bool {
        if !self.has(offset) || self.pool.contains(&offset) {
            return false;
        }
        self.pool.push_back(offset);
        true
    }

    /// The pooled offsets, oldest first.
    pub fn pooled(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.pool.iter().copied()
    }

    /// Empties the pool; its offsets stay allocated. Returns them.
    pub fn drain_pool(&mut self) -> Vec<u64> {
        self.pool.drain(..).collect()
    }

    /// The allocated offsets, in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        self.offsets.iter()
    }

    /// The state of the allocator, to be stored.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            range: self.range.clone(),
            data: self.offsets.serialize(),
            extra: Vec::new(),
        }
    }

    /// The size in bytes of [`snapshot`](Self::snapshot)'s data, without serializing.
    pub fn snapshot_size(&self) -> usize {
        self.offsets.serialized_size()
    }

    /// Replaces the allocated offsets with those of `snapshot`; pooled offsets the snapshot
    /// does not hold leave the pool. Refuses a snapshot of another range, undecodable data
    /// and offsets outside `0..size`; on error the allocator is left unchanged.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        if snapshot.range != self.range {
            return Err(Error::RangeMismatch {
                expected: self.range.clone(),
                found: snapshot.range.clone(),
            });
        }
        let corrupt = |reason: String| Error::CorruptSnapshot {
            range: snapshot.range.clone(),
            reason,
        };
        let offsets = self
            .offsets
            .deserialize(&snapshot.data)
            .map_err(|err| corrupt(err.to_string()))?;
        if let Some(max) = offsets.max().filter(|&max| max >= self.size) {
            return Err(corrupt(format!(
                "offset {max} is beyond the {} offsets of the range",
                self.size
            )));
        }
        self.used = offsets.len();
        self.used_static = offsets.count_below(self.band_offset);
        self.offsets = offsets;
        let offsets = &self.offsets;
        self.pool.retain(|&pooled| offsets.contains(pooled));
        Ok(())
    }

    /// The width of the part of the dynamic band that random starts are drawn from. It is at
    /// least four times `used` (or the whole band), so it always has a free offset when the
    /// dynamic band has one.
    fn window(&self) -> u64 {
        let band = self.size - self.band_offset;
        if band <= UNIFORM_BAND_LIMIT {
            return band;
        }
        self.used
            .saturating_mul(4)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .clamp(MIN_WINDOW, band)
    }

    fn count_in(&mut self, offset: u64) {
        self.used += 1;
        if offset < self.band_offset {
            self.used_static += 1;
        }
    }
}

#[cfg(test)]
mod tests;
