//! The one error type of the crate.
//!
//! The messages of the allocation errors keep the in-tree kube-apiserver wording, because users
//! and scripts grep for it ("range is full", "provided IP is already allocated", ...).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::family::IpFamily;
use crate::port::PortRange;
use crate::service::ServiceType;

/// Result with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring ranges, allocating, restoring a snapshot or
/// planning the allocations of a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No free value is left in the range.
    #[error("range is full")]
    Full,

    /// A specific IP was requested but it is already taken.
    #[error("provided IP is already allocated")]
    IpAllocated,

    /// A specific port was requested but it is already taken.
    #[error("provided port is already allocated")]
    PortAllocated,

    /// A specific offset was requested from an [`OffsetAllocator`](crate::OffsetAllocator) but
    /// it is already taken.
    #[error("offset {offset} is already allocated")]
    OffsetAllocated {
        /// The requested offset.
        offset: u64,
    },

    /// The IP is outside the range, or is the network (or IPv4 broadcast) address. Worded as
    /// kube-apiserver 1.37's ServiceCIDR allocator words it (`ErrMismatchedNetwork` in
    /// `ipallocator/cidrallocator.go`): the bitmap allocator's "the provided IP (...) is not
    /// in the valid range" went with it in 1.34.
    #[error("the provided network does not match the current range")]
    IpNotInRange {
        /// The requested IP.
        ip: IpAddr,
        /// The configured range.
        cidr: IpNet,
    },

    /// The port is outside the NodePort range.
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortNotInRange {
        /// The requested port.
        port: u16,
        /// The configured range.
        range: PortRange,
    },

    /// The offset is outside `0..size` of an [`OffsetAllocator`](crate::OffsetAllocator).
    #[error("offset {offset} is not in the range [0, {size})")]
    OffsetNotInRange {
        /// The requested offset.
        offset: u64,
        /// The number of offsets of the allocator.
        size: u64,
    },

    /// A service CIDR (`--service-cluster-ip-range`) that svcplane cannot serve.
    #[error("invalid service CIDR {cidr:?}: {reason}")]
    InvalidCidr {
        /// The CIDR as given.
        cidr: String,
        /// Why it is refused.
        reason: String,
    },

    /// The cluster's service CIDRs are neither one range nor two ranges of different families.
    #[error("the service CIDRs must be one range or two ranges of different IP families")]
    InvalidCidrSet,

    /// A NodePort range (`--service-node-port-range`) that cannot be parsed or used.
    #[error("invalid port range {input:?}: {reason}")]
    InvalidPortRange {
        /// The range as given.
        input: String,
        /// Why it is refused.
        reason: String,
    },

    /// A snapshot taken from another range was offered to [`restore`](crate::OffsetAllocator::restore).
    #[error("the provided range {found} does not match the current range {expected}")]
    RangeMismatch {
        /// The range of this allocator.
        expected: String,
        /// The range of the snapshot.
        found: String,
    },

    /// The snapshot data cannot be decoded or holds values outside the range.
    #[error("the snapshot of range {range} is corrupt: {reason}")]
    CorruptSnapshot {
        /// The range of the snapshot.
        range: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An IP family that is neither `IPv4` nor `IPv6`.
    #[error("unsupported IP family {0:?}: supported values: \"IPv4\", \"IPv6\"")]
    UnsupportedIpFamily(String),

    /// An `ipFamilyPolicy` that is not one of the three known values.
    #[error(
        "unsupported IP family policy {0:?}: supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""
    )]
    UnsupportedIpFamilyPolicy(String),

    /// A Service type that is not one of the four known values.
    #[error(
        "unsupported Service type {0:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
    )]
    UnsupportedServiceType(String),

    /// The family of a requested IP or of `ipFamilies` has no range on this cluster.
    #[error("{0} is not configured on this cluster")]
    FamilyNotConfigured(IpFamily),

    /// `RequireDualStack` on a cluster with a single service CIDR.
    #[error("this cluster is not configured for dual-stack services")]
    NotDualStack,

    /// A `clusterIPs` entry that is not an IP address.
    #[error("{0:?} must be a valid IP address or 'None'")]
    InvalidIp(String),

    /// `None` (headless) combined with another `clusterIPs` entry.
    #[error("'None' must be the first and only value")]
    NoneNotAlone,

    /// More than two `clusterIPs` or `ipFamilies`.
    #[error("may only hold up to 2 values")]
    TooManyValues,

    /// Two `clusterIPs` of the same family.
    #[error("may specify no more than one IP for each IP family")]
    OneIpPerFamily,

    /// The same family twice in `ipFamilies`.
    #[error("duplicate value: \"{0}\"")]
    DuplicateFamily(IpFamily),

    /// A `clusterIPs` entry whose family differs from the `ipFamilies` entry at the same index.
    #[error("expected an {expected} value as indicated by `ipFamilies[{index}]`")]
    FamilyMismatch {
        /// The index in both lists.
        index: usize,
        /// The family `ipFamilies[index]` asks for.
        expected: IpFamily,
    },

    /// `SingleStack` with two `clusterIPs`.
    #[error(
        "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"
    )]
    SingleStackWithTwoIps,

    /// `SingleStack` with two `ipFamilies`.
    #[error(
        "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"
    )]
    SingleStackWithTwoFamilies,

    /// An update that drops the secondary cluster IP without switching to `SingleStack`.
    #[error("must be 'SingleStack' to release the secondary cluster IP")]
    ReleaseSecondaryIpNeedsSingleStack,

    /// An update that drops the secondary IP family without switching to `SingleStack`.
    #[error("must be 'SingleStack' to release the secondary IP family")]
    ReleaseSecondaryFamilyNeedsSingleStack,

    /// An update that changes an assigned value.
    #[error("may not change once set")]
    Immutable,

    /// An update that clears the primary cluster IP.
    #[error("primary clusterIP can not be unset")]
    PrimaryIpUnset,

    /// `clusterIP: None` for a type that needs a cluster IP.
    #[error("may not be set to 'None' for {0} services")]
    HeadlessNotAllowed(ServiceType),

    /// Two ports of one Service with the same protocol and nodePort.
    #[error("duplicate value: {0}")]
    DuplicateNodePort(u16),

    /// `healthCheckNodePort` changed while the Service still needs it.
    #[error("field is immutable")]
    FieldImmutable,

    /// A field of the Service was refused; `reason` says why.
    #[error("{field}: {reason}")]
    Field {
        /// Path of the field, e.g. `spec.clusterIPs[0]` or `spec.ports[1].nodePort`.
        field: String,
        /// Why the value was refused.
        reason: Box<Error>,
    },
}

