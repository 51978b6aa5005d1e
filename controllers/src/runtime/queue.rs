//! A work queue of Service keys, as the in-tree controllers use: a key waiting in the queue is
//! there once however often it is added; a key being synced is never handed to a second worker,
//! and one added meanwhile is synced again afterwards; keys can be added after a delay (batch
//! periods) and retried with per-key exponential backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One queue's share of client-go's work-queue metrics (`workqueue_adds_total`,
/// `workqueue_depth`, `workqueue_retries_total`, `workqueue_queue_duration_seconds`,
/// `workqueue_work_duration_seconds`, labelled by the queue's in-tree name): what an operator
/// watches to see a controller keeping up.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// Adds, each counted (a key already waiting included), as client-go counts them.
    pub adds: Counter,
    /// Keys waiting to be synced now.
    pub depth: Gauge,
    /// Keys queued again after a failed sync.
    pub retries: Counter,
    /// How long each key waited, from when it was queued (or became due, when delayed) to
    /// when a worker took it, as client-go measures it: a key added while being synced waits
    /// from that add, through the rest of that sync.
    pub queued: Histogram,
    /// How long each sync took, from the key handed out to [`WorkQueue::done`].
    pub work: Histogram,
}

impl QueueMetrics {
    /// Buckets for queue and work durations: 1 µs to 10 s, by tens.
    pub fn duration_histogram() -> Histogram {
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            1e-6, 10.0, 8,
        ))
    }
}

/// Exponential per-key retry delays: `base * 2^(failures - 1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    fn delay(self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << exponent)
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[derive(Debug)]
struct State<K> {
    ready: VecDeque<K>,
    /// Keys that need a sync: queued, or being synced and added again.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Earliest time each delayed key becomes ready, with a sequence number that orders keys
    /// due at the same instant.
    delayed: HashMap<K, (Instant, u64)>,
    delayed_by_time: BTreeMap<(Instant, u64), K>,
    next_id: u64,
    failures: HashMap<K, u32>,
    /// When each key waiting was queued, for the queue-duration metric.
    queued: HashMap<K, Instant>,
    /// When each key being synced was handed out, for the work-duration metric.
    started: HashMap<K, Instant>,
    shut_down: bool,
}

