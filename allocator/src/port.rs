//! NodePort ranges (`--service-node-port-range`) and their allocator.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::bitmap::{OffsetAllocator, Snapshot};
use crate::error::{Error, Result};

/// An inclusive range of node ports, `30000-32767` by default (2768 ports).
///
/// Parses from `first-last` (`30000-32767`), `base+count` (`30000+2767`, the ports from base
/// to base + count, both included) or a single port, as kube-apiserver does. Port 0 means
/// "allocate one" in a Service, so it can never be part of the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The ports `first..=last`.
    pub fn new(first: u16, last: u16) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidPortRange {
            input: format!("{first}-{last}"),
            reason: reason.to_string(),
        };
        if last < first {
            return Err(invalid("end port cannot be less than start port"));
        }
        if first == 0 {
            return Err(invalid("port 0 cannot be a node port"));
        }
        Ok(PortRange { first, last })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port (included).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// The number of ports.
    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Where the dynamic band starts (KEP-3668): 0 if the range has at most 16 ports, else
    /// `clamp(size / 32, 16, 128)` (86 for the default range).
    pub fn band_offset(&self) -> u64 {
        let size = self.size();
        if size <= 16 {
            return 0;
        }
        (size / 32).clamp(16, 128)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            first: 30000,
            last: 32767,
        }
    }
}

impl FromStr for PortRange {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidPortRange {
            input: input.to_string(),
            reason,
        };
        let port = |s: &str| -> Result<u32> {
            let s = s.trim();
            let value: u32 = s
                .parse()
                .map_err(|_| invalid(format!("{s:?} is not a port number")))?;
            if value > u32::from(u16::MAX) {
                return Err(invalid(
                    "the port range cannot be greater than 65535".to_string(),
                ));
            }
            Ok(value)
        };
        let value = input.trim();
        let (first, last) = match (value.split_once('-'), value.split_once('+')) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "use either first-last or base+count, not both".to_string(),
                ));
            }
            (Some((first, last)), None) => (port(first)?, port(last)?),
            (None, Some((base, count))) => {
                let base = port(base)?;
                (base, base + port(count)?)
            }
            (None, None) if value.is_empty() => {
                return Err(invalid(
                    "expected first-last (30000-32767) or base+count (30000+2767)".to_string(),
                ));
            }
            (None, None) => {
                let single = port(value)?;
                (single, single)
            }
        };
        if last > u32::from(u16::MAX) {
            return Err(invalid(
                "the port range cannot be greater than 65535".to_string(),
            ));
        }
        // Both fit in u16 now.
        PortRange::new(first as u16, last as u16).map_err(|err| match err {
            Error::InvalidPortRange { reason, .. } => invalid(reason),
            other => other,
        })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Allocates the node ports of one [`PortRange`].
#[derive(Clone, Debug)]
pub struct NodePortAllocator {
    range: PortRange,
    offsets: OffsetAllocator,
}

impl NodePortAllocator {
    /// An empty allocator for `range`, with a random generator seeded by the OS.
    pub fn new(range: PortRange) -> Self {
        NodePortAllocator {
            range,
            offsets: OffsetAllocator::new(range.to_string(), range.size(), range.band_offset()),
        }
    }

