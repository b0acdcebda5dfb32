//! Transitions: what entering a state implies, the open wait, the count of rejections, and
//! what a transition logs and emits.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::core::{Core, Frozen, NANOS_PER_MS, Rejection, splitmix64};
use super::events::{EventKind, TransitionCause};
use super::state::{CircuitState, Epoch, MAX_UNTIL_MS, Word};
use super::window::Totals;

const EPISODE_SHIFT: u32 = 43;
const REJECTIONS_MASK: u64 = (1 << EPISODE_SHIFT) - 1;

impl Core {
    /// Counts a rejected call in the count of its opening.
    pub(crate) fn rejected(&self, rejection: &Rejection) {
        let before = self.not_permitted.fetch_add(1, Ordering::Relaxed);
        let stored = Epoch::from_bits(before >> EPISODE_SHIFT);
        if stored != rejection.epoch() {
            if stored.is_after(rejection.epoch()) {
                // The breaker has opened again since this rejection: it belongs to the past.
                self.uncount_rejection(stored);
            } else if matches!(
                rejection.state(),
                CircuitState::Open | CircuitState::ForcedOpen
            ) {
                // The transition that opened the breaker has not restarted the count yet, so
                // the increment went to the previous opening: move it to this one.
                self.count_rejection_in(rejection.epoch());
            }
            // A half-open rejection counts toward the opening before it.
        }
        #[cfg(feature = "metrics")]
        self.shared.metrics.rejected();
        self.emit_per_call(EventKind::CallNotPermitted {
            state: rejection.state(),
        });
    }

