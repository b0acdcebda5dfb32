//! The breaker itself: admission, recording and transitions. Nothing here knows of tower.
//!
//! A `Core` is allocated once per breaker and never freed (see
//! [`CircuitBreaker`](super::CircuitBreaker)), so permits and futures reach it through a plain
//! `&'static` reference: no reference count is touched on the call path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::{Config, MAX_WAIT, WindowKind};
use super::events::{EventKind, Events, TransitionCause};
use super::state::{CircuitState, Epoch, MAX_UNTIL_MS, Probes, Word};
use super::window::{CountWindow, Padded, Sample, TimeWindow, Totals, Window};
use crate::classify::Outcome;
use crate::clock::{Clock, Timeline};

pub(crate) const NANOS_PER_MS: u64 = 1_000_000;

pub(crate) struct Core {
    /// The state word: read by every admission, written only by transitions and probes.
    state: Padded<AtomicU64>,
    pub(super) window: Window,
    /// Rejections since the breaker last opened.
    not_permitted: Padded<AtomicU64>,
    pub(super) name: Box<str>,
    pub(super) config: Config,
    /// `minimum_calls`, capped at a count window's size.
    pub(super) minimum_calls: u64,
    pub(super) time: Timeline,
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
    pub(super) events: Events,
    /// Wakes services waiting in backpressure mode on every transition and returned permit.
    pub(super) notify: Notify,
    jitter_seed: u64,
}

/// Why a call was not admitted, and when it is worth asking again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejection {
    pub(crate) state: CircuitState,
    /// Open: until the wait ends.
    pub(crate) retry_after: Option<Duration>,
    /// When a waiter should look again even if nothing is notified (the open wait's end, or a
    /// half-open state's deadline).
    pub(crate) recheck_in: Option<Duration>,
}

/// What an admitted call owes the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Record into the window of this epoch; may open the breaker.
    Closed(Epoch),
    /// Record into the window of this epoch; never opens the breaker.
    MetricsOnly(Epoch),
    /// A half-open probe: record into the probe counters or give the permit back.
    Probe(Epoch),
    /// Disabled: nothing to record.
    Passthrough,
}

impl Core {
    pub(crate) fn new(name: String, config: Config, clock: Option<Box<dyn Clock>>) -> Self {
        let window = match config.window {
            WindowKind::Count(size) => Window::Count(CountWindow::new(size)),
            WindowKind::Time(seconds) => Window::Time(TimeWindow::new(seconds)),
        };
        let minimum_calls = match window.minimum_cap() {
            Some(size) => u64::from(config.minimum_calls).min(size),
            None => u64::from(config.minimum_calls),
        };
        Self {
            state: Padded(AtomicU64::new(Word::INITIAL.0)),
            window,
            not_permitted: Padded(AtomicU64::new(0)),
            jitter_seed: seed(&name),
            name: name.into_boxed_str(),
            config,
            minimum_calls,
            time: Timeline::new(clock),
            open_attempts: AtomicU32::new(0),
            half_open_since: AtomicU64::new(0),
            last_transition: AtomicU64::new(0),
            frozen: Mutex::new(Frozen::default()),
            reported_epoch: AtomicU32::new(0),
            events: Events::default(),
            notify: Notify::new(),
        }
    }

    pub(super) fn load(&self) -> Word {
        Word(self.state.load(Ordering::Acquire))
    }

