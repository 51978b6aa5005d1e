//! The ranges of [`Allocators`] by name: a ClusterIP range per family and the NodePort
//! range. Whatever stores, restores or reports one range goes through [`RangeKind`], so the
//! choice between the two allocator types is made here only.

use std::fmt;

use crate::{
    Allocators, ClusterIpAllocator, Error, IpFamily, IpRange, NodePortAllocator, OffsetAllocator,
    Result, Snapshot, Value,
};

/// One range of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeKind {
    /// The ClusterIPs of one family.
    ClusterIps(IpFamily),
    /// The node ports.
    NodePorts,
}

impl RangeKind {
    /// Every range a cluster can have.
    pub const ALL: [RangeKind; 3] = [
        RangeKind::ClusterIps(IpFamily::V4),
        RangeKind::ClusterIps(IpFamily::V6),
        RangeKind::NodePorts,
    ];

    /// A stable name for the range (it names the range's stored state).
    pub fn name(self) -> &'static str {
        match self {
            RangeKind::ClusterIps(IpFamily::V4) => "cluster-ips-ipv4",
            RangeKind::ClusterIps(IpFamily::V6) => "cluster-ips-ipv6",
            RangeKind::NodePorts => "node-ports",
        }
    }

    /// The range named `name` (see [`RangeKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The range holding `value`.
    pub fn of(value: Value) -> Self {
        match value {
            Value::ClusterIp(ip) => RangeKind::ClusterIps(IpFamily::of(&ip)),
            Value::NodePort(_) => RangeKind::NodePorts,
        }
    }

    /// Reads `text` as a value of this range (an IP address or a port number).
    pub fn parse_value(self, text: &str) -> Option<Value> {
        match self {
            RangeKind::ClusterIps(_) => text.parse().ok().map(Value::ClusterIp),
            RangeKind::NodePorts => text.parse().ok().map(Value::NodePort),
        }
    }

    /// The values a snapshot of this range holds, in ascending order.
    pub fn values(self, snapshot: &Snapshot) -> Result<Vec<Value>> {
        self.read(snapshot).map(|(_, values)| values)
    }

    /// How full a snapshot of this range is, and its values in ascending order.
    pub fn read(self, snapshot: &Snapshot) -> Result<(Usage, Vec<Value>)> {
        Ok(match self {
            RangeKind::ClusterIps(_) => {
                let ips = ClusterIpAllocator::from_snapshot(snapshot)?;
                let values = ips.iter().map(Value::ClusterIp).collect();
                (Usage::of_ips(&ips), values)
            }
            RangeKind::NodePorts => {
                let ports = NodePortAllocator::from_snapshot(snapshot)?;
                let values = ports.iter().map(Value::NodePort).collect();
                (Usage::of(ports.offsets()), values)
            }
        })
    }
}

impl fmt::Display for RangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How full one range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Values allocated.
    pub used: u64,
    /// Values the range holds.
    pub size: u64,
    /// Free values of the dynamic band (those handed out when none is asked for).
    pub dynamic_free: u64,
    /// How many values the static band holds (it comes first; users pick from it).
    pub static_band: u64,
    /// Values allocated in the static band.
    pub static_used: u64,
}

impl Usage {
    /// The usage of a family's ranges: every range counted (nested ones once); the bands
    /// are the primary range's.
    fn of_ips(ips: &ClusterIpAllocator) -> Self {
        Usage {
            used: ips.used(),
            size: ips.size(),
            dynamic_free: ips.dynamic_free(),
            ..Usage::of(ips.offsets())
        }
    }

    fn of(offsets: &OffsetAllocator) -> Self {
        Usage {
            used: offsets.used(),
            size: offsets.size(),
            dynamic_free: offsets.dynamic_free(),
            static_band: offsets.band_offset(),
            static_used: offsets.static_used(),
        }
    }
}

impl Allocators {
    /// The snapshot of range `kind`; `None` when the cluster does not have it.
    pub fn snapshot_of(&self, kind: RangeKind) -> Option<Snapshot> {
        match kind {
            RangeKind::ClusterIps(family) => self.cluster_ips_of(family).map(|a| a.snapshot()),
            RangeKind::NodePorts => Some(self.node_ports().snapshot()),
        }
    }

    /// How full range `kind` is; `None` when the cluster does not have it.
    pub fn usage_of(&self, kind: RangeKind) -> Option<Usage> {
        match kind {
            RangeKind::ClusterIps(family) => self.cluster_ips_of(family).map(Usage::of_ips),
            RangeKind::NodePorts => Some(Usage::of(self.node_ports().offsets())),
        }
    }

    /// Replaces range `kind` with `snapshot` (see
    /// [`OffsetAllocator::restore`](crate::OffsetAllocator::restore)): fails when the
    /// snapshot is of another range, or the cluster does not have that family.
    pub fn restore(&mut self, kind: RangeKind, snapshot: &Snapshot) -> Result<()> {
        match kind {
            RangeKind::ClusterIps(family) => self
                .cluster_ips_of_mut(family)
                .ok_or(Error::FamilyNotConfigured(family))?
                .restore(snapshot),
            RangeKind::NodePorts => self.node_ports_mut().restore(snapshot),
        }
    }

