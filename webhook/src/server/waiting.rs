//! Connections waiting for a request: the ones a full server may close to let a new caller
//! in. A connection waits from its accept (its TLS handshake included) and from the end of
//! each request until the next request's headers are read; bytes trickling in do not count as
//! progress. When every slot is taken, a new connection closes the one that has waited
//! longest (at least [`MIN_WAIT`]): a caller that holds connections open without sending
//! requests, with or without a client certificate, then cannot keep kube-apiserver out, and
//! a request in flight is never cut.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a connection must have waited before a new one may close it: kube-apiserver
/// sends its request within milliseconds of connecting, or of its previous answer.
pub(super) const MIN_WAIT: Duration = Duration::from_secs(1);

/// One connection, shared by its task and the accept loop.
#[derive(Debug)]
pub(super) struct Connection {
    epoch: Instant,
    /// Milliseconds from `epoch` to the start of the current wait.
    waiting_since: AtomicU64,
    in_flight: AtomicUsize,
    evicted: AtomicBool,
    evict: Notify,
}

impl Connection {
    fn new(epoch: Instant) -> Self {
        let connection = Self {
            epoch,
            waiting_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        };
        connection.start_waiting();
        connection
    }

    /// A request's headers were read: the connection is busy until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Whether a request is in flight.
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Resolves once the connection is chosen to make room: it must then close.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    fn start_waiting(&self) {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.waiting_since.store(millis, Ordering::Release);
    }

    /// How long it has waited for a request, or `None` while one is in flight.
    fn waited(&self, now: Instant) -> Option<Duration> {
        if self.is_busy() || self.evicted.load(Ordering::Acquire) {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.waiting_since.load(Ordering::Acquire));
        Some(now.saturating_duration_since(since))
    }

    fn evict(&self) -> bool {
        // A request may have started since it was chosen: it is left to finish.
        if self.is_busy() || self.evicted.swap(true, Ordering::AcqRel) {
            return false;
        }
        // notify_one keeps a permit when the task is not waiting yet.
        self.evict.notify_one();
        true
    }
}

/// A request in flight on its connection; the wait starts again when it is dropped.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.start_waiting();
        }
    }
}

/// The accept loop's view of its open connections.
#[derive(Debug)]
pub(super) struct OpenConnections {
    epoch: Instant,
    open: Vec<Weak<Connection>>,
}

impl Default for OpenConnections {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            open: Vec::new(),
        }
    }
}

impl OpenConnections {
    /// A new connection, waiting from now.
    pub fn register(&mut self) -> Arc<Connection> {
        // Ended connections are forgotten each time the list doubles.
        if self.open.len() >= 64 && self.open.len().is_power_of_two() {
            self.open.retain(|connection| connection.strong_count() > 0);
        }
        let connection = Arc::new(Connection::new(self.epoch));
        self.open.push(Arc::downgrade(&connection));
        connection
    }

    /// Closes the connection that has waited longest for a request, if one has waited at
    /// least `at_least`; `false` when none may be closed.
    pub fn evict_longest_waiting(&mut self, at_least: Duration) -> bool {
        let now = Instant::now();
        self.open.retain(|connection| connection.strong_count() > 0);
        loop {
            let longest = self
                .open
                .iter()
                .filter_map(Weak::upgrade)
                .filter_map(|connection| Some((connection.waited(now)?, connection)))
                .filter(|(waited, _)| *waited >= at_least)
                .max_by_key(|(waited, _)| *waited);
            match longest {
                None => return false,
                Some((_, connection)) if connection.evict() => return true,
                // Busy since: look again.
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_waiting_longest_is_closed_and_busy_ones_never() {
        let mut open = OpenConnections::default();
        let oldest = open.register();
        let busy_request = oldest.request();
        std::thread::sleep(Duration::from_millis(20));
        let waiting = open.register();
        std::thread::sleep(Duration::from_millis(20));
        let newest = open.register();
        assert!(
            !open.evict_longest_waiting(Duration::from_secs(60)),
            "none has waited that long"
        );
        assert!(open.evict_longest_waiting(Duration::from_millis(10)));
        assert!(waiting.evicted.load(Ordering::Acquire));
        assert!(
            !oldest.evicted.load(Ordering::Acquire),
            "a request in flight"
        );
        assert!(!newest.evicted.load(Ordering::Acquire));
        assert!(
            !open.evict_longest_waiting(Duration::from_millis(10)),
            "the newest has waited less than that"
        );

        // The wait starts again when the request ends.
        drop(busy_request);
        std::thread::sleep(Duration::from_millis(20));
        assert!(open.evict_longest_waiting(Duration::from_millis(10)));
        assert!(newest.evicted.load(Ordering::Acquire), "waited longer now");
        assert!(!oldest.evicted.load(Ordering::Acquire));
    }

    #[test]
    fn ended_connections_are_forgotten() {
        let mut open = OpenConnections::default();
        for _ in 0..1000 {
            drop(open.register());
        }
        assert!(open.open.len() < 1000);
        assert!(!open.evict_longest_waiting(Duration::ZERO));
        assert!(open.open.is_empty());
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told_even_when_it_starts_waiting_later() {
        let mut open = OpenConnections::default();
        let connection = open.register();
        assert!(open.evict_longest_waiting(Duration::ZERO));
        tokio::time::timeout(Duration::from_secs(60), connection.evicted())
            .await
            .expect("the eviction was kept for the task");
    }
}
