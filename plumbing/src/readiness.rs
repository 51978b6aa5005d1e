//! Whether a process is ready, for its `/readyz`: each part that must be ready before the
//! process takes traffic holds a named gate; the process is ready while every gate is. A
//! gate dropped (its part stopped) stays not ready for good.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    NotReady,
    Ready,
    /// The part that held the gate stopped.
    Ended,
}

type Gates = BTreeMap<&'static str, Gate>;

/// Whether every gate is ready; clones see the same gates.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<watch::Sender<Gates>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Gates::new())))
    }
}

impl Readiness {
    /// A gate named `name`, not ready until set. A process with no gate is not ready.
    pub fn gate(&self, name: &'static str) -> ReadinessGate {
        self.0.send_modify(|gates| {
            gates.insert(name, Gate::NotReady);
        });
        ReadinessGate {
            name,
            readiness: self.clone(),
        }
    }

    /// Ready now: there is a gate, and every gate is ready.
    pub fn is_ready(&self) -> bool {
        all_ready(&self.0.borrow())
    }

    /// The gates not ready now, by name.
    pub fn not_ready(&self) -> Vec<&'static str> {
        self.0
            .borrow()
            .iter()
            .filter(|(_, gate)| **gate != Gate::Ready)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Waits until ready; `false` when a gate was dropped first.
    pub async fn ready(&mut self) -> bool {
        let mut gates = self.0.subscribe();
        let _ = gates
            .wait_for(|gates| all_ready(gates) || gates.values().any(|g| *g == Gate::Ended))
            .await;
        self.is_ready()
    }
}

fn all_ready(gates: &Gates) -> bool {
    !gates.is_empty() && gates.values().all(|gate| *gate == Gate::Ready)
}

/// One part's say in a [`Readiness`].
#[derive(Debug)]
pub struct ReadinessGate {
    name: &'static str,
    readiness: Readiness,
}

impl ReadinessGate {
    /// Marks this part ready (or not).
    pub fn set(&self, ready: bool) {
        let state = if ready { Gate::Ready } else { Gate::NotReady };
        self.readiness.0.send_if_modified(|gates| {
            let gate = gates.entry(self.name).or_insert(Gate::NotReady);
            let changed = *gate != state && *gate != Gate::Ended;
            if changed {
                *gate = state;
            }
            changed
        });
    }
}

impl Drop for ReadinessGate {
    fn drop(&mut self) {
        self.readiness.0.send_modify(|gates| {
            gates.insert(self.name, Gate::Ended);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_while_every_gate_is_and_not_after_one_is_dropped() {
        let mut readiness = Readiness::default();
        assert!(!readiness.is_ready(), "no gate: not ready");
        let (webhook, controllers) = (readiness.gate("webhook"), readiness.gate("controllers"));
        webhook.set(true);
        assert!(!readiness.is_ready());
        assert_eq!(readiness.not_ready(), ["controllers"]);
        controllers.set(true);
        assert!(readiness.ready().await);
        assert!(readiness.clone().is_ready());
        webhook.set(false);
        assert!(!readiness.is_ready());
        webhook.set(true);
        drop(controllers);
        assert!(!readiness.is_ready());
        assert!(!readiness.ready().await, "a dropped gate ends the wait");
    }
}
