//! What an operator does to a breaker by hand, and what they read from it.

use std::time::Duration;

use super::core::{Core, NANOS_PER_MS, probe_totals};
use super::events::{EventKind, TransitionCause};
use super::metrics::MetricsSnapshot;
use super::state::{CircuitState, Probes, Word};
use super::window::Totals;

impl Core {
    /// Moves the breaker to `target` (any state from any state); nothing happens, and nothing is
    /// emitted, when it is there already.
    pub(crate) fn transition_to(&self, target: CircuitState) {
        let mut word = self.load();
        loop {
            if word.is_retired() {
                // Reconfigured meanwhile: the breaker is its successor now (a retired
                // generation has one, set before it was retired).
                if let Some(next) = self.successor.get() {
                    next.transition_to(target);
                }
                return;
            }
            if word.state() == target {
                return;
            }
            let now = self.now();
            let epoch = word.epoch().next();
            let next = match target {
                CircuitState::Open => self.open_word(word, now, None),
                CircuitState::HalfOpen => Word::half_open(epoch, Probes::default()),
                state => Word::plain(state, epoch),
            };
            let frozen = (target == CircuitState::Open).then(|| self.shown(word, now).0);
            match self.swap(word, next) {
                Ok(()) => {
                    self.entered(word, next, TransitionCause::Manual, now, frozen);
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Closes the breaker with an empty window, no backoff history and no rejection count.
    pub(crate) fn reset(&self) {
        let mut word = self.load();
        loop {
            if word.is_retired() {
                if let Some(next) = self.successor.get() {
                    next.reset();
                }
                return;
            }
            let now = self.now();
            let next = Word::plain(CircuitState::Closed, word.epoch().next());
            match self.swap(word, next) {
                Ok(()) => {
                    self.entered(word, next, TransitionCause::Reset, now, None);
                    self.restart_rejections(next.epoch());
                    tracing::info!(breaker = self.name(), from = %word.state(), "circuit breaker reset");
                    self.shared.events.emit(
                        &self.shared.name,
                        || self.shared.time.instant(now),
                        EventKind::Reset,
                        false,
                    );
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The window a snapshot of `word` shows, and the calls its rates need.
    fn shown(&self, word: Word, now: u64) -> (Totals, u64) {
        match word.state() {
            CircuitState::Closed | CircuitState::MetricsOnly => (
                self.slot.window.totals(word.epoch().window_tag(), now),
                self.minimum_calls,
            ),
            CircuitState::Open => self.frozen(word.epoch()),
            CircuitState::HalfOpen => (
                probe_totals(word.probes()),
                u64::from(self.config.permitted_calls_in_half_open),
            ),
            CircuitState::Disabled | CircuitState::ForcedOpen => {
                (Totals::default(), self.minimum_calls)
            }
        }
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let word = self.load();
        let now = self.now();
        let (totals, minimum) = self.shown(word, now);
        let rate = |count: u64| {
            (totals.calls > 0 && totals.calls >= minimum)
                .then(|| count as f64 * 100.0 / totals.calls as f64)
        };
        let retry_after = (word.state() == CircuitState::Open).then(|| {
            let until = word.open_until_ms().saturating_mul(NANOS_PER_MS);
            Duration::from_nanos(until.saturating_sub(now))
        });
        MetricsSnapshot {
            state: word.state(),
            failure_rate: rate(totals.failed),
            slow_call_rate: self.config.slow_calls.and(rate(totals.slow)),
            buffered_calls: totals.calls,
            failed_calls: totals.failed,
            successful_calls: totals.calls.saturating_sub(totals.failed),
            slow_calls: totals.slow,
            not_permitted_calls: self.not_permitted(),
            last_transition_at: self.shared.time.instant(self.last_transition()),
            retry_after,
        }
    }
}

impl Core {
    /// Makes the breaker new, for another key of a keyed layer: closed, an empty window, no
    /// backoff history, no rejections; calls in flight for the old key become stale. Quiet: no
    /// event and no log (the layer's eviction is not the breaker's doing).
    pub(crate) fn recycle(&self) {
        let mut word = self.load();
        let next = loop {
            let next = Word::plain(CircuitState::Closed, word.epoch().next());
            match self.swap(word, next) {
                Ok(()) => break next,
                Err(actual) => word = actual,
            }
        };
        let now = self.now();
        self.last_transition
            .store(now, std::sync::atomic::Ordering::Release);
        self.open_attempts
            .store(0, std::sync::atomic::Ordering::Release);
        self.slot.window.reset(next.epoch().window_tag(), now);
        self.restart_rejections(next.epoch());
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        self.shared
            .metrics
            .moved(word.state(), CircuitState::Closed);
    }
}
