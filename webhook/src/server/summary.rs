//! Log lines a caller can multiply (denials, refused connections) are budgeted: the first
//! few of each kind per interval are logged, the rest counted, and that count logged once,
//! with the first event of the kind after the interval. 47,000 forged reviews once wrote
//! 29 MB of denial lines; the metrics still count every one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Per-kind log budget. Pure: the caller passes the time.
#[derive(Debug)]
pub struct LogSummary {
    interval: Duration,
    per_interval: usize,
    windows: HashMap<&'static str, Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: usize,
    skipped: u64,
}

/// What to do with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Log this event.
    pub log: bool,
    /// Events of this kind skipped in the interval that just ended: log that count first.
    pub skipped_before: Option<u64>,
}

impl LogSummary {
    /// Logs at most `per_interval` events of each kind per `interval`.
    pub fn new(interval: Duration, per_interval: usize) -> Self {
        Self {
            interval,
            per_interval,
            windows: HashMap::new(),
        }
    }

    /// Counts one event of `kind` now and runs `log` when it is within the budget; first, at
    /// `level`, a line with how many of the previous interval were not logged, if any.
    pub fn within_budget(&mut self, kind: &'static str, level: tracing::Level, log: impl FnOnce()) {
        let verdict = self.verdict(Instant::now(), kind);
        if let Some(skipped) = verdict.skipped_before {
            let seconds = self.interval.as_secs();
            if level == tracing::Level::WARN {
                tracing::warn!(
                    kind,
                    skipped,
                    seconds,
                    "events not logged one by one in the last interval"
                );
            } else {
                tracing::info!(
                    kind,
                    skipped,
                    seconds,
                    "events not logged one by one in the last interval"
                );
            }
        }
        if verdict.log {
            log();
        }
    }

    /// Counts one event of `kind` at `now` and says whether to log it.
    pub fn verdict(&mut self, now: Instant, kind: &'static str) -> Verdict {
        let window = self.windows.entry(kind).or_insert(Window {
            started: now,
            logged: 0,
            skipped: 0,
        });
        let mut skipped_before = None;
        if now.saturating_duration_since(window.started) >= self.interval {
            skipped_before = (window.skipped > 0).then_some(window.skipped);
            *window = Window {
                started: now,
                logged: 0,
                skipped: 0,
            };
        }
        let log = window.logged < self.per_interval;
        if log {
            window.logged += 1;
        } else {
            window.skipped += 1;
        }
        Verdict {
            log,
            skipped_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_per_interval_are_logged_then_counted() {
        let start = Instant::now();
        let mut summary = LogSummary::new(Duration::from_secs(10), 3);
        let logged: Vec<bool> = (0..5)
            .map(|i| {
                summary
                    .verdict(start + Duration::from_secs(i), "mutate")
                    .log
            })
            .collect();
        assert_eq!(logged, [true, true, true, false, false]);
        // Another kind has its own budget.
        assert!(summary.verdict(start, "validate").log);

        let next = summary.verdict(start + Duration::from_secs(10), "mutate");
        assert_eq!(
            next,
            Verdict {
                log: true,
                skipped_before: Some(2)
            }
        );
    }

    #[test]
    fn an_interval_without_skips_has_no_summary() {
        let start = Instant::now();
        let mut summary = LogSummary::new(Duration::from_secs(10), 3);
        summary.verdict(start, "mutate");
        let later = summary.verdict(start + Duration::from_secs(11), "mutate");
        assert_eq!(later.skipped_before, None);
        assert!(later.log);
    }
}
