//! A generation of a breaker: admission, recording and transitions. Nothing here knows of
//! tower.
//!
//! A `Core` is one generation: a configuration, the counters of its transitions, and a
//! [`Slot`] (its state word and window; see [`slot`](super::slot) for why those live apart).
//! It is owned: handles, layers and services hold it in an `Arc` and it is freed, its slot
//! given back, when the last of them goes.
//!
//! A reconfiguration builds a new generation that shares the old one's [`Shared`] part: name,
//! subscribers and clock. The old generation is *retired*: its state word becomes a marked
//! forced-open word in a new epoch, so permits it handed out are stale, and whoever finds it
//! retired follows its `successor` (held strongly: generations only point forward, so nothing
//! forms a cycle, and an old generation is freed once no service still holds it).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::Notify;

use super::config::Config;
use super::events::{Events, TransitionCause};
use super::slot::Slot;
use super::state::{CircuitState, Epoch, MAX_UNTIL_MS, Probes, Word};
use super::window::{Padded, Totals};
use crate::clock::{Clock, Timeline};
use crate::sync::{AtomicU32, AtomicU64, Mutex};

pub(crate) const NANOS_PER_MS: u64 = 1_000_000;

/// `try_acquire_in`'s deadline when the call is admitted.
const ADMITTED: u64 = u64::MAX - 1;
/// A rejection's deadline when the generation is retired: decide again on its successor.
const RETIRED: u64 = u64::MAX - 2;
/// `try_acquire_in`'s answer when the call would be a half-open probe and was asked not to
/// take one yet.
const PROBE: u64 = u64::MAX - 3;

/// What every generation of a breaker shares: its identity, name, subscribers and clock.
pub(crate) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) events: Events,
    pub(super) time: Timeline,
    /// What a tonic client sees of a rejected call: made once, shared by every rejection.
    #[cfg(feature = "tonic")]
    pub(super) unavailable: OnceLock<tonic::Status>,
    #[cfg(feature = "metrics")]
    pub(super) metrics: super::observe::Handles,
    /// The key this breaker serves, for a breaker of a keyed layer (it changes when the layer
    /// recycles the breaker for another key); read by logs only.
    pub(super) key: Mutex<Option<Arc<str>>>,
}

impl Shared {
    pub(crate) fn new(name: String, clock: Option<Arc<dyn Clock>>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            metrics: super::observe::Handles::new(&name),
            name: name.into(),
            events: Events::default(),
            time: Timeline::new(clock),
            #[cfg(feature = "tonic")]
            unavailable: OnceLock::new(),
            key: Mutex::new(None),
        }
    }

    /// The breaker's name in logs: its name, and its key if it has one (`name[key]`).
    pub(super) fn label(&self) -> std::borrow::Cow<'_, str> {
        match &*self
            .key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(key) => format!("{}[{key}]", self.name).into(),
            None => (*self.name).into(),
        }
    }
}

pub(crate) struct Core {
    /// The state word and the window: what calls in flight reach without a reference count.
    pub(super) slot: &'static Slot,
    /// Rejections since the breaker last opened: `epoch of that opening << 43 | count`.
    pub(super) not_permitted: Padded<AtomicU64>,
    pub(super) shared: Arc<Shared>,
    /// This generation, weakly: for the timer of the automatic transition.
    pub(super) this: Weak<Core>,
    /// The generation that replaced this one, once it is retired.
    pub(super) successor: OnceLock<Arc<Core>>,
    pub(super) config: Config,
    /// `minimum_calls`, capped at a count window's size.
    pub(super) minimum_calls: u64,
    /// Consecutive openings since the breaker last closed, for the backoff.
    pub(super) open_attempts: AtomicU32,
    /// When the current half-open state began: `epoch << 43 | milliseconds`.
    pub(super) half_open_since: AtomicU64,
    /// Nanoseconds since the breaker was built, of the last transition.
    pub(super) last_transition: AtomicU64,
    /// The window shown while open: the one that opened the breaker.
    pub(super) frozen: Mutex<Frozen>,
    /// The last metrics-only epoch whose exceeded thresholds were reported, plus one.
    pub(super) reported_epoch: AtomicU32,
    /// Wakes services waiting in backpressure mode on every transition and returned permit.
    pub(super) notify: Arc<Notify>,
    /// The epoch (plus one) of the open state whose automatic-transition timer is pending; 0
    /// when none is.
    pub(super) open_timer: AtomicU32,
    pub(super) jitter_seed: u64,
}

