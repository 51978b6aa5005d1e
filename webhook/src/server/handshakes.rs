//! Connections still in their TLS handshake: the only ones an unknown caller can hold, since
//! a caller without an accepted client certificate never gets past it. Their number is
//! capped apart from the connection limit, and when the cap is reached a new connection
//! takes the place of the oldest pending one. A caller that opens connections and never
//! finishes them therefore holds at most the cap's worth of slots, and only until other
//! callers connect: kube-apiserver's handshake, which completes in milliseconds, always
//! gets through, instead of waiting for the handshake timeout of every idle connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

const PENDING: u8 = 0;
const DONE: u8 = 1;
const EVICTED: u8 = 2;

/// One connection's handshake, shared by its task and the accept loop.
#[derive(Debug, Default)]
pub(super) struct Handshake {
    state: AtomicU8,
    evicted: Notify,
}

impl Handshake {
    /// The handshake ended (completed or failed). `false` when the connection was evicted
    /// just before: it must then be closed.
    pub fn finish(&self) -> bool {
        self.state
            .compare_exchange(PENDING, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Resolves once the connection is evicted.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }

    fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }

    /// Evicts a pending handshake; `false` when it had ended meanwhile.
    fn evict(&self) -> bool {
        let evicted = self
            .state
            .compare_exchange(PENDING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if evicted {
            // notify_one keeps a permit when the task is not waiting yet.
            self.evicted.notify_one();
        }
        evicted
    }
}

/// The pending handshakes, oldest first.
#[derive(Debug)]
pub(super) struct PendingHandshakes {
    max: usize,
    pending: VecDeque<Arc<Handshake>>,
}

impl PendingHandshakes {
    /// At most `max` handshakes pending at once (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            pending: VecDeque::new(),
        }
    }

    /// A new connection starts its handshake. Returns its handle and whether an older
    /// pending handshake was evicted to make room.
    pub fn start(&mut self) -> (Arc<Handshake>, bool) {
        self.pending.retain(|handshake| handshake.is_pending());
        let mut evicted = false;
        while self.pending.len() >= self.max {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            evicted |= oldest.evict();
        }
        let handshake = Arc::new(Handshake::default());
        self.pending.push_back(Arc::clone(&handshake));
        (handshake, evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pending_handshake_makes_room_for_a_new_one() {
        let mut handshakes = PendingHandshakes::new(2);
        let (first, evicted) = handshakes.start();
        assert!(!evicted);
        let (second, evicted) = handshakes.start();
        assert!(!evicted);
        let (third, evicted) = handshakes.start();
        assert!(evicted);
        assert!(!first.finish(), "evicted: its connection must close");
        assert!(second.finish() && third.finish());
    }

    #[test]
    fn finished_handshakes_take_no_room() {
        let mut handshakes = PendingHandshakes::new(2);
        let (first, _) = handshakes.start();
        let (second, _) = handshakes.start();
        assert!(first.finish() && second.finish());
        let (third, evicted) = handshakes.start();
        let (fourth, evicted_too) = handshakes.start();
        assert!(!evicted && !evicted_too);
        assert!(third.finish() && fourth.finish());
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told_even_when_it_starts_waiting_later() {
        let mut handshakes = PendingHandshakes::new(1);
        let (first, _) = handshakes.start();
        let (_second, evicted) = handshakes.start();
        assert!(evicted);
        tokio::time::timeout(std::time::Duration::from_secs(60), first.evicted())
            .await
            .expect("the eviction was kept for the task");
    }
}
