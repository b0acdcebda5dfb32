//! A generation of a breaker: its [`Policy`], and what the policy's decisions imply beyond
//! it (waking waiters, the automatic transition's timer, logs, events, metrics).
//!
//! A [`Core`] is owned: handles, layers and services hold it in an `Arc`, and it is freed, its
//! slot given back, when the last of them goes. A call admitted on the clean path holds no
//! `Arc` (see [`slot`](super::policy::slot)): it reaches the generation through its slot.
//!
//! A reconfiguration builds a new generation that shares the old one's [`Shared`] part: name,
//! subscribers and clock. The old generation is *retired*: its state word becomes a marked
//! forced-open word in a new epoch, so permits it handed out are stale, and whoever finds it
//! retired follows its `successor` (held strongly: generations only point forward, so nothing
//! forms a cycle, and an old generation is freed once no service still holds it).

use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::observe::events::{EventKind, Events};
use super::observe::log;
use super::policy::slot::{Owner, Slot};
use super::policy::snapshot::MetricsSnapshot;
use super::policy::state::CircuitState;
use super::policy::{
    Admission, Config, Counted, Effects, Next, Policy, Rejection, Transition, TransitionCause, seed,
};
use super::timer;
use crate::classify::Outcome;
use crate::clock::{Clock, Timeline};
use crate::sync::Mutex;

/// What every generation of a breaker shares: its identity, name, subscribers and clock.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) events: Events,
    pub(crate) time: Timeline,
    /// What a tonic client sees of a rejected call: made once, shared by every rejection.
    #[cfg(feature = "tonic")]
    pub(crate) unavailable: OnceLock<tonic::Status>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: super::observe::metrics::Handles,
    /// The key this breaker serves, for a breaker of a keyed layer (it changes when the layer
    /// recycles the breaker for another key); read by logs only.
    pub(crate) key: Mutex<Option<Arc<str>>>,
}

impl Shared {
    pub(crate) fn new(name: String, clock: Option<Arc<dyn Clock>>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            metrics: super::observe::metrics::Handles::new(&name),
            name: name.into(),
            events: Events::default(),
            time: Timeline::new(clock),
            #[cfg(feature = "tonic")]
            unavailable: OnceLock::new(),
            key: Mutex::new(None),
        }
    }

    /// The breaker's name in logs: its name, and its key if it has one (`name[key]`).
    pub(crate) fn label(&self) -> std::borrow::Cow<'_, str> {
        match &*self.key.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(key) => format!("{}[{key}]", self.name).into(),
            None => (*self.name).into(),
        }
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.time.instant(nanos)
    }
}

/// One generation of a breaker.
pub(crate) struct Core {
    pub(crate) policy: Policy,
    pub(crate) shared: Arc<Shared>,
    /// This generation, weakly: for the timer of the automatic transition.
    this: Weak<Core>,
    /// The generation that replaced this one, once it is retired.
    successor: OnceLock<Arc<Core>>,
    /// Wakes services waiting in backpressure mode on every transition and returned permit.
    pub(crate) notify: Arc<Notify>,
    /// Whether every call is timed whoever listens: slow-call detection, or metrics.
    timed: bool,
}

impl Core {
    /// A generation of the breaker `shared`, starting in `state` (closed, or a manual state
    /// carried over a reconfiguration).
    pub(crate) fn new(shared: Arc<Shared>, config: Config, state: CircuitState) -> Arc<Self> {
        Arc::new_cyclic(|this: &Weak<Core>| {
            let now = shared.time.now();
            let owner: Weak<dyn Owner> = this.clone();
            let config_timed = config.slow_calls.is_some();
            let slot = Slot::take(config.window, owner, state, now);
            Self {
                policy: Policy::new(slot, config, seed(&shared.name), now),
                shared,
                this: this.clone(),
                successor: OnceLock::new(),
                notify: Arc::new(Notify::new()),
                // With metrics, every call is timed for the duration histogram.
                timed: cfg!(feature = "metrics") || config_timed,
            }
        })
    }

