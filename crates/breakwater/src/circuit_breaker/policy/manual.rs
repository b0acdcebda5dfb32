//! What an operator does to a breaker by hand, and what they read from it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::snapshot::MetricsSnapshot;
use super::state::{CircuitState, Probes, Word};
use super::window::Totals;
use super::{Effects, NANOS_PER_MS, Policy, TransitionCause, probe_totals};

impl Policy {
    /// Moves the breaker to `target` (any state from any state); nothing happens, and nothing is
    /// reported, when it is there already. `false` if this generation is retired: the caller
    /// moves its successor instead.
    pub(crate) fn transition_to(&self, target: CircuitState, fx: &impl Effects) -> bool {
        let mut word = self.load();
        loop {
            if word.is_retired() {
                return false;
            }
            if word.state() == target {
                return true;
            }
            let now = fx.now();
            let epoch = word.epoch().next();
            let next = match target {
                CircuitState::Open => self.open_word(word, now, None),
                CircuitState::HalfOpen => Word::half_open(epoch, Probes::default()),
                state => Word::plain(state, epoch),
            };
            let frozen = (target == CircuitState::Open).then(|| self.shown(word, now).0);
            match self.swap(word, next) {
                Ok(()) => {
                    self.enter(word, next, TransitionCause::Manual, now, frozen, fx);
                    return true;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Closes the breaker with an empty window, no backoff history and no rejection count.
    /// The state it left, or `None` if this generation is retired (the caller resets its
    /// successor instead).
    pub(crate) fn reset(&self, fx: &impl Effects) -> Option<CircuitState> {
        let mut word = self.load();
        loop {
            if word.is_retired() {
                return None;
            }
            let now = fx.now();
            let next = Word::plain(CircuitState::Closed, word.epoch().next());
            match self.swap(word, next) {
                Ok(()) => {
                    self.enter(word, next, TransitionCause::Reset, now, None, fx);
                    self.restart_rejections(next.epoch());
                    return Some(word.state());
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Makes the breaker new, for another key of a keyed layer: closed, an empty window, no
    /// backoff history, no rejections; calls in flight for the old key become stale. Quiet:
    /// nothing is reported (the layer's eviction is not the breaker's doing). Returns the
    /// state it left.
    pub(crate) fn recycle(&self, now: u64) -> CircuitState {
        let mut word = self.load();
        let next = loop {
            let next = Word::plain(CircuitState::Closed, word.epoch().next());
            match self.swap(word, next) {
                Ok(()) => break next,
                Err(actual) => word = actual,
            }
        };
        self.last_transition.store(now, Ordering::Release);
        self.open_attempts.store(0, Ordering::Release);
        self.slot.window.reset(next.epoch().window_tag(), now);
        self.restart_rejections(next.epoch());
        word.state()
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

    /// The state and the window's numbers at `now`; `instant` turns the breaker's time into
    /// an `Instant`.
    pub(crate) fn snapshot(&self, now: u64, instant: impl Fn(u64) -> Instant) -> MetricsSnapshot {
        let word = self.load();
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
            last_transition_at: instant(self.last_transition()),
            retry_after,
        }
    }
}
