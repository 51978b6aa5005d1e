//! What Service admission needs of an allocation state, and the two states that provide it:
//! [`AllocationStore`], shared by every replica through the apiserver, and
//! [`InMemoryAllocation`], allocators held in this process that plan exactly as a store's
//! batch does but persist nothing (in-process tests, benchmarks of the decision alone).

use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use allocator::{Allocators, ServiceSpec};

use super::batch::{AdmitRequest, Recent, answered, plan_batch};
use super::error::StoreError;
use super::store::AllocationStore;
use super::unconfirmed::{Unconfirmed, UnconfirmedConfig};

/// Allocates for one Service change.
pub trait Allocate: Sync {
    /// Plans `request`, reserves what it is given and returns the filled Service, or why
    /// it is refused.
    fn admit(
        &self,
        request: AdmitRequest,
    ) -> impl Future<Output = Result<ServiceSpec, StoreError>> + Send;
}

impl Allocate for AllocationStore {
    fn admit(
        &self,
        request: AdmitRequest,
    ) -> impl Future<Output = Result<ServiceSpec, StoreError>> + Send {
        AllocationStore::admit(self, request)
    }
}

/// Allocators in this process, planned on as the store plans a batch of one.
#[derive(Debug)]
pub struct InMemoryAllocation(Mutex<InMemory>);

#[derive(Debug)]
struct InMemory {
    allocators: Allocators,
    recent: Recent,
    unconfirmed: Unconfirmed,
}

impl InMemoryAllocation {
    /// Allocates from `allocators`; values wait for their Service as `unconfirmed` says
    /// (nothing confirms them here: the per-namespace limit counts every admission).
    pub fn new(allocators: Allocators, unconfirmed: UnconfirmedConfig) -> Self {
        Self(Mutex::new(InMemory {
            allocators,
            recent: Recent::default(),
            unconfirmed: Unconfirmed::new(unconfirmed),
        }))
    }

    /// A copy of the allocators as they are now.
    pub fn allocators(&self) -> Allocators {
        self.0
            .lock()
            .expect("allocation lock poisoned")
            .allocators
            .clone()
    }
}

impl Allocate for InMemoryAllocation {
    fn admit(
        &self,
        request: AdmitRequest,
    ) -> impl Future<Output = Result<ServiceSpec, StoreError>> + Send {
        let mut state = self.0.lock().expect("allocation lock poisoned");
        let InMemory {
            allocators,
            recent,
            unconfirmed,
        } = &mut *state;
        let planned = plan_batch(
            allocators,
            recent,
            unconfirmed,
            std::slice::from_ref(&request),
            &[],
            &[],
            Vec::new(),
        );
        let outcome = planned
            .outcomes
            .into_iter()
            .next()
            .expect("one outcome per admission");
        std::future::ready(answered(
            &request,
            outcome,
            recent,
            unconfirmed,
            Instant::now(),
        ))
    }
}
