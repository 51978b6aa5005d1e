//! Why an allocation could not be answered.

/// Why the store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The request itself is refused (range full, value taken, invalid combination).
    #[error(transparent)]
    Allocation(#[from] allocator::Error),
    /// The state could not be read or written; nothing was handed out.
    #[error("could not persist the allocation state: {0}; try again")]
    Persist(String),
    /// A requested value is taken because it sits in another live replica's pool: that
    /// replica gives it up when asked (see `AllocationStore::admit`). Never returned by
    /// `admit`, which asks and tries again, then answers `Allocation(error)`.
    #[error("{error}")]
    InAnotherPool {
        /// The refusal, should the value stay taken.
        error: allocator::Error,
        /// The requested values other replicas pool; for a full range, values they pool
        /// there.
        values: Vec<allocator::Value>,
    },
    /// The store is shutting down.
    #[error("the allocation store is stopped")]
    Stopped,
    /// The namespace holds as many values not yet confirmed by a stored Service as one
    /// replica gives a namespace.
    #[error(
        "namespace {namespace:?} already holds {limit} allocated values whose Services have not been seen created yet (the limit per namespace); retry once earlier requests have completed or timed out"
    )]
    TooManyUnconfirmed {
        /// The namespace.
        namespace: String,
        /// The limit.
        limit: usize,
    },
    /// The stored state belongs to other ranges than this replica's.
    #[error(
        "the stored allocation state {object} is for range {stored}, but this replica is configured with {configured}: start every replica with the same ranges (and kube-apiserver's); to change the ranges on purpose, delete RangeAllocation {object} and repair rebuilds it from the Services"
    )]
    RangeMismatch {
        /// The RangeAllocation object.
        object: &'static str,
        /// Its range.
        stored: String,
        /// This replica's.
        configured: String,
    },
}
