//! The allocation state shared by every webhook replica through the apiserver.

pub(crate) mod allocate;
mod batch;
pub mod crd;
mod error;
#[cfg(test)]
mod fake_api;
pub mod held;
pub mod holder;
pub(crate) mod pool;
pub(crate) mod repair;
pub(crate) mod store;
pub(crate) mod unconfirmed;
mod write;

pub use allocate::{Allocate, InMemoryAllocation};
pub use batch::AdmitRequest;
pub use crd::{RangeAllocation, RangeAllocationSpec, RangeKind};
pub use error::StoreError;
pub use holder::Holder;
pub use store::{AllocationStore, DeadEntry, PoolConfig, StateView};
pub use unconfirmed::{Expired, ServiceName, UnconfirmedConfig};