    /// Takes back one rejection from the count of `episode`, if that count is still the
    /// current one (a count restarted meanwhile must not go below zero).
    fn uncount_rejection(&self, episode: Epoch) {
        let mut current = self.not_permitted.load(Ordering::Relaxed);
        while Epoch::from_bits(current >> EPISODE_SHIFT) == episode && current & REJECTIONS_MASK > 0
        {
            match self.not_permitted.compare_exchange_weak(
                current,
                current - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Moves a rejection counted in an earlier opening's count into `episode`'s.
    fn count_rejection_in(&self, episode: Epoch) {
        // Restarted meanwhile, without this rejection: add it. (When the breaker has opened
        // again since, the rejection belongs to the past and counts nowhere.)
        if self.restart_count(episode, 1) == Err(episode) {
            self.not_permitted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Restarts the count of rejections for the opening (or reset) of `episode`, unless a
    /// rejection of that episode restarted it first.
    pub(super) fn restart_rejections(&self, episode: Epoch) {
        let _ = self.restart_count(episode, 0);
    }

    /// Makes the count `episode`'s, at `count`, unless it is already `episode`'s or a later
    /// opening's: then `Err` with that opening.
    fn restart_count(&self, episode: Epoch, count: u64) -> Result<(), Epoch> {
        let mut current = self.not_permitted.load(Ordering::Relaxed);
        loop {
            let owner = Epoch::from_bits(current >> EPISODE_SHIFT);
            if owner == episode || owner.is_after(episode) {
                return Err(owner);
            }
            let restarted = u64::from(episode.get()) << EPISODE_SHIFT | count;
            match self.not_permitted.compare_exchange_weak(
                current,
                restarted,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// The open word that follows `from`, waiting `wait` or the configured wait.
    pub(super) fn open_word(&self, from: Word, now: u64, wait: Option<Duration>) -> Word {
        let attempt = if from.state() == CircuitState::HalfOpen {
            self.open_attempts.load(Ordering::Acquire).saturating_add(1)
        } else {
            1
        };
        let wait = wait.unwrap_or_else(|| self.config.open_wait(attempt, self.draw(from.epoch())));
        let until = u128::from(now) + wait.as_nanos();
        // Round up to whole milliseconds: a breaker never opens for less than its wait.
        let until_ms = until.div_ceil(u128::from(NANOS_PER_MS));
        Word::open(
            from.epoch().next(),
            u64::try_from(until_ms)
                .unwrap_or(MAX_UNTIL_MS)
                .min(MAX_UNTIL_MS),
        )
    }

    pub(super) fn half_open_deadline(&self, word: Word, max_wait: Duration, now: u64) -> u64 {
        let since = self.half_open_since.load(Ordering::Acquire);
        let since_ms = if since >> 43 == u64::from(word.epoch().get()) {
            since & ((1 << 43) - 1)
        } else {
            // The transition has not stamped its start yet: it began just now.
            now / NANOS_PER_MS
        };
        let max = u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX);
        since_ms.saturating_mul(NANOS_PER_MS).saturating_add(max)
    }

    /// A uniform draw in `[0, 1)` for the open wait's jitter, different for every opening of
    /// every breaker, and the same for a given breaker name, creation order and epoch.
    fn draw(&self, epoch: Epoch) -> f64 {
        let bits = splitmix64(self.jitter_seed ^ u64::from(epoch.get()));
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Everything a transition from `from` to `to` (already stored) implies; `frozen` is the
    /// window an open breaker shows.
    pub(super) fn entered(
        &self,
        from: Word,
        to: Word,
        cause: TransitionCause,
        now: u64,
        frozen: Option<Totals>,
    ) {
        self.last_transition.store(now, Ordering::Release);
        let tag = to.epoch().window_tag();
        match to.state() {
            CircuitState::Open => {
                if from.state() == CircuitState::HalfOpen {
                    self.open_attempts.fetch_add(1, Ordering::AcqRel);
                } else {
                    self.open_attempts.store(1, Ordering::Release);
                }
                let minimum = if from.state() == CircuitState::HalfOpen {
                    u64::from(self.config.permitted_calls_in_half_open)
                } else {
                    self.minimum_calls
                };
                *self.frozen.lock().unwrap_or_else(PoisonError::into_inner) = Frozen {
                    epoch: to.epoch(),
                    totals: frozen.unwrap_or_default(),
                    minimum,
                };
                self.slot.window.reset(tag, now);
                self.restart_rejections(to.epoch());
                if self.config.automatic_transition {
                    self.schedule_half_open(to);
                }
            }
            CircuitState::HalfOpen => {
                let since = u64::from(to.epoch().get()) << 43 | (now / NANOS_PER_MS);
                self.half_open_since.store(since, Ordering::Release);
            }
            CircuitState::Closed => {
                self.open_attempts.store(0, Ordering::Release);
                self.slot.window.reset(tag, now);
            }
            CircuitState::ForcedOpen => {
                self.slot.window.reset(tag, now);
                self.restart_rejections(to.epoch());
            }
            CircuitState::Disabled | CircuitState::MetricsOnly => self.slot.window.reset(tag, now),
        }
        // Waiters first: a subscriber's callback may panic.
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        self.shared.metrics.moved(from.state(), to.state());
        if from.state() != to.state() {
            self.log_transition(from.state(), to, cause, now);
            self.shared.events.emit(
                &self.shared.name,
                || self.shared.time.instant(now),
                EventKind::StateTransition {
                    from: from.state(),
                    to: to.state(),
                    cause,
                },
                false,
            );
        }
    }

    fn log_transition(&self, from: CircuitState, to: Word, cause: TransitionCause, now: u64) {
        let label = self.shared.label();
        let name: &str = &label;
        match to.state() {
            CircuitState::Open => {
                let wait_ms = to.open_until_ms().saturating_sub(now / NANOS_PER_MS);
                tracing::warn!(breaker = name, %from, ?cause, wait_ms, "circuit breaker opened: calls fail fast until the wait ends");
            }
            CircuitState::HalfOpen => {
                tracing::info!(breaker = name, %from, ?cause, "circuit breaker half-open: letting probe calls through");
            }
            CircuitState::Closed => {
                tracing::info!(breaker = name, %from, ?cause, "circuit breaker closed");
            }
            state => {
                tracing::info!(breaker = name, %from, to = %state, ?cause, "circuit breaker changed state");
            }
        }
    }

    pub(super) fn not_permitted(&self) -> u64 {
        self.not_permitted.load(Ordering::Relaxed) & REJECTIONS_MASK
    }

    pub(super) fn last_transition(&self) -> u64 {
        self.last_transition.load(Ordering::Acquire)
    }

    /// The window an open breaker of `epoch` shows, and the minimum its rates need.
    pub(super) fn frozen(&self, epoch: Epoch) -> (Totals, u64) {
        let frozen = *self.frozen.lock().unwrap_or_else(PoisonError::into_inner);
        if frozen.epoch == epoch {
            (frozen.totals, frozen.minimum)
        } else {
            (Totals::default(), self.minimum_calls)
        }
    }
}