    /// An allocator restored from `snapshot`, whose range it takes.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Self> {
        let mut allocator = NodePortAllocator::new(snapshot.range.parse()?);
        allocator.restore(snapshot)?;
        Ok(allocator)
    }

    /// The same allocator with its random generator seeded from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.offsets = self.offsets.with_seed(seed);
        self
    }

    /// The range.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The number of ports.
    pub fn size(&self) -> u64 {
        self.offsets.size()
    }

    /// The offsets underneath.
    pub(crate) fn offsets(&self) -> &OffsetAllocator {
        &self.offsets
    }

    /// The number of allocated ports.
    pub fn used(&self) -> u64 {
        self.offsets.used()
    }

    /// The number of free ports.
    pub fn free(&self) -> u64 {
        self.offsets.free()
    }

    /// Reserves `port`. Fails with [`Error::PortNotInRange`] or [`Error::PortAllocated`].
    pub fn allocate(&mut self, port: u16) -> Result<()> {
        let offset = self.offset_of(port)?;
        self.offsets
            .allocate(offset)
            .map_err(|_| Error::PortAllocated)
    }

    /// Reserves a free port, preferring the dynamic band. Fails with [`Error::Full`].
    pub fn allocate_next(&mut self) -> Result<u16> {
        let offset = self.offsets.allocate_next()?;
        Ok(self.port_at(offset))
    }

    /// Like [`allocate_next`](Self::allocate_next), drawing the random start from `rng`.
    pub fn allocate_next_with(&mut self, rng: &mut impl Rng) -> Result<u16> {
        let offset = self.offsets.allocate_next_with(rng)?;
        Ok(self.port_at(offset))
    }

    /// Frees `port`. Returns whether it was allocated; freeing a free port or one outside the
    /// range does nothing.
    pub fn release(&mut self, port: u16) -> bool {
        self.range.contains(port) && self.offsets.release(u64::from(port - self.range.first))
    }

    /// Whether `port` is allocated.
    pub fn has(&self, port: u16) -> bool {
        self.range.contains(port) && self.offsets.has(u64::from(port - self.range.first))
    }

    /// The number of free ports of the dynamic band.
    pub fn dynamic_free(&self) -> u64 {
        self.offsets.dynamic_free()
    }

    /// Adds an allocated `port` to the pool that [`allocate_next`](Self::allocate_next) hands
    /// out first (see [`OffsetAllocator::add_to_pool`]). Returns whether it was added.
    pub fn add_to_pool(&mut self, port: u16) -> bool {
        self.range.contains(port) && self.offsets.add_to_pool(u64::from(port - self.range.first))
    }

    /// The pooled ports, oldest first.
    pub fn pooled(&self) -> impl ExactSizeIterator<Item = u16> + '_ {
        self.offsets.pooled().map(|offset| self.port_at(offset))
    }

    /// Empties the pool; its ports stay allocated.
    pub fn drain_pool(&mut self) {
        self.offsets.drain_pool();
    }

    /// The allocated ports, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.offsets.iter().map(|offset| self.port_at(offset))
    }

    /// The state to store: the range and the roaring serialization of the allocated offsets.
    pub fn snapshot(&self) -> Snapshot {
        self.offsets.snapshot()
    }

    /// The size in bytes of the snapshot's data, without serializing.
    pub fn snapshot_size(&self) -> usize {
        self.offsets.snapshot_size()
    }

    /// Replaces the allocated ports with those of `snapshot`, which must be of the same
    /// range.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.offsets.restore(snapshot)
    }

    fn offset_of(&self, port: u16) -> Result<u64> {
        if !self.range.contains(port) {
            return Err(Error::PortNotInRange {
                port,
                range: self.range,
            });
        }
        Ok(u64::from(port - self.range.first))
    }

    fn port_at(&self, offset: u64) -> u16 {
        // Offsets are below the range's size, so the port fits.
        self.range.first + offset as u16
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn range(s: &str) -> PortRange {
        s.parse().unwrap()
    }

    #[test]
    fn parses_both_notations() {
        assert_eq!(range("30000-32767"), PortRange::default());
        assert_eq!(range("30000+2767"), PortRange::default());
        assert_eq!(range(" 30000 - 32767 "), PortRange::default());
        assert_eq!(range("30000").size(), 1);
        assert_eq!(PortRange::default().size(), 2768);
        assert_eq!(PortRange::default().to_string(), "30000-32767");
    }

    #[test]
    fn bad_ranges_say_why() {
        for (input, reason) in [
            (
                "",
                "expected first-last (30000-32767) or base+count (30000+2767)",
            ),
            ("3000x-32767", "\"3000x\" is not a port number"),
            ("30000-", "\"\" is not a port number"),
            ("30000-70000", "the port range cannot be greater than 65535"),
            ("65000+1000", "the port range cannot be greater than 65535"),
            ("32767-30000", "end port cannot be less than start port"),
            ("0-100", "port 0 cannot be a node port"),
            ("1-2+3", "use either first-last or base+count, not both"),
            ("-5-10", "\"\" is not a port number"),
        ] {
            assert_eq!(
                input.parse::<PortRange>(),
                Err(Error::InvalidPortRange {
                    input: input.into(),
                    reason: reason.into()
                }),
                "{input}"
            );
        }
    }

    /// Mirrors the in-tree calculateRangeOffset table.
    #[test]
    fn band_offsets_follow_kep_3668() {
        for (input, band) in [
            ("30000-32767", 86),
            ("30000-30015", 0),
            ("30000-30016", 16),
            ("30000-30511", 16),
            ("30000-30799", 25),
            ("25000-35000", 128),
            ("1-65535", 128),
        ] {
            assert_eq!(range(input).band_offset(), band, "{input}");
        }
    }

    #[test]
    fn fills_the_default_range_then_is_full() {
        let mut alloc = NodePortAllocator::new(PortRange::default()).with_seed(1);
        let mut seen = HashSet::new();
        for i in 0..2768 {
            let port = alloc.allocate_next().unwrap();
            assert!(PortRange::default().contains(port));
            assert!(seen.insert(port), "{port} twice");
            if i < 2768 - 86 {
                assert!(port >= 30086, "{port} from the static band too early");
            }
        }
        assert_eq!(alloc.allocate_next(), Err(Error::Full));
        assert_eq!(
            alloc.allocate_next().unwrap_err().to_string(),
            "range is full"
        );
    }

    #[test]
    fn specific_ports_and_messages() {
        let mut alloc = NodePortAllocator::new(PortRange::default()).with_seed(1);
        assert_eq!(alloc.allocate(30000), Ok(()));
        assert_eq!(
            alloc.allocate(30000).unwrap_err().to_string(),
            "provided port is already allocated"
        );
        assert_eq!(
            alloc.allocate(80).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        assert!(alloc.has(30000));
        assert!(alloc.release(30000));
        assert!(!alloc.release(30000));
        assert!(!alloc.release(80));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut alloc = NodePortAllocator::new(PortRange::default()).with_seed(1);
        for _ in 0..100 {
            alloc.allocate_next().unwrap();
        }
        let snapshot = alloc.snapshot();
        assert_eq!(snapshot.range, "30000-32767");
        let restored = NodePortAllocator::from_snapshot(&snapshot).unwrap();
        assert!(restored.iter().eq(alloc.iter()));
        let mut other = NodePortAllocator::new(range("30000-32000"));
        assert!(matches!(
            other.restore(&snapshot),
            Err(Error::RangeMismatch { .. })
        ));
    }
}
