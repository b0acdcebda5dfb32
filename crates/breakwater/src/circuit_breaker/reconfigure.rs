//! Reconfiguration: a new generation of the breaker replaces the current one.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::config::Config;
use super::core::Core;
use super::events::{EventKind, TransitionCause};
use super::state::{CircuitState, Word};

impl Core {
    /// Replaces this generation, the breaker's latest, with a generation of `config`; the
    /// caller holds the breaker's lock on its latest generation, so reconfigurations of one
    /// breaker never race. Returns the new generation.
    pub(crate) fn reconfigure(self: &Arc<Self>, config: &Config) -> Arc<Core> {
        let state = carried(self.load().state());
        let successor = Core::new(Arc::clone(&self.shared), config.clone(), state);
        // Set before retiring: whoever finds this generation retired finds its successor.
        let _ = self.successor.set(Arc::clone(&successor));
        self.retire(&successor, state);
        successor
    }

    /// Retires this generation in favour of `successor` (which starts in `state`): permits it
    /// handed out become stale, services waiting on it wake up and move on.
    fn retire(&self, successor: &Core, state: CircuitState) {
        let mut word = self.load();
        loop {
            let retired = Word::retired(word.epoch().next());
            match self.swap(word, retired) {
                Ok(()) => break,
                Err(actual) => word = actual,
            }
        }
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        self.shared.metrics.moved(word.state(), state);
        let now = successor.now();
        successor.last_transition.store(now, Ordering::Release);
        let from = word.state();
        tracing::info!(
            breaker = self.name(),
            %from,
            to = %state,
            "circuit breaker reconfigured: its window starts afresh"
        );
        let events = self.events();
        let at = || self.shared.time.instant(now);
        events.emit(&self.shared.name, at, EventKind::Reconfigured, false);
        if from != state {
            events.emit(
                &self.shared.name,
                at,
                EventKind::StateTransition {
                    from,
                    to: state,
                    cause: TransitionCause::Reconfigured,
                },
                false,
            );
        }
        // An operator's transition made on this generation after `state` was read (and
        // before the successor was published, when transitions started going to it) is in
        // the word swapped out: the successor follows it, unless it has moved on since.
        let wanted = carried(from);
        if wanted != state && successor.load().state() == state {
            successor.transition_to(wanted);
        }
    }
}

/// The state a new generation starts in: a manual state is kept, any other restarts closed.
fn carried(state: CircuitState) -> CircuitState {
    match state {
        manual
        @ (CircuitState::Disabled | CircuitState::ForcedOpen | CircuitState::MetricsOnly) => manual,
        _ => CircuitState::Closed,
    }
}