/// Why a call was not admitted, and when it may end by itself: the state and epoch that
/// rejected it, and the deadline in whole milliseconds since the breaker was built (rounded
/// up), packed in one word as the state word packs them. One word is stored and loaded whole:
/// a wider value assembled from narrower stores and read back at once stalls the load (the
/// store cannot be forwarded), and that showed in the cost of every rejection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejection(Word);

/// A rejection's deadline payload when only a transition can end it.
const NO_DEADLINE_MS: u64 = MAX_UNTIL_MS;
/// A rejection's deadline payload when the generation is retired.
const RETIRED_MS: u64 = MAX_UNTIL_MS - 1;

impl Rejection {
    /// `deadline_ms` as `try_acquire_in` returns it: milliseconds, `u64::MAX` or `RETIRED`.
    #[inline]
    fn new(decided: Word, deadline_ms: u64) -> Self {
        let payload = match deadline_ms {
            u64::MAX => NO_DEADLINE_MS,
            RETIRED => RETIRED_MS,
            ms => ms.min(MAX_UNTIL_MS - 2),
        };
        Rejection(Word::with_payload(
            decided.state(),
            decided.epoch(),
            payload,
        ))
    }

    /// The state that rejected the call.
    #[inline]
    pub(crate) const fn state(self) -> CircuitState {
        self.0.state()
    }

    /// The epoch of the state that rejected the call.
    #[inline]
    pub(super) const fn epoch(self) -> Epoch {
        self.0.epoch()
    }

    /// When (nanoseconds since the breaker was built) the rejection may end by itself: the end
    /// of the open wait, or of a half-open state's maximum wait; `u64::MAX` when only a
    /// transition can end it.
    #[inline]
    pub(crate) const fn deadline(self) -> u64 {
        match self.0.payload() {
            NO_DEADLINE_MS | RETIRED_MS => u64::MAX,
            ms => ms * NANOS_PER_MS,
        }
    }

    /// Whether the generation that rejected the call was retired by a reconfiguration: the
    /// call is to be decided again by its successor.
    #[inline]
    pub(crate) const fn retired(self) -> bool {
        self.0.payload() == RETIRED_MS
    }
}

/// What an admitted call owes the breaker, and the epoch it was admitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Record into the window of this epoch; may open the breaker.
    Closed(Epoch),
    /// Record into the window of this epoch; never opens the breaker.
    MetricsOnly(Epoch),
    /// A half-open probe: record into the probe counters or give the permit back.
    Probe(Epoch),
    /// Disabled: nothing to record.
    Passthrough(Epoch),
    /// Already recorded (or given back).
    Spent,
}

impl Admission {
    pub(crate) const fn epoch(self) -> Option<Epoch> {
        match self {
            Admission::Closed(epoch)
            | Admission::MetricsOnly(epoch)
            | Admission::Probe(epoch)
            | Admission::Passthrough(epoch) => Some(epoch),
            Admission::Spent => None,
        }
    }
}

impl Core {
    /// A generation of the breaker `shared`, starting in `state` (closed, or a manual state
    /// carried over a reconfiguration).
    pub(crate) fn new(shared: Arc<Shared>, config: Config, state: CircuitState) -> Arc<Self> {
        Arc::new_cyclic(|this| {
            let now = shared.time.now();
            let slot = Slot::take(config.window, this.clone(), state, now);
            let minimum_calls = match slot.window.minimum_cap() {
                Some(size) => u64::from(config.minimum_calls).min(size),
                None => u64::from(config.minimum_calls),
            };
            Self {
                slot,
                not_permitted: Padded(AtomicU64::new(0)),
                jitter_seed: seed(&shared.name),
                shared,
                this: this.clone(),
                successor: OnceLock::new(),
                config,
                minimum_calls,
                open_attempts: AtomicU32::new(0),
                half_open_since: AtomicU64::new(0),
                last_transition: AtomicU64::new(now),
                frozen: Mutex::new(Frozen::default()),
                reported_epoch: AtomicU32::new(0),
                notify: Arc::new(Notify::new()),
                open_timer: AtomicU32::new(0),
            }
        })
    }

    #[inline]
    pub(super) fn load(&self) -> Word {
        self.slot.load()
    }

