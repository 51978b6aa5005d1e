//! Errors of the controllers' runtime.

/// Why [`run`](super::run) stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting the controllers cannot run with.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The watches stopped (a bug): the caches would go stale, so the controllers stop.
    #[error("the watches stopped: {0}")]
    WatchesStopped(String),
    /// Another instance holds the Lease now, or renewing it failed for longer than the renew
    /// deadline. The process should exit so that it does not act beside the new leader.
    #[error("lost the leader election Lease {lease}: {reason}")]
    LeadershipLost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// What happened.
        reason: String,
    },
}

/// `Result` with the runtime's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one sync of a Service failed; the Service is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    /// An API request failed.
    #[error("failed to {action} {kind} {object}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// The cache does not show this controller's own last writes yet.
    #[error("the {0} cache is out of date")]
    StaleCache(&'static str),
    /// Some pods were left out because their Node is not known (yet).
    #[error("skipped pods on Nodes that do not exist: {0}")]
    PodsOnMissingNodes(String),
    /// The sync panicked: a bug.
    #[error("the sync panicked: {0}")]
    Panicked(String),
}

impl SyncError {
    pub fn api(
        action: &'static str,
        kind: &'static str,
        object: impl std::fmt::Display,
        source: kube::Error,
    ) -> Self {
        SyncError::Api {
            action,
            kind,
            object: object.to_string(),
            source,
        }
    }

    /// The `result` label of `endpoint_slice_controller_syncs`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SyncError::StaleCache(_) => "stale",
            SyncError::Api { .. } | SyncError::PodsOnMissingNodes(_) | SyncError::Panicked(_) => {
                "error"
            }
        }
    }
}

/// Whether the apiserver refused a create because the namespace is being deleted: retrying is
/// pointless, as in-tree.
pub(crate) fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    status.code == 403
        && status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

/// Whether the error is a 404.
pub(crate) fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
