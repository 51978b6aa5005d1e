//! The allocation state shared by every webhook replica through the apiserver.

pub mod allocate;
mod batch;
pub mod crd;
pub mod held;
pub mod pool;
pub mod repair;
pub mod store;
pub mod unconfirmed;

pub use allocate::{Allocate, InMemoryAllocation};
pub use crd::{RangeAllocation, RangeAllocationSpec, RangeKind};
pub use pool::PoolConfig;
pub use store::{AdmitRequest, AllocationStore, StateView, StoreError};
pub use unconfirmed::{Expired, ServiceName, UnconfirmedConfig};