    #[inline]
    pub(super) fn swap(&self, current: Word, next: Word) -> Result<(), Word> {
        self.slot.swap(current, next)
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.load().state()
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// The breaker's subscribers.
    #[inline]
    pub(crate) fn events(&self) -> &Events {
        &self.shared.events
    }

    /// The generation that is current now: this one, or the last of its successors.
    pub(crate) fn latest(self: &Arc<Self>) -> Arc<Core> {
        let mut core = self;
        while let Some(next) = core.successor.get() {
            core = next;
        }
        Arc::clone(core)
    }

    /// Whether calls must be timed from their start: for slow-call detection, or for a
    /// per-call subscriber.
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        // With metrics, every call is timed for the duration histogram.
        cfg!(feature = "metrics")
            || self.config.slow_calls.is_some()
            || self.shared.events.per_call()
    }

    /// Whether a call admitted now as `admission` may hold no reference to this generation:
    /// closed, untimed, and its window clean (see [`slot`](super::slot)).
    #[inline]
    pub(crate) fn clean_path(&self, admission: Admission) -> bool {
        match admission {
            Admission::Closed(epoch) => !self.times_calls() && self.slot.success_is_noop(epoch),
            _ => false,
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.shared.time.now()
    }

    /// Whether `epoch` is the breaker's current epoch: no transition happened since.
    #[inline]
    pub(crate) fn is_current(&self, epoch: Epoch) -> bool {
        self.load().epoch() == epoch
    }

    /// Decides whether a call may go now. Moves an open breaker whose wait is over to half-open
    /// (taking the first probe permit in the same step), and a half-open breaker whose probes
    /// outlived `max_wait_in_half_open` back to open.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Admission, Rejection> {
        match self.next(true) {
            Next::Admit(admission) => Ok(admission),
            Next::Reject(rejection) => Err(rejection),
            // Only asked for when no probe may be taken.
            Next::Probe => Err(Rejection::new(self.load(), u64::MAX)),
        }
    }

    /// What a call attempt now would get. With `take_probe` false, a call that would be a
    /// half-open probe takes nothing and gets [`Next::Probe`]: the caller makes sure it can use
    /// a probe (its inner service is ready) before taking one with [`try_acquire`](Self::try_acquire).
    #[inline]
    pub(crate) fn next(&self, take_probe: bool) -> Next {
        let word = self.load();
        if word.state() == CircuitState::Closed {
            return Next::Admit(Admission::Closed(word.epoch()));
        }
        // Decided out of line and passed back as two words, which travel in registers (an
        // enum this size would go through memory, and stall the load that reads it back).
        let (decided, deadline) = self.try_acquire_in(word, take_probe);
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
    fn try_acquire_in(&self, mut word: Word, take_probe: bool) -> (Word, u64) {
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
                    let now = self.now();
                    if now < until_ms.saturating_mul(NANOS_PER_MS) {
                        return (Word::plain(CircuitState::Open, epoch), until_ms);
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
                            self.entered(word, next, TransitionCause::WaitElapsed, now, None);
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
                    let now = self.now();
                    let deadline = self.half_open_deadline(word, max_wait, now);
                    if now < deadline {
                        let deadline_ms = deadline.div_ceil(NANOS_PER_MS);
                        return (Word::plain(CircuitState::HalfOpen, epoch), deadline_ms);
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
}

impl Drop for Core {
    fn drop(&mut self) {
        // A retired generation moved its gauge to its successor's state when it was retired.
        #[cfg(feature = "metrics")]
        {
            let word = self.load();
            if !word.is_retired() {
                self.shared.metrics.leave(word.state());
            }
        }
        self.slot.give_back();
        // An automatic transition's timer sleeping on this generation ends now.
        self.notify.notify_waiters();
    }
}

/// What a call attempt gets: see [`Core::next`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Next {
    /// Admitted.
    Admit(Admission),
    /// A half-open probe is free; none was taken.
    Probe,
    /// Rejected.
    Reject(Rejection),
}

/// The window an open breaker shows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frozen {
    pub(super) epoch: Epoch,
    pub(super) totals: Totals,
    pub(super) minimum: u64,
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

pub(super) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A per-breaker seed: the name's FNV-1a hash mixed with the breaker's creation order.
fn seed(name: &str) -> u64 {
    // A process-wide count: always the standard library's atomic, even on loom.
    use std::sync::atomic::AtomicU64 as ProcessWide;
    static CREATED: ProcessWide = ProcessWide::new(0);
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    splitmix64(hash ^ CREATED.fetch_add(1, Ordering::Relaxed))
}
