//! The crate's error type.

/// What can go wrong in this crate: only configuration, since the desired-state functions are
/// total.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `--max-endpoints-per-slice` outside the range the in-tree controller accepts.
    #[error("--max-endpoints-per-slice must be between 1 and 1000, got {0}")]
    MaxEndpointsPerSliceOutOfRange(i64),
    /// `--max-endpoints-per-slice` that is not a whole number.
    #[error("--max-endpoints-per-slice must be a whole number between 1 and 1000, got {0:?}")]
    MaxEndpointsPerSliceNotANumber(String),
}

/// `Result` with this crate's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