    #[inline]
    pub(crate) fn slot(&self) -> &'static Slot {
        self.policy.slot
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.policy.state()
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.shared.time.now()
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
        self.timed || self.shared.events.per_call()
    }

    /// Whether a call admitted now as `admission` may hold no reference to this generation.
    #[inline]
    pub(crate) fn clean_path(&self, admission: Admission) -> bool {
        !self.times_calls() && self.policy.clean_path(admission)
    }

    /// What a call attempt now gets; see [`Policy::next`].
    #[inline]
    pub(crate) fn next(&self, take_probe: bool) -> Next {
        self.policy.next(take_probe, self)
    }

    /// Decides whether a call may go now, taking a probe permit if it would be a probe.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Admission, Rejection> {
        match self.next(true) {
            Next::Admit(admission) => Ok(admission),
            Next::Reject(rejection) => Err(rejection),
            // Only answered when no probe may be taken.
            Next::Probe => Err(Rejection::new(self.policy.load(), u64::MAX)),
        }
    }

    /// Records an admitted call's outcome. `start` is when it began, if it was timed.
    #[inline]
    pub(crate) fn record(&self, admission: Admission, outcome: Outcome, start: Option<u64>) {
        self.policy.record(admission, outcome, start, self);
    }

    /// Gives back a half-open permit whose call was cancelled.
    pub(crate) fn give_back(&self, epoch: super::policy::state::Epoch) {
        if self.policy.give_back(epoch) {
            self.notify.notify_waiters();
        }
    }

    /// Counts and reports a rejected call.
    pub(crate) fn rejected(&self, rejection: &Rejection) {
        self.policy.count_rejection(rejection);
        #[cfg(feature = "metrics")]
        self.shared.metrics.rejected();
        self.emit_per_call(EventKind::CallNotPermitted {
            state: rejection.state(),
        });
    }

    /// Moves the breaker to `target` by hand (its successor, if this one is retired).
    pub(crate) fn transition_to(&self, target: CircuitState) {
        if !self.policy.transition_to(target, self) {
            // Retired: the breaker is its successor now (set before it was retired).
            if let Some(next) = self.successor.get() {
                next.transition_to(target);
            }
        }
    }

    /// Closes the breaker and clears everything (its successor's, if this one is retired).
    pub(crate) fn reset(&self) {
        let now = self.now();
        match self.policy.reset(self) {
            Some(from) => {
                log::reset(&self.shared.name, from);
                self.shared.events.emit(
                    &self.shared.name,
                    || self.shared.instant(now),
                    EventKind::Reset,
                    false,
                );
            }
            None => {
                if let Some(next) = self.successor.get() {
                    next.reset();
                }
            }
        }
    }

    /// Makes the breaker new for another key of a keyed layer; quiet.
    pub(crate) fn recycle(&self) {
        let _from = self.policy.recycle(self.now());
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        self.shared.metrics.moved(_from, CircuitState::Closed);
    }

    /// The state and the window's numbers, now.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        self.policy
            .snapshot(self.now(), |nanos| self.shared.instant(nanos))
    }

    /// How long the breaker has been in its state, by its clock.
    pub(crate) fn time_in_state(&self) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(self.policy.last_transition()))
    }

    /// Replaces this generation, the breaker's latest, with a generation of `config`; the
    /// caller holds the breaker's lock on its latest generation, so reconfigurations of one
    /// breaker never race. Returns the new generation.
    pub(crate) fn reconfigure(self: &Arc<Self>, config: &Config) -> Arc<Core> {
        let state = carried(self.state());
        let successor = Core::new(Arc::clone(&self.shared), config.clone(), state);
        // Set before retiring: whoever finds this generation retired finds its successor.
        let _ = self.successor.set(Arc::clone(&successor));
        self.retire(&successor, state);
        successor
    }

    /// Retires this generation in favour of `successor` (which starts in `state`): permits it
    /// handed out become stale, services waiting on it wake up and move on.
    fn retire(&self, successor: &Core, state: CircuitState) {
        let from = self.policy.slot.retire();
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        self.shared.metrics.moved(from, state);
        let now = successor.now();
        successor.policy.restarted_at(now);
        log::reconfigured(&self.shared.name, from, state);
        let events = &self.shared.events;
        let at = || self.shared.instant(now);
        events.emit(&self.shared.name, at, EventKind::Reconfigured, false);
        if from != state {
            let kind = EventKind::StateTransition {
                from,
                to: state,
                cause: TransitionCause::Reconfigured,
            };
            events.emit(&self.shared.name, at, kind, false);
        }
        // An operator's transition made on this generation after `state` was read (and
        // before the successor was published, when transitions started going to it) is in
        // the word swapped out: the successor follows it, unless it has moved on since.
        let wanted = carried(from);
        if wanted != state && successor.state() == state {
            successor.transition_to(wanted);
        }
    }

    fn emit_per_call(&self, kind: EventKind) {
        if self.shared.events.per_call() {
            self.shared.events.emit(
                &self.shared.name,
                || self.shared.instant(self.now()),
                kind,
                true,
            );
        }
    }
}

