//! ClusterIP and NodePort allocation for svcplane, on roaring bitmaps.
//!
//! A pure library (no I/O, no async, no Kubernetes client), layered bottom-up:
//!
//! - [`bitmap`]: [`OffsetAllocator`], offsets `0..size` with the static/dynamic band rule and
//!   roaring [`Snapshot`]s;
//! - [`ip`] and [`port`]: [`IpRange`] / [`ClusterIpAllocator`] and [`PortRange`] /
//!   [`NodePortAllocator`] on top of it, with kube-apiserver's ranges, bands and error words;
//! - [`service`] and [`family`]: the allocation-related fields of a Service as plain types, and
//!   the dual-stack rules deciding its IP families;
//! - [`transaction`]: [`Allocators`], which turns a Service create / update / delete into a
//!   [`Transaction`] that reserves at once and releases on commit.
//!
//! What it allocates, and where svcplane answers differently from kube-apiserver, is in the
//! repository's `README.md` (its opening list and "Where svcplane answers differently from
//! kube-apiserver"); the reference behaviour is kube-apiserver's
//! `pkg/registry/core/service/{allocator,ipallocator,portallocator,storage}`.
//!
//! ```
//! use allocator::{Allocators, ClusterIpAllocator, NodePortAllocator, PortRange, ServicePort,
//!     ServiceSpec, ServiceType};
//!
//! let mut allocators = Allocators::new(
//!     vec![ClusterIpAllocator::new("10.96.0.0/12".parse()?)],
//!     NodePortAllocator::new(PortRange::default()),
//! )?;
//! let web = ServiceSpec {
//!     service_type: ServiceType::NodePort,
//!     ports: vec![ServicePort { name: "http".into(), protocol: "TCP".into(), port: 80,
//!         node_port: None }],
//!     has_selector: true,
//!     ..ServiceSpec::default()
//! };
//! let txn = allocators.create(&web, false)?;
//! let filled = txn.service().clone();
//! // ... write the Service; it succeeded:
//! txn.commit(&mut allocators);
//! assert_eq!(filled.cluster_ips.len(), 1);
//! assert!(filled.ports[0].node_port.is_some());
//! # Ok::<(), allocator::Error>(())
//! ```

#![warn(missing_docs)]

pub mod bitmap;
pub mod error;
pub mod family;
pub mod ip;
pub mod port;
pub mod range;
pub mod service;
pub mod transaction;

pub use bitmap::{OffsetAllocator, Snapshot};
pub use error::{Error, Result};
pub use family::{IpFamily, IpFamilyPolicy, resolve_ip_families};
pub use ip::{ClusterIpAllocator, IpRange, RangeUse};
pub use port::{NodePortAllocator, PortRange};
pub use range::{RangeKind, Usage};
pub use service::{ExternalTrafficPolicy, Protocol, ServicePort, ServiceSpec, ServiceType};
pub use transaction::{Allocators, Transaction, Value};
