//! ClusterIP ranges (`--service-cluster-ip-range`) and their allocator.
//!
//! Offset 0 of a range is the address after the network address. The network address is never
//! allocatable, and neither is the IPv4 broadcast address; the all-ones IPv6 address is. IPv4
//! ranges may be as large as a /8 and IPv6 ranges as large as a /64 (the in-tree allocator stops
//! at 2^20 addresses, and only ever uses the low 16 bits of an IPv6 range); a range needs at
//! least 8 addresses. Memory and snapshot size grow with the number of allocated addresses,
//! not with the size of the range: see [`crate::bitmap`] for how the dynamic band of a huge
//! IPv6 range keeps its allocations dense.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use rand::Rng;

use crate::bitmap::{OffsetAllocator, Snapshot};
use crate::error::{Error, Result};
use crate::family::IpFamily;

/// The longest IPv4 prefix: a /29 has 8 addresses.
const MAX_PREFIX_V4: u8 = 29;
/// The shortest IPv4 prefix.
const MIN_PREFIX_V4: u8 = 8;
/// The longest IPv6 prefix: a /125 has 8 addresses.
const MAX_PREFIX_V6: u8 = 125;
/// The shortest IPv6 prefix: offsets must fit in 64 bits.
const MIN_PREFIX_V6: u8 = 64;

/// A validated service CIDR: IPv4 from /8 to /29, IPv6 from /64 to /125.
///
/// Parses from the usual notation (`10.96.0.0/12`, `fd00:10:96::/108`); host bits are
/// cleared, as kube-apiserver does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    net: IpNet,
}

impl IpRange {
    /// Validates `net` as a service CIDR.
    pub fn new(net: IpNet) -> Result<Self> {
        let net = net.trunc();
        let (min, max) = match net {
            IpNet::V4(_) => (MIN_PREFIX_V4, MAX_PREFIX_V4),
            IpNet::V6(_) => (MIN_PREFIX_V6, MAX_PREFIX_V6),
        };
        let invalid = |reason: String| Error::InvalidCidr {
            cidr: net.to_string(),
            reason,
        };
        if net.prefix_len() > max {
            return Err(invalid(format!(
                "a service range needs at least 8 addresses (prefix /{max} or shorter)"
            )));
        }
        if net.prefix_len() < min {
            return Err(invalid(format!(
                "prefixes shorter than /{min} are not supported for {}",
                IpFamily::of_net(&net)
            )));
        }
        Ok(IpRange { net })
    }

    /// The CIDR.
    pub fn cidr(&self) -> IpNet {
        self.net
    }

    /// The IP family of the range.
    pub fn family(&self) -> IpFamily {
        IpFamily::of_net(&self.net)
    }

    /// The number of addresses of the CIDR, reserved ones included (2^(bits - prefix)).
    pub fn addresses(&self) -> u128 {
        1u128 << (self.net.max_prefix_len() - self.net.prefix_len())
    }

    /// The number of allocatable addresses: all but the network address, and for IPv4 also
    /// the broadcast address. At most `2^64 - 1`, for an IPv6 /64.
    pub fn size(&self) -> u64 {
        let reserved = match self.net {
            IpNet::V4(_) => 2,
            IpNet::V6(_) => 1,
        };
        // Prefixes are bounded so that this fits: at most 2^64 - 1.
        (self.addresses() - reserved) as u64
    }

    /// Where the dynamic band starts (KEP-3070): 0 if the CIDR has at most 16 addresses,
    /// else `clamp(addresses / 16, 16, 256)`.
    pub fn band_offset(&self) -> u64 {
        let addresses = self.addresses();
        if addresses <= 16 {
            return 0;
        }
        (addresses / 16).clamp(16, 256) as u64
    }

    /// Whether `ip` is an allocatable address of the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }

    /// The offset of `ip`, or `None` when it is not an allocatable address of the range.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u64> {
        if !self.net.contains(&ip) {
            return None;
        }
        let index = to_u128(ip) - to_u128(self.net.network());
        let offset = u64::try_from(index.checked_sub(1)?).ok()?;
        (offset < self.size()).then_some(offset)
    }

    /// The address at `offset` (which must be below [`size`](Self::size)).
    pub fn ip_at(&self, offset: u64) -> IpAddr {
        let value = to_u128(self.net.network()) + 1 + u128::from(offset);
        match self.net {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(ip) => u128::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

impl FromStr for IpRange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let net = s
            .trim()
            .parse::<IpNet>()
            .map_err(|err| Error::InvalidCidr {
                cidr: s.to_string(),
                reason: err.to_string(),
            })?;
        IpRange::new(net)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.net.fmt(f)
    }
}

