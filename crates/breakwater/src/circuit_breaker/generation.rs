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
//! retired asks the breaker's [`Latest`] cell for the generation that is current now: one
//! step, however many reconfigurations came since. A retired generation holds that cell; the
//! cell holds only the latest generation, which holds no cell: nothing forms a cycle, and a
//! generation between the one a service holds and the latest is freed once nobody holds it.

use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::observe::events::EventKind;
use super::observe::log;
use super::policy::slot::{Owner, Slot};
use super::policy::snapshot::MetricsSnapshot;
use super::policy::state::CircuitState;
use super::policy::{
    Admission, Config, Coordinated, Effects, Next, Policy, Rejection, Transition, TransitionCause,
    seed,
};
pub(crate) use super::shared::Shared;
use super::timer;
use crate::classify::Outcome;
use crate::sync::Mutex;

/// What a reconfiguration did: the new generation, the state the old one left and the one the
/// new one started in, and when (nanoseconds since the breaker was built).
pub(crate) struct Replaced {
    pub(crate) successor: Arc<Core>,
    pub(crate) from: CircuitState,
    pub(crate) to: CircuitState,
    pub(crate) at: u64,
}

/// The cell that holds a breaker's latest generation: its handles read it, and retired
/// generations point to it.
pub(crate) type Latest = Mutex<Arc<Core>>;

/// One generation of a breaker.
pub(crate) struct Core {
    pub(crate) policy: Policy,
    pub(crate) shared: Arc<Shared>,
    /// This generation, weakly: for the timer of the automatic transition.
    this: Weak<Core>,
    /// Once this generation is retired: the breaker's cell of its latest generation.
    retired_to: OnceLock<Arc<Latest>>,
    /// Wakes services waiting in backpressure mode on every transition and returned permit.
    pub(crate) notify: Arc<Notify>,
    /// Whether every call is timed whoever listens: slow-call detection, or the duration
    /// histogram.
    timed: bool,
    /// Whether every call is counted in the breaker's metrics.
    metered: bool,
    /// Whether this generation counts in the state gauges: a keyed layer's breaker waiting for
    /// a key does not; a retired generation handed its count to its successor.
    #[cfg(feature = "metrics")]
    gauged: std::sync::atomic::AtomicBool,
}

impl Core {
    /// A generation of the breaker `shared`, starting in `state` (closed, or a manual state
    /// carried over a reconfiguration).
    pub(crate) fn new(shared: Arc<Shared>, config: Config, state: CircuitState) -> Arc<Self> {
        Arc::new_cyclic(|this: &Weak<Core>| {
            let now = shared.id.time.now();
            let owner: Weak<dyn Owner> = this.clone();
            let timed = config.slow_calls.is_some() || shared.metering.durations;
            let metered = shared.metering.counts;
            let slot = Slot::take(config.window, owner, state, now);
            Self {
                policy: Policy::new(slot, config, seed(&shared.id.name), now),
                shared,
                this: this.clone(),
                retired_to: OnceLock::new(),
                notify: Arc::new(Notify::new()),
                timed,
                metered,
                #[cfg(feature = "metrics")]
                gauged: std::sync::atomic::AtomicBool::new(true),
            }
        })
    }