/// The queue; share it behind an `Arc`.
#[derive(Debug)]
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    backoff: Backoff,
    metrics: Option<QueueMetrics>,
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// An empty queue retrying failed keys with `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                delayed: HashMap::new(),
                delayed_by_time: BTreeMap::new(),
                next_id: 0,
                failures: HashMap::new(),
                queued: HashMap::new(),
                started: HashMap::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
            backoff,
            metrics: None,
        }
    }

    /// The same queue, reporting in `metrics`.
    pub fn with_metrics(mut self, metrics: QueueMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Keeps the depth gauge at what `state` holds ready.
    fn report_depth(&self, state: &State<K>) {
        if let Some(metrics) = &self.metrics {
            metrics.depth.set(state.ready.len() as i64);
        }
    }

    /// Queues the key for a sync now.
    pub fn add(&self, key: K) {
        if let Some(metrics) = &self.metrics {
            metrics.adds.inc();
        }
        let mut state = self.state.lock().expect("queue lock");
        let queued = self.enqueue(&mut state, key);
        self.report_depth(&state);
        if queued {
            drop(state);
            self.notify.notify_one();
        }
    }

    fn enqueue(&self, state: &mut State<K>, key: K) -> bool {
        if state.shut_down || state.dirty.contains(&key) {
            return false;
        }
        if self.metrics.is_some() {
            state.queued.insert(key.clone(), Instant::now());
        }
        state.dirty.insert(key.clone());
        if state.processing.contains(&key) {
            return false;
        }
        state.ready.push_back(key);
        true
    }

    /// Queues the key for a sync once `delay` has passed; a key already waiting keeps the
    /// earlier of the two times.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let at = Instant::now() + delay;
        let mut state = self.state.lock().expect("queue lock");
        if state.shut_down {
            return;
        }
        if let Some(&existing) = state.delayed.get(&key) {
            if existing.0 <= at {
                return;
            }
            state.delayed_by_time.remove(&existing);
        }
        let slot = (at, state.next_id);
        state.next_id += 1;
        state.delayed.insert(key.clone(), slot);
        state.delayed_by_time.insert(slot, key);
        drop(state);
        // A worker waiting for a later deadline must learn about this earlier one.
        self.notify.notify_waiters();
    }

    /// Queues the key again after its next backoff delay.
    pub fn retry(&self, key: K) {
        let failures = {
            let mut state = self.state.lock().expect("queue lock");
            let failures = state.failures.entry(key.clone()).or_default();
            *failures += 1;
            *failures
        };
        if let Some(metrics) = &self.metrics {
            metrics.retries.inc();
        }
        self.add_after(key, self.backoff.delay(failures));
    }

    /// Forgets the key's failures: its next retry starts from the base delay.
    pub fn forget(&self, key: &K) {
        self.state.lock().expect("queue lock").failures.remove(key);
    }

    /// How often the key has failed since it was last forgotten.
    pub fn failures(&self, key: &K) -> u32 {
        self.state
            .lock()
            .expect("queue lock")
            .failures
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn promote_due(&self, state: &mut State<K>, now: Instant) {
        while let Some(entry) = state.delayed_by_time.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            state.delayed.remove(&key);
            self.enqueue(state, key);
        }
    }

    /// The next key to sync, waiting for one; `None` once the queue is shut down. The caller
    /// must call [`Self::done`] when the sync is over.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let mut state = self.state.lock().expect("queue lock");
                if state.shut_down {
                    return None;
                }
                let now = Instant::now();
                self.promote_due(&mut state, now);
                let next = state.ready.pop_front();
                self.report_depth(&state);
                if let Some(key) = next {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    if let Some(metrics) = &self.metrics {
                        if let Some(queued) = state.queued.remove(&key) {
                            metrics
                                .queued
                                .observe(now.saturating_duration_since(queued).as_secs_f64());
                        }
                        state.started.insert(key.clone(), now);
                    }
                    if !state.ready.is_empty() {
                        // Let another idle worker pick up the rest.
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                state
                    .delayed_by_time
                    .first_key_value()
                    .map(|((at, _), _)| *at)
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks the key's sync as over; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut state = self.state.lock().expect("queue lock");
        state.processing.remove(key);
        if let (Some(metrics), Some(started)) = (&self.metrics, state.started.remove(key)) {
            metrics.work.observe(started.elapsed().as_secs_f64());
        }
        if state.dirty.contains(key) && !state.shut_down {
            state.ready.push_back(key.clone());
            self.report_depth(&state);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Stops handing out keys: every [`Self::next`] returns `None` from now on.
    pub fn shut_down(&self) {
        self.state.lock().expect("queue lock").shut_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// How many keys are waiting (ready or delayed).
    pub(crate) fn len(&self) -> usize {
        let state = self.state.lock().expect("queue lock");
        state.ready.len() + state.delayed.len()
    }

    /// The keys waiting, in key order, each with how long until it is due (zero when ready).
    pub(crate) fn waiting(&self) -> Vec<(K, Duration)> {
        let state = self.state.lock().expect("queue lock");
        let now = Instant::now();
        let mut waiting: Vec<(K, Duration)> = state
            .ready
            .iter()
            .map(|k| (k.clone(), Duration::ZERO))
            .chain(
                state
                    .delayed
                    .iter()
                    .map(|(k, (at, _))| (k.clone(), at.saturating_duration_since(now))),
            )
            .collect();
        waiting.sort();
        waiting
    }

    /// Drops every waiting key.
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().expect("queue lock");
        state.ready.clear();
        state.dirty.clear();
        state.delayed.clear();
        state.delayed_by_time.clear();
        state.queued.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        })
    }

    #[tokio::test]
    async fn a_key_is_queued_once() {
        let q = queue();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_syncing_is_synced_again_afterwards_not_concurrently() {
        let q = queue();
        q.add("a");
        let key = q.next().await.unwrap();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 0, "not handed out while being synced");
        q.done(&key);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_wait_and_keep_the_earliest_time() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(5));
        q.add_after("a", Duration::from_secs(2));
        q.add_after("a", Duration::from_secs(9));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        q.done(&"a");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_immediate_add_overtakes_a_delayed_one() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(5));
        q.add("a");
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(Instant::now(), start);
        q.done(&"a");
        // The delayed entry still fires later, which costs one extra no-op sync at most.
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_until_forgotten() {
        let q = queue();
        let mut waits = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            q.retry("a");
            assert_eq!(q.next().await, Some("a"));
            q.done(&"a");
            waits.push((Instant::now() - start).as_secs());
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 8]);
        assert_eq!(q.failures(&"a"), 5);
        q.forget(&"a");
        let start = Instant::now();
        q.retry("a");
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_a_new_earlier_deadline() {
        let q = std::sync::Arc::new(queue());
        q.add_after("late", Duration::from_secs(10));
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        q.add_after("early", Duration::from_secs(1));
        assert_eq!(worker.await.unwrap(), Some("early"));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn shut_down_releases_waiting_workers() {
        let q = std::sync::Arc::new(queue());
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), None);
        q.add("a");
        assert_eq!(q.next().await, None);
    }
}
