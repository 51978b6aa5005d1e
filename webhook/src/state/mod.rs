//! The allocation state shared by every webhook replica through the apiserver.

pub mod crd;
pub mod store;

pub use crd::{RangeAllocation, RangeAllocationSpec, RangeKind};
pub use store::{AdmitRequest, AllocationStore, StoreError};
