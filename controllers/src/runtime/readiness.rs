//! Whether the controllers are ready, for a process's `/readyz`.

use tokio::sync::watch;

/// Whether the controllers are ready: leading with their caches synced, or standing by for the
/// Lease. [`run`](super::run) keeps it up to date; clones see the same state.
///
/// A standby counts as ready because it has nothing to sync until it leads, and because
/// `svcplane run` serves admissions on every replica: standbys that never became ready would
/// take all but one replica out of the webhook's Service.
#[derive(Clone, Debug)]
pub struct Readiness(watch::Receiver<bool>);

/// A readiness, not ready, and the sender `run` sets it with.
pub(crate) fn channel() -> (watch::Sender<bool>, Readiness) {
    let (sender, receiver) = watch::channel(false);
    (sender, Readiness(receiver))
}

impl Readiness {
    /// Ready now. Not ready before the caches are first synced, while the controllers shut down,
    /// and once [`run`](super::run)'s future has returned or was dropped.
    pub fn is_ready(&self) -> bool {
        self.0.has_changed().is_ok() && *self.0.borrow()
    }

    /// Waits until ready; `false` when `run` ended first.
    pub async fn ready(&mut self) -> bool {
        let _ = self.0.wait_for(|ready| *ready).await;
        self.is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_the_sender_and_ends_not_ready() {
        let (sender, mut readiness) = channel();
        assert!(!readiness.is_ready());
        sender.send_replace(true);
        assert!(readiness.ready().await);
        assert!(readiness.clone().is_ready());
        // `run` returned with the last value still true: not ready.
        drop(sender);
        assert!(!readiness.is_ready());
        assert!(!readiness.ready().await);
    }
}