impl Effects for Core {
    #[inline]
    fn now(&self) -> u64 {
        self.shared.time.now()
    }

    fn entered(&self, t: Transition) {
        if t.to.state() == CircuitState::Open && self.policy.config.automatic_transition {
            timer::schedule_half_open(self, &self.this, t.to);
        }
        // Waiters first: a subscriber's callback may panic.
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        self.shared.metrics.moved(t.from.state(), t.to.state());
        if t.from.state() != t.to.state() {
            log::transition(&self.shared.label(), t.from.state(), t.to, t.cause, t.at);
            let kind = EventKind::StateTransition {
                from: t.from.state(),
                to: t.to.state(),
                cause: t.cause,
            };
            self.shared
                .events
                .emit(&self.shared.name, || self.shared.instant(t.at), kind, false);
        }
    }

    #[inline]
    fn per_call(&self) -> bool {
        // With metrics, every call is counted.
        cfg!(feature = "metrics") || self.shared.events.per_call()
    }

    fn counted(&self, call: Counted) {
        self.emit_per_call(match call {
            Counted::Success { elapsed, slow } => EventKind::Success { elapsed, slow },
            Counted::Failure { elapsed, slow } => EventKind::Failure { elapsed, slow },
            Counted::Ignored { elapsed } => EventKind::Ignored { elapsed },
        });
    }

    fn ended(&self, _outcome: Outcome, _slow: bool, _elapsed: Option<Duration>) {
        #[cfg(feature = "metrics")]
        self.shared.metrics.call(_outcome, _slow, _elapsed);
    }

    fn threshold_exceeded(&self, cause: TransitionCause) {
        self.emit_per_call(EventKind::ThresholdExceeded { cause });
    }

    fn permit_returned(&self) {
        self.notify.notify_waiters();
    }
}

impl timer::Host for Core {
    fn policy(&self) -> &Policy {
        &self.policy
    }

    fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn follows_tokio(&self) -> bool {
        self.shared.time.is_tokio()
    }
}

impl Owner for Core {
    fn record(&self, admission: Admission, outcome: Outcome) {
        Core::record(self, admission, outcome, None);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A retired generation moved its gauge to its successor's state when it was retired.
        #[cfg(feature = "metrics")]
        {
            let word = self.policy.load();
            if !word.is_retired() {
                self.shared.metrics.leave(word.state());
            }
        }
        self.policy.slot.give_back();
        // An automatic transition's timer sleeping on this generation ends now.
        self.notify.notify_waiters();
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
