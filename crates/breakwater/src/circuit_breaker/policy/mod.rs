//! The breaking policy: the state word, the windows, the thresholds, the transitions and
//! admission. Plain code over atomics: nothing here knows of tower, tokio, tracing, http or
//! metrics. What a decision implies beyond the policy's own state (waking waiters, a timer,
//! logs, events, metrics) it reports through [`Effects`], which also tells it the time; the
//! generation that owns a policy implements it (`circuit_breaker::generation`), and the tests
//! below use a manual one.
//!
//! One [`Policy`] is one generation of a breaker's policy: its configuration, the counters of
//! its transitions, and a [`Slot`] (its state word and window, the part that calls in flight
//! reach without a reference count: see [`slot`]).

mod admission;
pub(crate) mod config;
mod coordinate;
mod manual;
mod record;
pub(crate) mod slot;
pub(crate) mod snapshot;
pub(crate) mod state;
#[cfg(test)]
mod tests;
mod transition;
pub(crate) mod window;

use std::sync::atomic::Ordering;
use std::time::Duration;

use self::admission::{ADMITTED, PROBE, RETIRED};
pub(crate) use self::admission::{Admission, Next, Rejection};
pub(crate) use self::config::Config;
pub(crate) use self::coordinate::Coordinated;
use self::slot::Slot;
use self::state::{CircuitState, Epoch, Probes, Word};
pub use self::transition::TransitionCause;
use self::window::{Padded, Totals};
use crate::classify::Outcome;
use crate::sync::{AtomicU32, AtomicU64, Mutex};

pub(crate) const NANOS_PER_MS: u64 = 1_000_000;

/// What the policy reports, and the time it asks for. See the module docs.
pub(crate) trait Effects {
    /// Nanoseconds since the breaker was built, by its clock.
    fn now(&self) -> u64;
    /// The breaker entered a state: the word is stored and the policy's own counters follow.
    fn entered(&self, transition: Transition);
    /// Whether anybody wants to hear of every counted call ([`counted`](Self::counted)).
    fn per_call(&self) -> bool;
    /// A call's outcome was counted (in the window, or as a probe); an ignored one was seen and
    /// not recorded.
    fn counted(&self, outcome: Outcome, slow: bool, elapsed: Option<Duration>);
    /// A call ended, counted or not (its state may have ended meanwhile).
    fn ended(&self, outcome: Outcome, slow: bool, elapsed: Option<Duration>);
    /// A metrics-only breaker would have opened; reported once per stay in that state.
    fn threshold_exceeded(&self, cause: TransitionCause);
    /// A half-open permit was given back: a waiting call may take it.
    fn permit_returned(&self);
    /// Until when (nanoseconds since the breaker was built) an open breaker whose wait is over
    /// stays open, its move to half-open held by a coordinator (a fleet that lets one instance
    /// probe at a time); 0 when nothing holds it.
    fn held_until(&self) -> u64 {
        0
    }
}

/// A state the breaker entered: from, to, why and when (nanoseconds since it was built).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transition {
    pub(crate) from: Word,
    pub(crate) to: Word,
    pub(crate) cause: TransitionCause,
    pub(crate) at: u64,
}

/// One generation of a breaker's policy.
pub(crate) struct Policy {
    /// The state word and the window: what calls in flight reach without a reference count.
    pub(crate) slot: &'static Slot,
    /// Rejections since the breaker last opened: `epoch of that opening << 43 | count`.
    not_permitted: Padded<AtomicU64>,
    pub(crate) config: Config,
    /// `minimum_calls`, capped at a count window's size.
    minimum_calls: u64,
    /// Consecutive openings since the breaker last closed, for the backoff.
    open_attempts: AtomicU32,
    /// When the current half-open state began: `epoch << 43 | milliseconds`.
    half_open_since: AtomicU64,
    /// Nanoseconds since the breaker was built, of the last transition.
    last_transition: AtomicU64,
    /// The window shown while open: the one that opened the breaker.
    frozen: Mutex<Frozen>,
    /// The last metrics-only epoch whose exceeded thresholds were reported, plus one.
    reported_epoch: AtomicU32,
    /// The epoch (plus one) of the open state whose automatic-transition timer is pending; 0
    /// when none is.
    open_timer: AtomicU32,
    jitter_seed: u64,
}

