//! Transitions: what entering a state implies, the open wait, the count of rejections, and
//! what a transition logs and emits.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::state::{CircuitState, Epoch, MAX_UNTIL_MS, Word};
use super::window::Totals;
use super::{Effects, Frozen, NANOS_PER_MS, Policy, Rejection, Transition, splitmix64};

const EPISODE_SHIFT: u32 = 43;
const REJECTIONS_MASK: u64 = (1 << EPISODE_SHIFT) - 1;

impl Policy {
    /// Counts a rejected call in the count of its opening.
    pub(crate) fn count_rejection(&self, rejection: &Rejection) {
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
    pub(crate) fn restart_rejections(&self, episode: Epoch) {
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
    pub(crate) fn open_word(&self, from: Word, now: u64, wait: Option<Duration>) -> Word {
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

    pub(crate) fn half_open_deadline(&self, word: Word, max_wait: Duration, now: u64) -> u64 {
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

    /// What entering `to` from `from` (already stored) implies for the policy's own state;
    /// then the effects hear of it. `frozen` is the window an open breaker shows.
    pub(crate) fn enter(
        &self,
        from: Word,
        to: Word,
        cause: TransitionCause,
        now: u64,
        frozen: Option<Totals>,
        fx: &impl Effects,
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
        fx.entered(Transition {
            from,
            to,
            cause,
            at: now,
        });
    }

    /// Marks the timer of the open state of `epoch` pending: until it ends, that state's wait
    /// is not over, and rejections need not read the clock.
    pub(crate) fn arm_timer(&self, epoch: Epoch) {
        self.open_timer.store(timer_mark(epoch), Ordering::Release);
    }

    /// Clears the mark of the timer of `epoch`'s open state; `false` if another mark stands.
    pub(crate) fn disarm_timer(&self, epoch: Epoch) -> bool {
        let mark = timer_mark(epoch);
        self.open_timer
            .compare_exchange(mark, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the timer of the open state of `epoch` is pending: its wait is not over.
    #[inline]
    pub(crate) fn timer_pending(&self, epoch: Epoch) -> bool {
        self.open_timer.load(Ordering::Acquire) == timer_mark(epoch)
    }

    pub(crate) fn not_permitted(&self) -> u64 {
        self.not_permitted.load(Ordering::Relaxed) & REJECTIONS_MASK
    }

    pub(crate) fn last_transition(&self) -> u64 {
        self.last_transition.load(Ordering::Acquire)
    }

    /// The window an open breaker of `epoch` shows, and the minimum its rates need.
    pub(crate) fn frozen(&self, epoch: Epoch) -> (Totals, u64) {
        let frozen = *self.frozen.lock().unwrap_or_else(PoisonError::into_inner);
        if frozen.epoch == epoch {
            (frozen.totals, frozen.minimum)
        } else {
            (Totals::default(), self.minimum_calls)
        }
    }
}

const fn timer_mark(epoch: Epoch) -> u32 {
    epoch.get() + 1
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TransitionCause {
    /// The failure rate (percent) reached its threshold: closed to open, or half-open to open.
    FailureRate(f64),
    /// The slow-call rate (percent) reached its threshold.
    SlowCallRate(f64),
    /// A call's outcome was [`FailureFor`](crate::classify::Outcome::FailureFor): the callee
    /// asked for this long without calls.
    RetryAfter(Duration),
    /// The wait in the open state ended: open to half-open.
    WaitElapsed,
    /// Every probe call of the half-open state was recorded and the rates stayed below their
    /// thresholds: half-open to closed.
    ProbesSucceeded,
    /// The probes did not finish within
    /// [`max_wait_in_half_open`](crate::circuit_breaker::Builder::max_wait_in_half_open): half-open to open.
    HalfOpenTimedOut,
    /// A manual transition ([`transition_to`](crate::CircuitBreaker::transition_to) and its
    /// shorthands).
    Manual,
    /// [`reset`](crate::CircuitBreaker::reset).
    Reset,
    /// [`reconfigure`](crate::CircuitBreaker::reconfigure): the breaker restarts closed
    /// (unless it was in a manual state).
    Reconfigured,
    /// Closed to open on the word of a fleet of instances (breakwater-fleet): this many live
    /// instances reported the breaker open, at least the fleet's quorum. See
    /// [`open_by_fleet`](crate::CircuitBreaker::open_by_fleet).
    FleetQuorum {
        /// The live instances that reported the breaker open.
        reporting: u32,
    },
    /// Open to closed: this breaker's wait was over, and the probe calls another instance made
    /// for the fleet succeeded. See [`close_by_fleet`](crate::CircuitBreaker::close_by_fleet).
    FleetProbesSucceeded,
}