/// Allocates the cluster IPs of one [`IpRange`].
#[derive(Clone, Debug)]
pub struct ClusterIpAllocator {
    range: IpRange,
    offsets: OffsetAllocator,
}

impl ClusterIpAllocator {
    /// An empty allocator for `range`, with a random generator seeded by the OS.
    pub fn new(range: IpRange) -> Self {
        ClusterIpAllocator {
            range,
            offsets: OffsetAllocator::new(range.to_string(), range.size(), range.band_offset()),
        }
    }

    /// An allocator restored from `snapshot`, whose range it takes.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Self> {
        let mut allocator = ClusterIpAllocator::new(snapshot.range.parse()?);
        allocator.restore(snapshot)?;
        Ok(allocator)
    }

    /// The same allocator with its random generator seeded from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.offsets = self.offsets.with_seed(seed);
        self
    }

    /// The range.
    pub fn range(&self) -> IpRange {
        self.range
    }

    /// The CIDR of the range.
    pub fn cidr(&self) -> IpNet {
        self.range.cidr()
    }

    /// The IP family of the range.
    pub fn family(&self) -> IpFamily {
        self.range.family()
    }

    /// The number of allocatable addresses.
    pub fn size(&self) -> u64 {
        self.offsets.size()
    }

    /// The offsets underneath.
    pub(crate) fn offsets(&self) -> &OffsetAllocator {
        &self.offsets
    }

    /// The number of allocated addresses.
    pub fn used(&self) -> u64 {
        self.offsets.used()
    }

    /// The number of free addresses.
    pub fn free(&self) -> u64 {
        self.offsets.free()
    }

    /// Reserves `ip`.
    ///
    /// Fails with [`Error::IpNotInRange`] for an address outside the range, the network
    /// address or the IPv4 broadcast address, and with [`Error::IpAllocated`] when taken.
    pub fn allocate(&mut self, ip: IpAddr) -> Result<()> {
        let offset = self.offset_of(ip)?;
        self.offsets
            .allocate(offset)
            .map_err(|_| Error::IpAllocated)
    }

    /// Reserves a free address, preferring the dynamic band. Fails with [`Error::Full`].
    pub fn allocate_next(&mut self) -> Result<IpAddr> {
        let offset = self.offsets.allocate_next()?;
        Ok(self.range.ip_at(offset))
    }

    /// Like [`allocate_next`](Self::allocate_next), drawing the random start from `rng`.
    pub fn allocate_next_with(&mut self, rng: &mut impl Rng) -> Result<IpAddr> {
        let offset = self.offsets.allocate_next_with(rng)?;
        Ok(self.range.ip_at(offset))
    }

    /// Frees `ip`. Returns whether it was allocated; freeing a free address or one outside
    /// the range does nothing.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.range
            .offset_of(ip)
            .is_some_and(|offset| self.offsets.release(offset))
    }

    /// Whether `ip` is allocated.
    pub fn has(&self, ip: IpAddr) -> bool {
        self.range
            .offset_of(ip)
            .is_some_and(|offset| self.offsets.has(offset))
    }

    /// The number of free addresses of the dynamic band.
    pub fn dynamic_free(&self) -> u64 {
        self.offsets.dynamic_free()
    }

    /// Adds an allocated `ip` to the pool that [`allocate_next`](Self::allocate_next) hands
    /// out first (see [`OffsetAllocator::add_to_pool`]). Returns whether it was added.
    pub fn add_to_pool(&mut self, ip: IpAddr) -> bool {
        self.range
            .offset_of(ip)
            .is_some_and(|offset| self.offsets.add_to_pool(offset))
    }

    /// The pooled addresses, oldest first.
    pub fn pooled(&self) -> impl ExactSizeIterator<Item = IpAddr> + '_ {
        self.offsets.pooled().map(|offset| self.range.ip_at(offset))
    }

    /// Empties the pool; its addresses stay allocated.
    pub fn drain_pool(&mut self) {
        self.offsets.drain_pool();
    }

    /// The allocated addresses, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.offsets.iter().map(|offset| self.range.ip_at(offset))
    }

    /// The state to store: the CIDR and the roaring serialization of the allocated offsets.
    pub fn snapshot(&self) -> Snapshot {
        self.offsets.snapshot()
    }

    /// The size in bytes of the snapshot's data, without serializing.
    pub fn snapshot_size(&self) -> usize {
        self.offsets.snapshot_size()
    }

    /// Replaces the allocated addresses with those of `snapshot`, which must be of the same
    /// range.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.offsets.restore(snapshot)
    }

    fn offset_of(&self, ip: IpAddr) -> Result<u64> {
        self.range.offset_of(ip).ok_or(Error::IpNotInRange {
            ip,
            cidr: self.range.cidr(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn range(cidr: &str) -> IpRange {
        cidr.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn allocator(cidr: &str) -> ClusterIpAllocator {
        ClusterIpAllocator::new(range(cidr)).with_seed(42)
    }

    #[test]
    fn band_offsets_follow_kep_3070() {
        for (cidr, band) in [
            ("192.168.1.0/29", 0),
            ("192.168.1.0/28", 0),
            ("192.168.1.0/27", 16),
            ("192.168.1.0/25", 16),
            ("192.168.1.0/22", 64),
            ("10.96.0.0/12", 256),
            ("10.0.0.0/8", 256),
            ("fd00::/124", 0),
            ("fd00::/122", 16),
            ("fd00::/118", 64),
            ("fd00::/108", 256),
            ("fd00::/64", 256),
        ] {
            assert_eq!(range(cidr).band_offset(), band, "{cidr}");
        }
    }

    #[test]
    fn sizes_exclude_network_and_ipv4_broadcast() {
        for (cidr, size) in [
            ("192.168.1.0/29", 6),
            ("192.168.1.0/24", 254),
            ("10.0.0.0/15", 131_070),
            ("10.96.0.0/12", 1_048_574),
            ("10.0.0.0/8", 16_777_214),
            ("fd00::/125", 7),
            ("2001:db8:1::/112", 65_535),
            ("fd00::/64", u64::MAX),
        ] {
            assert_eq!(range(cidr).size(), size, "{cidr}");
        }
    }

    #[test]
    fn tiny_and_huge_ranges_are_refused() {
        for cidr in [
            "192.168.1.0/32",
            "192.168.1.0/31",
            "192.168.1.0/30",
            "10.0.0.0/7",
            "fd00::/128",
            "fd00::/126",
            "fd00::/63",
            "not-a-cidr",
            "10.0.0.0",
        ] {
            assert!(
                matches!(cidr.parse::<IpRange>(), Err(Error::InvalidCidr { .. })),
                "{cidr}"
            );
        }
    }

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(range("192.168.1.77/24").to_string(), "192.168.1.0/24");
    }

    #[test]
    fn slash_29_works() {
        let mut alloc = allocator("192.168.1.0/29");
        let got: HashSet<_> = (0..6).map(|_| alloc.allocate_next().unwrap()).collect();
        let want: HashSet<_> = (1..=6).map(|i| ip(&format!("192.168.1.{i}"))).collect();
        assert_eq!(got, want);
        assert_eq!(alloc.allocate_next(), Err(Error::Full));
    }

    /// Mirrors the in-tree TestAllocate table.
    #[test]
    fn allocate_table() {
        struct Case {
            cidr: &'static str,
            free: u64,
            released: &'static str,
            out_of_range: &'static [&'static str],
            already_allocated: &'static str,
        }
        let cases = [
            Case {
                cidr: "192.168.1.0/24",
                free: 254,
                released: "192.168.1.5",
                out_of_range: &["192.168.0.1", "192.168.1.0", "192.168.1.255", "192.168.2.2"],
                already_allocated: "192.168.1.1",
            },
            Case {
                cidr: "10.0.0.0/15",
                free: 131_070,
                released: "10.0.0.5",
                out_of_range: &["10.0.0.0", "10.1.255.255", "10.255.255.2"],
                already_allocated: "10.0.0.1",
            },
            Case {
                cidr: "2001:db8:1::/112",
                free: 65_535,
                released: "2001:db8:1::5",
                out_of_range: &[
                    "2001:db8::1",
                    "2001:db8:1::",
                    "2001:db8:1::1:0",
                    "2001:db8:2::2",
                ],
                already_allocated: "2001:db8:1::1",
            },
        ];
        for case in cases {
            let mut alloc = allocator(case.cidr);
            assert_eq!(
                (alloc.free(), alloc.used()),
                (case.free, 0),
                "{}",
                case.cidr
            );
            let cidr = range(case.cidr).cidr();
            let mut found = HashSet::new();
            while alloc.free() > 0 {
                let ip = alloc.allocate_next().unwrap();
                assert!(cidr.contains(&ip), "{ip} outside {cidr}");
                assert!(found.insert(ip), "{ip} allocated twice");
            }
            assert_eq!(alloc.allocate_next(), Err(Error::Full));

            let released = ip(case.released);
            assert!(alloc.release(released));
            assert_eq!((alloc.free(), alloc.used()), (1, case.free - 1));
            assert_eq!(alloc.allocate_next(), Ok(released));
            assert!(alloc.release(released));

            for &out in case.out_of_range {
                assert_eq!(
                    alloc.allocate(ip(out)),
                    Err(Error::IpNotInRange { ip: ip(out), cidr }),
                    "{out}"
                );
            }
            assert_eq!(
                alloc.allocate(ip(case.already_allocated)),
                Err(Error::IpAllocated)
            );
            assert_eq!(alloc.allocate(released), Ok(()));
            assert_eq!((alloc.free(), alloc.used()), (0, case.free));
        }
    }

    #[test]
    fn ipv6_all_ones_is_valid_network_is_not() {
        let mut alloc = allocator("fd00::/125");
        assert_eq!(alloc.allocate(ip("fd00::7")), Ok(()));
        assert!(matches!(
            alloc.allocate(ip("fd00::")),
            Err(Error::IpNotInRange { .. })
        ));
        assert!(!alloc.release(ip("fd00::")));
    }

    /// Mirrors the in-tree TestAllocateReserved: the dynamic band fills first.
    #[test]
    fn reserved_band_is_filled_last() {
        let mut alloc = allocator("192.168.1.0/25");
        let band = range("192.168.1.0/25").band_offset();
        assert_eq!(band, 16);
        for _ in band..alloc.size() {
            alloc.allocate_next().unwrap();
        }
        for offset in band..alloc.size() {
            assert!(alloc.has(ip(&format!("192.168.1.{}", offset + 1))));
        }
        assert_eq!(alloc.free(), band);
        for offset in 0..band {
            alloc
                .allocate(ip(&format!("192.168.1.{}", offset + 1)))
                .unwrap();
        }
        assert_eq!(alloc.free(), 0);
        assert!(alloc.release(ip("192.168.1.10")));
        assert_eq!(alloc.allocate_next(), Ok(ip("192.168.1.10")));
    }

    #[test]
    fn error_messages_keep_the_in_tree_wording() {
        let mut alloc = allocator("10.0.0.0/24");
        alloc.allocate(ip("10.0.0.1")).unwrap();
        assert_eq!(
            alloc.allocate(ip("10.0.0.1")).unwrap_err().to_string(),
            "provided IP is already allocated"
        );
        assert_eq!(
            alloc.allocate(ip("10.0.1.1")).unwrap_err().to_string(),
            "the provided network does not match the current range"
        );
    }

    #[test]
    fn snapshot_names_the_cidr_and_restores() {
        let mut alloc = allocator("10.96.0.0/12");
        for _ in 0..1000 {
            alloc.allocate_next().unwrap();
        }
        let snapshot = alloc.snapshot();
        assert_eq!(snapshot.range, "10.96.0.0/12");
        let restored = ClusterIpAllocator::from_snapshot(&snapshot).unwrap();
        assert!(restored.iter().eq(alloc.iter()));

        let mut other = allocator("10.96.0.0/13");
        assert!(matches!(
            other.restore(&snapshot),
            Err(Error::RangeMismatch { .. })
        ));
    }

    #[test]
    fn slash_64_allocates_densely() {
        let mut alloc = allocator("fd00:10:96::/64");
        for _ in 0..10_000 {
            alloc.allocate_next().unwrap();
        }
        let max = alloc.iter().last().unwrap();
        assert!(range("fd00:10:96::/64").offset_of(max).unwrap() < 256 + crate::bitmap::MIN_WINDOW);
        assert_eq!(alloc.used(), 10_000);
    }
}