    #[inline]
    pub(crate) fn slot(&self) -> &'static Slot {
        self.policy.slot
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.id.name
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.policy.state()
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.shared.id.time.now()
    }

    /// The generation that is current now: this one, or, once it is retired, the breaker's
    /// latest (one step, whatever came in between).
    pub(crate) fn latest(self: &Arc<Self>) -> Arc<Core> {
        self.successor().unwrap_or_else(|| Arc::clone(self))
    }

    /// The breaker's latest generation if this one is retired.
    fn successor(&self) -> Option<Arc<Core>> {
        let latest = self.retired_to.get()?;
        Some(Arc::clone(
            &latest.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    /// Whether calls must be timed from their start: for slow-call detection, the duration
    /// histogram, or a per-call subscriber.
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.timed || self.shared.events.per_call()
    }

    /// Whether nothing needs to hear of each call: not timed, not counted in metrics, no
    /// per-call subscriber. Only then may a call take the clean path.
    #[inline]
    pub(crate) fn quiet(&self) -> bool {
        !(self.timed || self.metered || self.shared.events.per_call())
    }

    /// Whether a call admitted now as `admission` may hold no reference to this generation.
    #[inline]
    pub(crate) fn clean_path(&self, admission: Admission) -> bool {
        self.quiet() && self.policy.clean_path(admission)
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
        if let Some(metrics) = &self.shared.metrics {
            metrics.rejected();
        }
        self.emit_per_call(EventKind::CallNotPermitted {
            state: rejection.state(),
        });
    }

    /// A transition a coordinator asks for (see [`Coordinated`]), on this generation or, once
    /// it is retired, on the breaker's latest. `true` if the breaker moved.
    pub(crate) fn coordinate(&self, step: impl Fn(&Policy, &Self) -> Coordinated) -> bool {
        match step(&self.policy, self) {
            Coordinated::Moved => true,
            Coordinated::Declined => false,
            Coordinated::Retired => self.successor().is_some_and(|next| next.coordinate(step)),
        }
    }

    /// Moves the breaker to `target` by hand (its successor, if this one is retired).
    pub(crate) fn transition_to(&self, target: CircuitState) {
        if !self.policy.transition_to(target, self) {
            // Retired: the breaker is its latest generation now (set before it was retired).
            if let Some(next) = self.successor() {
                next.transition_to(target);
            }
        }
    }

    /// Closes the breaker and clears everything (its successor's, if this one is retired).
    pub(crate) fn reset(&self) {
        let now = self.now();
        match self.policy.reset(self) {
            Some(from) => {
                log::reset(&self.shared.id.name, from);
                self.shared.events.emit(
                    &self.shared.id.name,
                    || self.shared.instant(now),
                    EventKind::Reset,
                    false,
                );
            }
            None => {
                if let Some(next) = self.successor() {
                    next.reset();
                }
            }
        }
    }

    /// Counts this generation in the state gauges, or stops counting it (a keyed layer's
    /// breaker between two keys).
    #[cfg(feature = "metrics")]
    pub(crate) fn gauge(&self, counted: bool) {
        use std::sync::atomic::Ordering;
        let Some(metrics) = &self.shared.metrics else {
            return;
        };
        if self.gauged.swap(counted, Ordering::AcqRel) != counted {
            if counted {
                metrics.enter(self.state());
            } else {
                metrics.leave(self.state());
            }
        }
    }

    /// Makes the breaker new for another key of a keyed layer; quiet.
    pub(crate) fn recycle(&self) {
        // Calls of the old key, even on the clean path, find nobody from now on.
        self.policy.slot.renew_owner();
        let _from = self.policy.recycle(self.now());
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.shared.metrics {
            metrics.moved(_from, CircuitState::Closed);
        }
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

    /// Replaces this generation, the breaker's latest, with one of `config`, and returns it
    /// with the state this one left and the state the new one starts in. The caller holds
    /// `latest`, the breaker's cell, locked, so reconfigurations of one breaker never race, and
    /// puts the new generation in it before letting go: once a call or an operator finds this
    /// generation retired, the cell holds its successor. What subscribers are told comes
    /// after, with no lock held ([`announce_retired`](Self::announce_retired)).
    pub(crate) fn replace(&self, config: &Config, latest: &Arc<Latest>) -> Replaced {
        // Set before retiring: whoever finds this generation retired finds its successor.
        let _ = self.retired_to.set(Arc::clone(latest));
        // The state left is read in the step that retires: an operator's transition made on
        // this generation a moment before is in it, and is carried over.
        let from = self.policy.slot.retire();
        let state = carried(from);
        let successor = Core::new(Arc::clone(&self.shared), config.clone(), state);
        self.notify.notify_waiters();
        // The successor takes over this generation's count in the state gauges, before any
        // transition of its own can move it.
        #[cfg(feature = "metrics")]
        if self.gauged.swap(false, std::sync::atomic::Ordering::AcqRel) {
            if let Some(metrics) = &self.shared.metrics {
                metrics.moved(from, state);
            }
        } else {
            successor
                .gauged
                .store(false, std::sync::atomic::Ordering::Release);
        }
        Replaced {
            at: successor.policy.last_transition(),
            successor,
            from,
            to: state,
        }
    }

    /// Tells subscribers (and the log) that this generation was replaced. Called with no lock
    /// held: a callback may use the breaker's handle. Subscribers may hear of a transition
    /// made on the successor by another thread before they hear of this.
    pub(crate) fn announce_retired(&self, replaced: &Replaced) {
        let Replaced {
            from,
            to: state,
            at: now,
            ..
        } = *replaced;
        log::reconfigured(&self.shared.id.name, from, state);
        let events = &self.shared.events;
        let at = || self.shared.instant(now);
        events.emit(&self.shared.id.name, at, EventKind::Reconfigured, false);
        if from != state {
            let kind = EventKind::StateTransition {
                from,
                to: state,
                cause: TransitionCause::Reconfigured,
            };
            events.emit(&self.shared.id.name, at, kind, false);
        }
    }

    fn emit_per_call(&self, kind: EventKind) {
        if self.shared.events.per_call() {
            self.shared.events.emit(
                &self.shared.id.name,
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
        self.shared.id.time.now()
    }

    fn entered(&self, t: Transition) {
        if t.to.state() == CircuitState::Open && self.policy.config.automatic_transition {
            timer::schedule_half_open(self, &self.this, t.to);
        }
        // Waiters first: a subscriber's callback may panic.
        self.notify.notify_waiters();
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.shared.metrics {
            metrics.moved(t.from.state(), t.to.state());
        }
        if t.from.state() != t.to.state() {
            log::transition(&self.shared.label(), t.from.state(), t.to, t.cause, t.at);
            let kind = EventKind::StateTransition {
                from: t.from.state(),
                to: t.to.state(),
                cause: t.cause,
            };
            self.shared.events.emit(
                &self.shared.id.name,
                || self.shared.instant(t.at),
                kind,
                false,
            );
        }
    }

    #[inline]
    fn per_call(&self) -> bool {
        // With metrics, every call is counted.
        self.metered || self.shared.events.per_call()
    }

    fn counted(&self, outcome: Outcome, slow: bool, elapsed: Option<Duration>) {
        self.emit_per_call(match outcome {
            Outcome::Ignored => EventKind::Ignored { elapsed },
            o if o.is_failure() => EventKind::Failure { elapsed, slow },
            _ => EventKind::Success { elapsed, slow },
        });
    }

    fn ended(&self, _outcome: Outcome, _slow: bool, _elapsed: Option<Duration>) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.shared.metrics {
            // A call may be timed for slow-call detection or a subscriber: its duration goes to
            // the histogram only when the breaker asked for durations.
            let elapsed = _elapsed.filter(|_| self.shared.metering.durations);
            metrics.call(_outcome, _slow, elapsed);
        }
    }

    fn threshold_exceeded(&self, cause: TransitionCause) {
        self.emit_per_call(EventKind::ThresholdExceeded { cause });
    }

    fn permit_returned(&self) {
        self.notify.notify_waiters();
    }

    #[inline]
    fn held_until(&self) -> u64 {
        self.shared.hold.load(std::sync::atomic::Ordering::Acquire)
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
        &self.shared.id.name
    }

    fn follows_tokio(&self) -> bool {
        self.shared.id.time.is_tokio()
    }
}

impl Owner for Core {
    fn record(&self, admission: Admission, outcome: Outcome) {
        Core::record(self, admission, outcome, None);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A retired generation handed its count to its successor when it was retired.
        #[cfg(feature = "metrics")]
        if let (true, Some(metrics)) = (*self.gauged.get_mut(), &self.shared.metrics) {
            metrics.leave(self.policy.load().state());
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