    pub(super) fn swap(&self, current: Word, next: Word) -> Result<(), Word> {
        self.state
            .compare_exchange(current.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(Word)
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.load().state()
    }

    pub(crate) fn name(&'static self) -> &'static str {
        &self.name
    }

    /// Whether calls must be timed from their start: for slow-call detection, or for a
    /// per-call subscriber.
    pub(crate) fn times_calls(&self) -> bool {
        self.config.slow_calls.is_some() || self.events.per_call()
    }

    pub(crate) fn now(&self) -> u64 {
        self.time.now()
    }

    /// Decides whether a call may go now. Moves an open breaker whose wait is over to half-open
    /// (taking the first probe permit in the same step), and a half-open breaker whose probes
    /// outlived `max_wait_in_half_open` back to open.
    pub(crate) fn try_acquire(&'static self) -> Result<Admission, Rejection> {
        let mut word = self.load();
        loop {
            let epoch = word.epoch();
            match word.state() {
                CircuitState::Closed => return Ok(Admission::Closed(epoch)),
                CircuitState::MetricsOnly => return Ok(Admission::MetricsOnly(epoch)),
                CircuitState::Disabled => return Ok(Admission::Passthrough),
                CircuitState::ForcedOpen => {
                    return Err(Rejection {
                        state: CircuitState::ForcedOpen,
                        retry_after: None,
                        recheck_in: None,
                    });
                }
                CircuitState::Open => {
                    let now = self.now();
                    let until = word.open_until_ms().saturating_mul(NANOS_PER_MS);
                    if now < until {
                        let wait = Some(Duration::from_nanos(until - now));
                        return Err(Rejection {
                            state: CircuitState::Open,
                            retry_after: wait,
                            recheck_in: wait,
                        });
                    }
                    let first = Probes {
                        taken: 1,
                        ..Probes::default()
                    };
                    let next = Word::half_open(epoch.next(), first);
                    match self.swap(word, next) {
                        Ok(()) => {
                            self.entered(word, next, TransitionCause::WaitElapsed, now, None);
                            return Ok(Admission::Probe(next.epoch()));
                        }
                        Err(actual) => word = actual,
                    }
                }
                CircuitState::HalfOpen => {
                    let probes = word.probes();
                    if probes.taken < self.config.permitted_calls_in_half_open {
                        let next = word.with_probes(Probes {
                            taken: probes.taken + 1,
                            ..probes
                        });
                        match self.swap(word, next) {
                            Ok(()) => return Ok(Admission::Probe(epoch)),
                            Err(actual) => word = actual,
                        }
                        continue;
                    }
                    let Some(max_wait) = self.config.max_wait_in_half_open else {
                        return Err(Rejection {
                            state: CircuitState::HalfOpen,
                            retry_after: None,
                            recheck_in: None,
                        });
                    };
                    let now = self.now();
                    let deadline = self.half_open_deadline(word, max_wait, now);
                    if now < deadline {
                        return Err(Rejection {
                            state: CircuitState::HalfOpen,
                            retry_after: None,
                            recheck_in: Some(Duration::from_nanos(deadline - now)),
                        });
                    }
                    let next = self.open_word(word, now, None);
                    if self.swap(word, next).is_ok() {
                        let totals = probe_totals(probes);
                        self.entered(
                            word,
                            next,
                            TransitionCause::HalfOpenTimedOut,
                            now,
                            Some(totals),
                        );
                    }
                    // Either way, look again: the breaker is now open (or changed meanwhile).
                    word = self.load();
                }
            }
        }
    }

    /// Counts a rejected call.
    pub(crate) fn rejected(&'static self, rejection: &Rejection) {
        self.not_permitted.fetch_add(1, Ordering::Relaxed);
        self.emit_per_call(EventKind::CallNotPermitted {
            state: rejection.state,
        });
    }

    /// Records an admitted call's outcome. `start` is when it began, if it was timed.
    pub(crate) fn record(
        &'static self,
        admission: Admission,
        outcome: Outcome,
        start: Option<u64>,
    ) {
        let (epoch, probe) = match admission {
            Admission::Closed(epoch) | Admission::MetricsOnly(epoch) => (epoch, false),
            Admission::Probe(epoch) => (epoch, true),
            Admission::Passthrough => return,
        };
        let end = (start.is_some() || self.window.needs_clock()).then(|| self.now());
        let elapsed = start.zip(end).map(|(start, end)| end.saturating_sub(start));
        let slow = match (self.config.slow_calls, elapsed) {
            (Some(slow), Some(elapsed)) => u128::from(elapsed) > slow.threshold.as_nanos(),
            _ => false,
        };
        let elapsed = elapsed.map(Duration::from_nanos);
        if outcome == Outcome::Ignored {
            self.emit_per_call(EventKind::Ignored { elapsed });
            if probe {
                self.give_back(epoch);
            }
            return;
        }
        let failed = outcome.is_failure();
        self.emit_per_call(if failed {
            EventKind::Failure { elapsed, slow }
        } else {
            EventKind::Success { elapsed, slow }
        });
        let retry_after = match outcome {
            Outcome::FailureFor(wait) => Some(wait.min(MAX_WAIT)),
            _ => None,
        };
        if probe {
            self.record_probe(epoch, failed, slow, retry_after);
            return;
        }
        let sample = Sample { failed, slow };
        let Some(recorded) = self
            .window
            .record(epoch.window_tag(), sample, end.unwrap_or(0))
        else {
            return;
        };
        let metrics_only = admission == Admission::MetricsOnly(epoch);
        if let (Some(wait), false) = (retry_after, metrics_only) {
            let from = Word::plain(CircuitState::Closed, epoch);
            let now = self.now();
            let totals = self.window.totals(epoch.window_tag(), now);
            let next = self.open_word(from, now, Some(wait));
            if self.swap(from, next).is_ok() {
                self.entered(
                    from,
                    next,
                    TransitionCause::RetryAfter(wait),
                    now,
                    Some(totals),
                );
            }
            return;
        }
        // A success can raise no rate, except by bringing the window to its minimum; a time
        // window may also lose old calls at any record.
        if !(failed
            || slow
            || self.window.needs_clock()
            || self.window.reached(&recorded, self.minimum_calls))
        {
            return;
        }
        let Some(totals) = self.window.totals_after(&recorded) else {
            return;
        };
        let Some(cause) = self.exceeded(totals, self.minimum_calls) else {
            return;
        };
        if metrics_only {
            self.report_once(epoch, cause);
            return;
        }
        let from = Word::plain(CircuitState::Closed, epoch);
        let now = end.unwrap_or_else(|| self.now());
        let next = self.open_word(from, now, None);
        if self.swap(from, next).is_ok() {
            self.entered(from, next, cause, now, Some(totals));
        }
    }

    fn record_probe(
        &'static self,
        epoch: Epoch,
        failed: bool,
        slow: bool,
        retry_after: Option<Duration>,
    ) {
        let permits = self.config.permitted_calls_in_half_open;
        let mut now = None;
        let mut word = self.load();
        loop {
            if word.state() != CircuitState::HalfOpen || word.epoch() != epoch {
                return;
            }
            let p = word.probes();
            let probes = Probes {
                recorded: p.recorded + 1,
                failed: p.failed + u32::from(failed),
                slow: p.slow + u32::from(slow),
                ..p
            };
            let totals = probe_totals(probes);
            let cause = match retry_after {
                Some(wait) => Some(TransitionCause::RetryAfter(wait)),
                None if probes.recorded >= permits => Some(
                    self.exceeded(totals, u64::from(permits))
                        .unwrap_or(TransitionCause::ProbesSucceeded),
                ),
                None => None,
            };
            let (next, at) = match cause {
                None => (word.with_probes(probes), 0),
                Some(TransitionCause::ProbesSucceeded) => {
                    let at = *now.get_or_insert_with(|| self.now());
                    (Word::plain(CircuitState::Closed, epoch.next()), at)
                }
                Some(_) => {
                    let at = *now.get_or_insert_with(|| self.now());
                    (self.open_word(word, at, retry_after), at)
                }
            };
            match self.swap(word, next) {
                Ok(()) => {
                    if let Some(cause) = cause {
                        self.entered(word, next, cause, at, Some(totals));
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Returns a half-open permit whose call was cancelled or ignored.
    pub(crate) fn give_back(&self, epoch: Epoch) {
        let mut word = self.load();
        loop {
            if word.state() != CircuitState::HalfOpen || word.epoch() != epoch {
                return;
            }
            let p = word.probes();
            let next = word.with_probes(Probes {
                taken: p.taken.saturating_sub(1),
                ..p
            });
            match self.swap(word, next) {
                Ok(()) => {
                    self.notify.notify_waiters();
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Whether a window breaks a threshold (inclusive), once it holds `minimum` calls.
    pub(super) fn exceeded(&self, totals: Totals, minimum: u64) -> Option<TransitionCause> {
        if totals.calls == 0 || totals.calls < minimum {
            return None;
        }
        let calls = totals.calls as f64;
        let failure_rate = totals.failed as f64 * 100.0 / calls;
        if failure_rate >= self.config.failure_rate_threshold {
            return Some(TransitionCause::FailureRate(failure_rate));
        }
        let slow = self.config.slow_calls?;
        let slow_rate = totals.slow as f64 * 100.0 / calls;
        (slow_rate >= slow.rate_threshold).then_some(TransitionCause::SlowCallRate(slow_rate))
    }

    /// Metrics only: tells subscribers once per epoch that the breaker would have opened.
    fn report_once(&'static self, epoch: Epoch, cause: TransitionCause) {
        let mark = epoch.get() + 1;
        if self.reported_epoch.swap(mark, Ordering::AcqRel) != mark {
            self.emit_per_call(EventKind::ThresholdExceeded { cause });
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

    fn half_open_deadline(&self, word: Word, max_wait: Duration, now: u64) -> u64 {
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
        &'static self,
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
                self.window.reset(tag, now);
                self.not_permitted.store(0, Ordering::Relaxed);
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
                self.window.reset(tag, now);
            }
            CircuitState::ForcedOpen => {
                self.window.reset(tag, now);
                self.not_permitted.store(0, Ordering::Relaxed);
            }
            CircuitState::Disabled | CircuitState::MetricsOnly => self.window.reset(tag, now),
        }
        if from.state() != to.state() {
            self.log_transition(from.state(), to, cause, now);
            self.events.emit(
                self.name(),
                || self.time.instant(now),
                EventKind::StateTransition {
                    from: from.state(),
                    to: to.state(),
                    cause,
                },
                false,
            );
        }
        self.notify.notify_waiters();
    }

    fn log_transition(&self, from: CircuitState, to: Word, cause: TransitionCause, now: u64) {
        let name = &*self.name;
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

    /// Automatic transition: moves this open state to half-open when its wait ends.
    fn schedule_half_open(&'static self, open: Word) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                breaker = &*self.name,
                "no tokio runtime: the move to half-open stays lazy"
            );
            return;
        };
        runtime.spawn(async move {
            loop {
                if self.load() != open {
                    return;
                }
                let now = self.now();
                let until = open.open_until_ms().saturating_mul(NANOS_PER_MS);
                if now >= until {
                    let next = Word::half_open(open.epoch().next(), Probes::default());
                    if self.swap(open, next).is_ok() {
                        self.entered(open, next, TransitionCause::WaitElapsed, now, None);
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_nanos(until - now)).await;
            }
        });
    }

    pub(super) fn emit_per_call(&'static self, kind: EventKind) {
        if self.events.per_call() {
            self.events
                .emit(self.name(), || self.time.instant(self.now()), kind, true);
        }
    }

    pub(super) fn not_permitted(&self) -> u64 {
        self.not_permitted.load(Ordering::Relaxed)
    }

    pub(super) fn clear_not_permitted(&self) {
        self.not_permitted.store(0, Ordering::Relaxed);
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

/// The window an open breaker shows.
#[derive(Debug, Clone, Copy)]
struct Frozen {
    epoch: Epoch,
    totals: Totals,
    minimum: u64,
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

pub(super) fn probe_totals(probes: Probes) -> Totals {
    Totals {
        calls: u64::from(probes.recorded),
        failed: u64::from(probes.failed),
        slow: u64::from(probes.slow),
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A per-breaker seed: the name's FNV-1a hash mixed with the breaker's creation order.
fn seed(name: &str) -> u64 {
    static CREATED: AtomicU64 = AtomicU64::new(0);
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    splitmix64(hash ^ CREATED.fetch_add(1, Ordering::Relaxed))
}