    /// Reserves the next free value of range `kind` as an allocation without a request
    /// would get it (its pool first).
    pub fn allocate_next_of(&mut self, kind: RangeKind) -> Result<Value> {
        match kind {
            RangeKind::ClusterIps(family) => self
                .cluster_ips_of_mut(family)
                .ok_or(Error::FamilyNotConfigured(family))?
                .allocate_next()
                .map(Value::ClusterIp),
            RangeKind::NodePorts => self.node_ports_mut().allocate_next().map(Value::NodePort),
        }
    }

    /// Sets the ClusterIP ranges of `family` to those of the cluster's ServiceCIDRs, each
    /// with whether new addresses may come from it (see [`ClusterIpAllocator::set_ranges`]).
    /// Returns the pooled addresses of ranges no longer usable (taken out of their pools,
    /// still allocated); `None` when the cluster lacks the family.
    pub fn set_ranges(
        &mut self,
        family: IpFamily,
        ranges: &[(IpRange, bool)],
    ) -> Option<Vec<Value>> {
        self.cluster_ips_of_mut(family).map(|ips| {
            let unpooled = ips.set_ranges(ranges);
            unpooled.into_iter().map(Value::ClusterIp).collect()
        })
    }

    /// Empties the pool of range `kind`; its values stay allocated. Returns how many there
    /// were.
    pub fn drain_pool_of(&mut self, kind: RangeKind) -> usize {
        match kind {
            RangeKind::ClusterIps(family) => self.cluster_ips_of_mut(family).map_or(0, |a| {
                let count = a.pooled().len();
                a.drain_pool();
                count
            }),
            RangeKind::NodePorts => {
                let ports = self.node_ports_mut();
                let count = ports.pooled().len();
                ports.drain_pool();
                count
            }
        }
    }

    /// The allocated values of range `kind`, in ascending order.
    pub fn values_of(&self, kind: RangeKind) -> Vec<Value> {
        match kind {
            RangeKind::ClusterIps(family) => self
                .cluster_ips_of(family)
                .map(|a| a.iter().map(Value::ClusterIp).collect())
                .unwrap_or_default(),
            RangeKind::NodePorts => self.node_ports().iter().map(Value::NodePort).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortRange;

    fn allocators() -> Allocators {
        Allocators::new(
            vec![
                ClusterIpAllocator::new("10.96.0.0/24".parse().unwrap()),
                ClusterIpAllocator::new("fd00::/120".parse().unwrap()),
            ],
            NodePortAllocator::new(PortRange::default()),
        )
        .unwrap()
    }

    #[test]
    fn names_are_stable_and_read_back() {
        let names: Vec<&str> = RangeKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(
            names,
            ["cluster-ips-ipv4", "cluster-ips-ipv6", "node-ports"]
        );
        for kind in RangeKind::ALL {
            assert_eq!(RangeKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(RangeKind::from_name("cluster-ips"), None);
    }

    #[test]
    fn each_range_round_trips_through_its_snapshot() {
        let mut source = allocators();
        let values = [
            Value::ClusterIp("10.96.0.9".parse().unwrap()),
            Value::ClusterIp("fd00::9".parse().unwrap()),
            Value::NodePort(30080),
        ];
        for value in values {
            source.allocate(value).unwrap();
        }
        let mut copy = allocators();
        for value in values {
            let kind = RangeKind::of(value);
            let snapshot = source.snapshot_of(kind).unwrap();
            assert_eq!(kind.values(&snapshot).unwrap(), [value]);
            copy.restore(kind, &snapshot).unwrap();
            assert_eq!(copy.values_of(kind), [value]);
            assert_eq!(copy.usage_of(kind).unwrap().used, 1);
        }
        let v4 = RangeKind::ClusterIps(IpFamily::V4);
        let ports = source.snapshot_of(RangeKind::NodePorts).unwrap();
        assert!(
            copy.restore(v4, &ports).is_err(),
            "a snapshot of another range"
        );
    }

    #[test]
    fn a_missing_family_has_no_snapshot_and_refuses_a_restore() {
        let mut single = Allocators::new(
            vec![ClusterIpAllocator::new("10.96.0.0/24".parse().unwrap())],
            NodePortAllocator::new(PortRange::default()),
        )
        .unwrap();
        let v6 = RangeKind::ClusterIps(IpFamily::V6);
        assert!(single.snapshot_of(v6).is_none() && single.usage_of(v6).is_none());
        let snapshot = allocators().snapshot_of(v6).unwrap();
        assert_eq!(
            single.restore(v6, &snapshot),
            Err(Error::FamilyNotConfigured(IpFamily::V6))
        );
        assert_eq!(single.drain_pool_of(v6), 0);
    }

    #[test]
    fn draining_a_pool_keeps_its_values_allocated() {
        let mut allocators = allocators();
        let value = allocators.allocate_next_of(RangeKind::NodePorts).unwrap();
        assert!(allocators.add_to_pool(value));
        assert_eq!(allocators.drain_pool_of(RangeKind::NodePorts), 1);
        assert!(allocators.has(value) && allocators.pooled().is_empty());
    }
}
