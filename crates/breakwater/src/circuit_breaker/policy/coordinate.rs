//! Transitions a coordinator asks for: a fleet of instances that opens a breaker on the word
//! of the others, lets one instance probe for all, and closes a breaker held open once that
//! probe succeeded. Each moves the breaker only from the state the coordinator saw, and never
//! shortens an open wait.

use std::time::Duration;

use super::state::{CircuitState, Probes, Word};
use super::{Effects, NANOS_PER_MS, Policy, TransitionCause};

/// What a coordinated transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coordinated {
    /// The breaker moved.
    Moved,
    /// The breaker was not in a state the transition starts from; nothing happened.
    Declined,
    /// This generation is retired: the caller asks its successor.
    Retired,
}

impl Policy {
    /// Opens a closed breaker for `wait` (at least a millisecond), because of `cause`.
    pub(crate) fn open_closed_for(
        &self,
        wait: Duration,
        cause: TransitionCause,
        fx: &impl Effects,
    ) -> Coordinated {
        let wait = wait.max(Duration::from_millis(1));
        self.coordinate(
            fx,
            |word, now| {
                (word.state() == CircuitState::Closed)
                    .then(|| self.open_word(word, now, Some(wait)))
            },
            cause,
        )
    }

    /// Moves an open breaker whose wait is over to half-open, whatever holds it: the
    /// coordinator granted this instance the probe.
    pub(crate) fn probe_now(&self, fx: &impl Effects) -> Coordinated {
        self.coordinate(
            fx,
            |word, now| {
                wait_over(word, now)
                    .then(|| Word::half_open(word.epoch().next(), Probes::default()))
            },
            TransitionCause::WaitElapsed,
        )
    }

    /// Closes an open breaker whose wait is over: the probe another instance made for the
    /// fleet succeeded.
    pub(crate) fn close_held(&self, fx: &impl Effects) -> Coordinated {
        self.coordinate(
            fx,
            |word, now| {
                wait_over(word, now).then(|| Word::plain(CircuitState::Closed, word.epoch().next()))
            },
            TransitionCause::FleetProbesSucceeded,
        )
    }

    /// Moves a half-open breaker back to open for its configured wait (cause
    /// [`HalfOpenTimedOut`](TransitionCause::HalfOpenTimedOut)): its probes did not finish
    /// in the time the coordinator gives them.
    pub(crate) fn end_probing(&self, fx: &impl Effects) -> Coordinated {
        self.coordinate(
            fx,
            |word, now| {
                (word.state() == CircuitState::HalfOpen).then(|| self.open_word(word, now, None))
            },
            TransitionCause::HalfOpenTimedOut,
        )
    }

    /// Swaps in what `next` makes of the current word, if anything, and enters it.
    fn coordinate(
        &self,
        fx: &impl Effects,
        next: impl Fn(Word, u64) -> Option<Word>,
        cause: TransitionCause,
    ) -> Coordinated {
        let mut word = self.load();
        loop {
            if word.is_retired() {
                return Coordinated::Retired;
            }
            let now = fx.now();
            let Some(to) = next(word, now) else {
                return Coordinated::Declined;
            };
            match self.swap(word, to) {
                Ok(()) => {
                    self.enter(word, to, cause, now, None, fx);
                    return Coordinated::Moved;
                }
                Err(actual) => word = actual,
            }
        }
    }
}

/// Whether `word` is an open state whose wait is over at `now`.
fn wait_over(word: Word, now: u64) -> bool {
    word.state() == CircuitState::Open && now >= word.open_until_ms().saturating_mul(NANOS_PER_MS)
}
