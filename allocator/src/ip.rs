//! ClusterIP ranges (`--service-cluster-ip-range`) and their allocator.
//!
//! Offset 0 of a range is the address after the network address. The network address is never
//! allocatable, and neither is the IPv4 broadcast address; the all-ones IPv6 address is. IPv4
//! ranges may be as large as a /8 and IPv6 ranges as large as a /64 (the in-tree allocator stops
//! at 2^20 addresses, and only ever uses the low 16 bits of an IPv6 range); a range needs at
//! least 8 addresses. Memory and snapshot size grow with the number of allocated addresses,
//! not with the size of the range: see [`crate::bitmap`] for how the dynamic band of a huge
//! IPv6 range keeps its allocations dense.
//!
//! A family may have several ranges (a cluster's ServiceCIDR objects add them at run time):
//! [`ClusterIpAllocator`] keeps them together.

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Allocates the cluster IPs of one family: its primary range (`--service-cluster-ip-range`)
/// and the further ranges of the cluster's ServiceCIDR objects.
///
/// Each range keeps its own offsets, bands and pool. An address that lies in several ranges
/// (ServiceCIDRs may overlap) is allocated in all of them or in none, so that no range hands
/// out what another holds. New addresses come only from *usable* ranges (listed by a ready
/// ServiceCIDR that is not being deleted), in order: the primary range, then the others by
/// CIDR. Addresses of a range that is no longer usable stay allocated until released.
#[derive(Clone, Debug)]
pub struct ClusterIpAllocator {
    /// The primary range first, then the others in CIDR order.
    sections: Vec<Section>,
}

/// One range of a family.
#[derive(Clone, Debug)]
struct Section {
    range: IpRange,
    offsets: OffsetAllocator,
    /// New addresses may come from it.
    usable: bool,
    /// The primary range, or listed by a ServiceCIDR: kept while so. Other ranges are only
    /// carried from a stored snapshot (another replica knows of a ServiceCIDR this one does
    /// not yet).
    listed: bool,
}

impl Section {
    fn new(range: IpRange, usable: bool, listed: bool) -> Self {
        Section {
            range,
            offsets: OffsetAllocator::new(range.to_string(), range.size(), range.band_offset()),
            usable,
            listed,
        }
    }

    fn overlaps(&self, other: &IpRange) -> bool {
        let (a, b) = (self.range.cidr(), other.cidr());
        a.contains(&b.network()) || b.contains(&a.network())
    }

    /// Whether another range of the family holds every address of this one.
    fn is_nested_in(&self, sections: &[Section]) -> bool {
        let net = self.range.cidr();
        sections.iter().any(|other| {
            let outer = other.range.cidr();
            outer != net && outer.contains(&net)
        })
    }
}

/// One range of a family as [`ClusterIpAllocator::ranges`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeUse {
    /// The range.
    pub range: IpRange,
    /// New addresses may come from it.
    pub usable: bool,
    /// The primary range (from the flags).
    pub primary: bool,
    /// Allocated addresses.
    pub used: u64,
    /// Allocatable addresses.
    pub size: u64,
}

impl ClusterIpAllocator {
    /// An empty allocator for `range`, with a random generator seeded by the OS.
    pub fn new(range: IpRange) -> Self {
        ClusterIpAllocator {
            sections: vec![Section::new(range, true, true)],
        }
    }

