//! Reconfiguration: a new generation of the breaker replaces the current one.

use std::sync::atomic::Ordering;

use super::config::Config;
use super::core::Core;
use super::events::{EventKind, TransitionCause};
use super::state::{CircuitState, Word};

impl Core {
    /// Replaces the latest generation from this one on with a generation of `config`.
    pub(crate) fn reconfigure(&'static self, config: &Config) {
        let mut current = self.latest();
        loop {
            let state = carried(current.load().state());
            let mut made = false;
            let successor = current.successor.get_or_init(|| {
                made = true;
                // Never freed, as the first generation: calls in flight may still reach this
                // one after it is retired in turn.
                Box::leak(Box::new(Core::new(current.shared, config.clone(), state)))
            });
            if made {
                current.retire(successor, state);
                return;
            }
            // Another reconfiguration got there first: replace the one it made.
            current = successor.latest();
        }
    }

    /// Retires this generation in favour of `successor` (which starts in `state`): permits it
    /// handed out become stale, services waiting on it wake up and move on.
    fn retire(&'static self, successor: &'static Core, state: CircuitState) {
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
        events.emit(self.name(), at, EventKind::Reconfigured, false);
        if from != state {
            events.emit(
                self.name(),
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