impl Policy {
    /// A policy of `config` on `slot` (fresh: taken for this generation), built at `now`;
    /// `seed` spreads the open wait's jitter.
    pub(crate) fn new(slot: &'static Slot, config: Config, seed: u64, now: u64) -> Self {
        let minimum_calls = match slot.window.minimum_cap() {
            Some(size) => u64::from(config.minimum_calls).min(size),
            None => u64::from(config.minimum_calls),
        };
        Self {
            slot,
            not_permitted: Padded(AtomicU64::new(0)),
            config,
            minimum_calls,
            open_attempts: AtomicU32::new(0),
            half_open_since: AtomicU64::new(0),
            last_transition: AtomicU64::new(now),
            frozen: Mutex::new(Frozen::default()),
            reported_epoch: AtomicU32::new(0),
            open_timer: AtomicU32::new(0),
            jitter_seed: seed,
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> Word {
        self.slot.load()
    }

    #[inline]
    pub(crate) fn swap(&self, current: Word, next: Word) -> Result<(), Word> {
        self.slot.swap(current, next)
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.load().state()
    }

    /// Whether `epoch` is the breaker's current epoch: no transition happened since.
    #[inline]
    pub(crate) fn is_current(&self, epoch: Epoch) -> bool {
        self.load().epoch() == epoch
    }

    /// Whether a call admitted now as `admission`, and not timed, may hold no reference to its
    /// generation: closed, and its window clean (see [`slot`]).
    #[inline]
    pub(crate) fn clean_path(&self, admission: Admission) -> bool {
        match admission {
            Admission::Closed(epoch) => self.slot.success_is_noop(epoch),
            _ => false,
        }
    }

    /// What a call attempt now gets. Moves an open breaker whose wait is over to half-open
    /// (taking the first probe permit in the same step), and a half-open breaker whose probes
    /// outlived `max_wait_in_half_open` back to open. With `take_probe` false, a call that
    /// would be a half-open probe takes nothing and gets [`Next::Probe`]: the caller makes sure
    /// it can use a probe (its inner service is ready) before taking one.
    #[inline]
    pub(crate) fn next(&self, take_probe: bool, fx: &impl Effects) -> Next {
        let word = self.load();
        if word.state() == CircuitState::Closed {
            return Next::Admit(Admission::Closed(word.epoch()));
        }
        // Decided out of line and passed back as two words, which travel in registers (an
        // enum this size would go through memory, and stall the load that reads it back).
        let (decided, deadline) = self.decide(word, take_probe, fx);
        if deadline == PROBE {
            return Next::Probe;
        }
        if deadline != ADMITTED {
            return Next::Reject(Rejection::new(decided, deadline));
        }
        let (state, epoch) = (decided.state(), decided.epoch());
        Next::Admit(match state {
            CircuitState::MetricsOnly => Admission::MetricsOnly(epoch),
            CircuitState::HalfOpen => Admission::Probe(epoch),
            CircuitState::Disabled => Admission::Passthrough(epoch),
            _ => Admission::Closed(epoch),
        })
    }

    #[inline(never)]
    /// The decision for `word`: the state (and epoch) that decided, and either `ADMITTED`,
    /// `PROBE` (a probe is free and `take_probe` is false) or the rejection's deadline in
    /// milliseconds, rounded up (`u64::MAX`: none).
    fn decide(&self, mut word: Word, take_probe: bool, fx: &impl Effects) -> (Word, u64) {
        loop {
            let epoch = word.epoch();
            match word.state() {
                CircuitState::Closed | CircuitState::MetricsOnly | CircuitState::Disabled => {
                    return (Word::plain(word.state(), epoch), ADMITTED);
                }
                CircuitState::ForcedOpen if word.is_retired() => {
                    return (Word::plain(CircuitState::ForcedOpen, epoch), RETIRED);
                }
                CircuitState::ForcedOpen => {
                    return (Word::plain(CircuitState::ForcedOpen, epoch), u64::MAX);
                }
                CircuitState::Open => {
                    let until_ms = word.open_until_ms();
                    // With the automatic transition, this opening's timer moves the breaker on
                    // when the wait ends: while it is pending, no clock read is needed.
                    if self.timer_pending(epoch) {
                        return (Word::plain(CircuitState::Open, epoch), until_ms);
                    }
                    let now = fx.now();
                    if now < until_ms.saturating_mul(NANOS_PER_MS) {
                        return (Word::plain(CircuitState::Open, epoch), until_ms);
                    }
                    // The wait is over here, but a coordinator holds the move to half-open
                    // (another instance probes for the fleet): still open, until it says.
                    let held = fx.held_until();
                    if now < held {
                        let held_ms = held.div_ceil(NANOS_PER_MS);
                        return (Word::plain(CircuitState::Open, epoch), held_ms);
                    }
                    if !take_probe {
                        return (Word::plain(CircuitState::Open, epoch), PROBE);
                    }
                    let first = Probes {
                        taken: 1,
                        ..Probes::default()
                    };
                    let next = Word::half_open(epoch.next(), first);
                    match self.swap(word, next) {
                        Ok(()) => {
                            self.enter(word, next, TransitionCause::WaitElapsed, now, None, fx);
                            return (Word::plain(CircuitState::HalfOpen, next.epoch()), ADMITTED);
                        }
                        Err(actual) => word = actual,
                    }
                }
                CircuitState::HalfOpen => {
                    let probes = word.probes();
                    if probes.taken < self.config.permitted_calls_in_half_open {
                        if !take_probe {
                            return (Word::plain(CircuitState::HalfOpen, epoch), PROBE);
                        }
                        let next = word.with_probes(Probes {
                            taken: probes.taken + 1,
                            ..probes
                        });
                        match self.swap(word, next) {
                            Ok(()) => {
                                return (Word::plain(CircuitState::HalfOpen, epoch), ADMITTED);
                            }
                            Err(actual) => word = actual,
                        }
                        continue;
                    }
                    let Some(max_wait) = self.config.max_wait_in_half_open else {
                        return (Word::plain(CircuitState::HalfOpen, epoch), u64::MAX);
                    };
                    let now = fx.now();
                    let deadline = self.half_open_deadline(word, max_wait, now);
                    if now < deadline {
                        let deadline_ms = deadline.div_ceil(NANOS_PER_MS);
                        return (Word::plain(CircuitState::HalfOpen, epoch), deadline_ms);
                    }
                    let next = self.open_word(word, now, None);
                    if self.swap(word, next).is_ok() {
                        let totals = probe_totals(probes);
                        let cause = TransitionCause::HalfOpenTimedOut;
                        self.enter(word, next, cause, now, Some(totals), fx);
                    }
                    // Either way, look again: the breaker is now open (or changed meanwhile).
                    word = self.load();
                }
            }
        }
    }
}

/// The window an open breaker shows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frozen {
    pub(crate) epoch: Epoch,
    pub(crate) totals: Totals,
    pub(crate) minimum: u64,
}

impl Default for Frozen {
    fn default() -> Self {
        Self {
            epoch: Epoch::INITIAL,
            totals: Totals::default(),
            minimum: 0,
        }
    }
}

pub(crate) fn probe_totals(probes: Probes) -> Totals {
    Totals {
        calls: u64::from(probes.recorded),
        failed: u64::from(probes.failed),
        slow: u64::from(probes.slow),
    }
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A per-breaker seed: the name's FNV-1a hash mixed with the breaker's creation order.
pub(crate) fn seed(name: &str) -> u64 {
    // A process-wide count: always the standard library's atomic, even on loom.
    use std::sync::atomic::AtomicU64 as ProcessWide;
    static CREATED: ProcessWide = ProcessWide::new(0);
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    splitmix64(hash ^ CREATED.fetch_add(1, Ordering::Relaxed))
}