    /// An allocator restored from `snapshot`, whose range it takes.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Self> {
        let mut allocator = ClusterIpAllocator::new(snapshot.range.parse()?);
        allocator.restore(snapshot)?;
        Ok(allocator)
    }

    /// The same allocator with its random generators seeded from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        for (index, section) in self.sections.iter_mut().enumerate() {
            section.offsets = section
                .offsets
                .clone()
                .with_seed(seed.wrapping_add(index as u64));
        }
        self
    }

    fn primary(&self) -> &Section {
        &self.sections[0]
    }

    /// The primary range.
    pub fn range(&self) -> IpRange {
        self.primary().range
    }

    /// The CIDR of the primary range.
    pub fn cidr(&self) -> IpNet {
        self.range().cidr()
    }

    /// The IP family.
    pub fn family(&self) -> IpFamily {
        self.range().family()
    }

    /// Every range, primary first, with its use.
    pub fn ranges(&self) -> Vec<RangeUse> {
        self.sections
            .iter()
            .enumerate()
            .map(|(index, section)| RangeUse {
                range: section.range,
                usable: section.usable,
                primary: index == 0,
                used: section.offsets.used(),
                size: section.offsets.size(),
            })
            .collect()
    }

    /// The ranges that hold every address of the family once: those not nested in another.
    fn outermost(&self) -> impl Iterator<Item = &Section> {
        self.sections
            .iter()
            .filter(|section| !section.is_nested_in(&self.sections))
    }

    /// The number of allocatable addresses, over every range (nested ones counted once).
    pub fn size(&self) -> u64 {
        self.outermost().map(|s| s.offsets.size()).sum()
    }

    /// The primary range's offsets (its usage, bands and pool), for the primary-only case.
    pub(crate) fn offsets(&self) -> &OffsetAllocator {
        &self.primary().offsets
    }

    /// The number of allocated addresses, over every range (nested ones counted once).
    pub fn used(&self) -> u64 {
        self.outermost().map(|s| s.offsets.used()).sum()
    }

    /// The number of free addresses, over every range (nested ones counted once).
    pub fn free(&self) -> u64 {
        self.outermost().map(|s| s.offsets.free()).sum()
    }

    /// Whether a usable range has a free address (one [`allocate_next`](Self::allocate_next)
    /// could give, pools aside).
    pub fn has_free(&self) -> bool {
        self.sections
            .iter()
            .any(|s| s.usable && s.offsets.free() > 0)
    }

    /// Reserves `ip`, in every range that holds it.
    ///
    /// Fails with [`Error::IpNotInRange`] when no usable range holds it (outside every range,
    /// a network address, an IPv4 broadcast address, or only in ranges being deleted), and
    /// with [`Error::IpAllocated`] when taken.
    pub fn allocate(&mut self, ip: IpAddr) -> Result<()> {
        self.reserve(ip, true)
    }

    /// Reserves `ip` as a Service holds it, in every range that holds it, usable or not (a
    /// Service keeps its address while its ServiceCIDR is being deleted). Fails as
    /// [`allocate`](Self::allocate) does, for an address outside every range or taken.
    pub fn mark(&mut self, ip: IpAddr) -> Result<()> {
        self.reserve(ip, false)
    }

    fn reserve(&mut self, ip: IpAddr, from_usable: bool) -> Result<()> {
        let allowed = |s: &Section| s.usable || !from_usable;
        if !self
            .sections
            .iter()
            .any(|s| s.range.contains(ip) && allowed(s))
        {
            return Err(Error::IpNotInRange {
                ip,
                cidr: self.cidr(),
            });
        }
        // A pooled address is handed out of its pool (it is allocated everywhere already).
        let pooled_in = |s: &Section| {
            let offset = s.range.offset_of(ip)?;
            s.offsets.pooled().any(|o| o == offset).then_some(offset)
        };
        if let Some((section, offset)) = self
            .sections
            .iter_mut()
            .find_map(|s| pooled_in(s).map(|offset| (s, offset)))
        {
            return section.offsets.allocate(offset);
        }
        if self.has(ip) {
            return Err(Error::IpAllocated);
        }
        for section in &mut self.sections {
            if let Some(offset) = section.range.offset_of(ip) {
                // Free in every range holding it (checked above): this cannot fail.
                let _ = section.offsets.allocate(offset);
            }
        }
        Ok(())
    }

    /// Reserves a free address: a pooled one if a usable range has one, else from the first
    /// usable range with a free address, preferring its dynamic band. Fails with
    /// [`Error::Full`] when every usable range is full.
    pub fn allocate_next(&mut self) -> Result<IpAddr> {
        self.next(|offsets| offsets.allocate_next())
    }

    /// Like [`allocate_next`](Self::allocate_next), drawing the random start from `rng`.
    pub fn allocate_next_with(&mut self, rng: &mut impl Rng) -> Result<IpAddr> {
        self.next(|offsets| offsets.allocate_next_with(rng))
    }

    fn next(
        &mut self,
        mut pick: impl FnMut(&mut OffsetAllocator) -> Result<u64>,
    ) -> Result<IpAddr> {
        let usable = |s: &Section| s.usable;
        // A pooled address is allocated in every range holding it already.
        if let Some(section) = self
            .sections
            .iter_mut()
            .find(|s| usable(s) && s.offsets.pooled().len() > 0)
        {
            let offset = pick(&mut section.offsets)?;
            return Ok(section.range.ip_at(offset));
        }
        for index in 0..self.sections.len() {
            if !usable(&self.sections[index]) {
                continue;
            }
            match pick(&mut self.sections[index].offsets) {
                Ok(offset) => {
                    let ip = self.sections[index].range.ip_at(offset);
                    for (other, section) in self.sections.iter_mut().enumerate() {
                        if let Some(offset) = section.range.offset_of(ip)
                            && other != index
                        {
                            let _ = section.offsets.allocate(offset);
                        }
                    }
                    return Ok(ip);
                }
                Err(Error::Full) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(Error::Full)
    }

    /// Frees `ip` in every range holding it. Returns whether it was allocated; freeing a
    /// free address or one outside every range does nothing.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        let mut released = false;
        for section in &mut self.sections {
            if let Some(offset) = section.range.offset_of(ip) {
                released |= section.offsets.release(offset);
            }
        }
        released
    }

    /// Whether `ip` is allocated.
    pub fn has(&self, ip: IpAddr) -> bool {
        self.sections
            .iter()
            .any(|s| s.range.offset_of(ip).is_some_and(|o| s.offsets.has(o)))
    }

    /// Whether some range of the family holds `ip`, usable or not.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.sections.iter().any(|s| s.range.contains(ip))
    }

    /// The number of free addresses of the usable ranges' dynamic bands.
    pub fn dynamic_free(&self) -> u64 {
        self.outermost()
            .filter(|s| s.usable)
            .map(|s| s.offsets.dynamic_free())
            .sum()
    }

    /// Adds an allocated `ip` to the pool that [`allocate_next`](Self::allocate_next) hands
    /// out first (see [`OffsetAllocator::add_to_pool`]): the pool of the first usable range
    /// holding it. Returns whether it was added.
    pub fn add_to_pool(&mut self, ip: IpAddr) -> bool {
        if self.pooled().any(|pooled| pooled == ip) {
            return false;
        }
        self.sections
            .iter_mut()
            .filter(|s| s.usable)
            .find_map(|s| s.range.offset_of(ip).map(|offset| (s, offset)))
            .is_some_and(|(s, offset)| s.offsets.add_to_pool(offset))
    }

    /// The pooled addresses, oldest first within each range.
    pub fn pooled(&self) -> impl ExactSizeIterator<Item = IpAddr> + '_ {
        self.sections
            .iter()
            .flat_map(|s| s.offsets.pooled().map(|offset| s.range.ip_at(offset)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Empties every pool; the addresses stay allocated.
    pub fn drain_pool(&mut self) {
        for section in &mut self.sections {
            section.offsets.drain_pool();
        }
    }

    /// The allocated addresses, in ascending order, each once.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let mut all: Vec<IpAddr> = self
            .sections
            .iter()
            .flat_map(|s| s.offsets.iter().map(|offset| s.range.ip_at(offset)))
            .collect();
        if self.sections.len() > 1 {
            all.sort_unstable();
            all.dedup();
        }
        all.into_iter()
    }

    /// The state to store: the primary range's CIDR and offsets, with every other range's
    /// in [`Snapshot::extra`].
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.primary().offsets.snapshot();
        snapshot.extra = self.sections[1..]
            .iter()
            .map(|s| s.offsets.snapshot())
            .collect();
        snapshot
    }

    /// The size in bytes of the snapshot's data, without serializing.
    pub fn snapshot_size(&self) -> usize {
        self.sections
            .iter()
            .map(|s| s.offsets.snapshot_size())
            .sum()
    }

    /// Replaces the allocated addresses with those of `snapshot`, whose primary range must
    /// be this one's. The snapshot's other ranges replace those known here; a range a
    /// ServiceCIDR lists that the snapshot lacks is rebuilt from the ranges overlapping it;
    /// a range neither lists is dropped. On error the allocator is left unchanged.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let mut further = Vec::with_capacity(snapshot.extra.len());
        for extra in &snapshot.extra {
            let range: IpRange = extra.range.parse()?;
            if range.family() != self.family() || range == self.range() {
                return Err(Error::CorruptSnapshot {
                    range: snapshot.range.clone(),
                    reason: format!("it lists {range} again or of another family"),
                });
            }
            let mut section = self
                .sections
                .iter()
                .find(|s| s.range == range)
                .cloned()
                .unwrap_or_else(|| Section::new(range, false, false));
            section.offsets.restore(extra)?;
            further.push(section);
        }
        self.sections[0].offsets.restore(snapshot)?;
        let derived: Vec<Section> = self.sections[1..]
            .iter()
            .filter(|s| s.listed && !further.iter().any(|f| f.range == s.range))
            .cloned()
            .collect();
        self.sections.truncate(1);
        self.sections.extend(further);
        for section in derived {
            self.add_section(section);
        }
        self.sort();
        Ok(())
    }

    /// Sets the family's ranges to those of the cluster's ServiceCIDRs, each with whether new
    /// addresses may come from it. The primary range stays, usable only while a usable range
    /// holds all of it (the ServiceCIDR of the same CIDR, or a wider one: the primary range
    /// may be a share of it); a range listed for the first time starts with the addresses
    /// the ranges overlapping it hold; a range no longer listed is dropped with its
    /// addresses.
    ///
    /// Returns the pooled addresses of ranges no longer usable, taken out of their pools:
    /// they are not to be handed out, and are still allocated.
    pub fn set_ranges(&mut self, ranges: &[(IpRange, bool)]) -> Vec<IpAddr> {
        let primary = self.range();
        self.sections[0].usable = ranges
            .iter()
            .any(|&(range, usable)| usable && range.cidr().contains(&primary.cidr()));
        let listed = |s: &Section| s.range == primary || ranges.iter().any(|&(r, _)| r == s.range);
        let mut unpooled: Vec<IpAddr> = self
            .sections
            .iter()
            .filter(|s| !listed(s))
            .flat_map(|s| s.offsets.pooled().map(|o| s.range.ip_at(o)))
            .collect();
        self.sections.retain(listed);
        for &(range, usable) in ranges {
            if range.family() != self.family() || range == primary {
                continue;
            }
            match self.sections.iter_mut().find(|s| s.range == range) {
                Some(section) => {
                    section.usable = usable;
                    section.listed = true;
                }
                None => self.add_section(Section::new(range, usable, true)),
            }
        }
        self.sort();
        for section in self.sections.iter_mut().filter(|s| !s.usable) {
            let range = section.range;
            unpooled.extend(
                section
                    .offsets
                    .drain_pool()
                    .into_iter()
                    .map(|o| range.ip_at(o)),
            );
        }
        unpooled
    }

    /// Adds `section` (replacing what it held) with the addresses the others hold in it.
    fn add_section(&mut self, mut section: Section) {
        let pool: Vec<u64> = section.offsets.pooled().collect();
        let fresh = Section::new(section.range, section.usable, section.listed);
        section.offsets = fresh.offsets;
        for other in &self.sections {
            if !other.overlaps(&section.range) {
                continue;
            }
            for offset in other.offsets.iter() {
                if let Some(inner) = section.range.offset_of(other.range.ip_at(offset)) {
                    let _ = section.offsets.allocate(inner);
                }
            }
        }
        for offset in pool {
            section.offsets.add_to_pool(offset);
        }
        self.sections.push(section);
    }

    fn sort(&mut self) {
        self.sections[1..].sort_by_key(|s| s.range.cidr());
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

#[cfg(test)]
mod further_ranges_tests;