impl Error {
    /// Wraps `reason` as a refusal of the field at `field`.
    pub fn at(field: impl Into<String>, reason: Error) -> Self {
        Error::Field {
            field: field.into(),
            reason: Box::new(reason),
        }
    }

    /// The path of the refused field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The error without its field path.
    pub fn reason(&self) -> &Error {
        match self {
            Error::Field { reason, .. } => reason.reason(),
            other => other,
        }
    }

    /// Whether the request may succeed later without being changed (the range was full),
    /// as opposed to a request that must be fixed by its author.
    pub fn is_transient(&self) -> bool {
        matches!(self.reason(), Error::Full)
    }

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self.reason() {
            Error::Full => "full",
            Error::IpAllocated | Error::PortAllocated | Error::OffsetAllocated { .. } => {
                "allocated"
            }
            Error::IpNotInRange { .. }
            | Error::PortNotInRange { .. }
            | Error::OffsetNotInRange { .. } => "not_in_range",
            Error::InvalidCidr { .. } | Error::InvalidCidrSet | Error::InvalidPortRange { .. } => {
                "configuration"
            }
            Error::RangeMismatch { .. } | Error::CorruptSnapshot { .. } => "snapshot",
            Error::FamilyNotConfigured(_) | Error::NotDualStack => "family",
            _ => "invalid",
        }
    }
}
