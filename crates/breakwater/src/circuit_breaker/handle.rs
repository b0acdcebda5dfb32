//! The handle: [`CircuitBreaker`], what a user holds, builds layers from and drives by hand.

use std::fmt;
use std::sync::{Arc, PoisonError, Weak};

use super::generation::{Core, Latest, Shared};
use super::observe::Metering;
use super::policy::Config;
use super::{
    AtEndOfStream, Builder, CallPermit, CircuitBreakerLayer, CircuitOpen, CircuitState,
    ConfigError, Event, MetricsSnapshot, SubscriptionId, WithError,
};
use crate::clock::Clock;
use crate::sync::Mutex;

/// A circuit breaker: a cheap handle, and every clone of it (and every layer made from it)
/// controls the same breaker.
///
/// Build one with [`CircuitBreaker::builder`]; wrap services with [`layer`](Self::layer) (HTTP)
/// or [`layer_with`](Self::layer_with) (any classifier); or drive it by hand with
/// [`try_acquire`](Self::try_acquire). See the [module docs](super) for the state machine.
///
/// Two handles are equal when they control the same breaker.
///
/// # Example
///
/// ```
/// use breakwater::{CircuitBreaker, CircuitState, classify::Outcome};
///
/// let breaker = CircuitBreaker::builder("search").count_window(2).minimum_calls(2).build()?;
/// let same = breaker.clone();
/// breaker.try_acquire()?.record(Outcome::Failure);
/// breaker.try_acquire()?.record(Outcome::Failure);
/// assert_eq!(same.state(), CircuitState::Open);
/// assert_eq!(same, breaker);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    root: Arc<Root>,
}

/// What every handle of one breaker shares: its identity and its latest generation.
struct Root {
    shared: Arc<Shared>,
    /// The latest generation. Services keep their own `Arc` of a generation and come here
    /// when it is retired (a retired generation holds this cell too).
    latest: Arc<Latest>,
}

impl CircuitBreaker {
    /// Starts building a breaker named `name` (used in errors, logs and events).
    pub fn builder(name: impl Into<String>) -> Builder {
        Builder::new(name.into())
    }

    pub(crate) fn from_config(
        name: String,
        config: Config,
        clock: Option<Arc<dyn Clock>>,
        metering: Metering,
    ) -> Self {
        let shared = Arc::new(Shared::new(name, clock, metering));
        let core = Core::new(Arc::clone(&shared), config, CircuitState::Closed);
        Self {
            root: Arc::new(Root {
                shared,
                latest: Arc::new(Mutex::new(core)),
            }),
        }
    }

    /// The breaker's current generation, for a service to hold.
    #[inline]
    pub(crate) fn core(&self) -> Arc<Core> {
        Arc::clone(&self.lock())
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Arc<Core>> {
        // One pointer: valid whatever a panicking thread left half done.
        self.root
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle that does not keep the breaker alive: see [`WeakCircuitBreaker`].
    pub fn downgrade(&self) -> WeakCircuitBreaker {
        WeakCircuitBreaker {
            root: Arc::downgrade(&self.root),
        }
    }

    /// What every generation of the breaker shares.
    pub(crate) fn shared(&self) -> &Shared {
        &self.root.shared
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.root.shared.id.name
    }

    /// The current state. An open breaker whose wait is over still reports
    /// [`Open`](CircuitState::Open) until a call attempt moves it to half-open (or its timer
    /// does, with [`automatic_transition_from_open_to_half_open`](Builder::automatic_transition_from_open_to_half_open)).
    pub fn state(&self) -> CircuitState {
        self.lock().state()
    }

    /// The state and the window's numbers, at this moment.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.lock().snapshot()
    }

    /// How long the breaker has been in its state (since its last transition, reset or
    /// reconfiguration), by its clock.
    pub(crate) fn time_in_state(&self) -> std::time::Duration {
        self.lock().time_in_state()
    }

    /// Replaces the breaker's configuration, keeping the breaker: every handle, layer and
    /// service made from it follows, and its subscribers stay subscribed.
    ///
    /// `configure` receives a builder with the defaults (the name is the breaker's) and returns
    /// the new configuration, which replaces the old one entirely. The window starts afresh:
    /// a breaker that was closed, open or half-open is closed with an empty window; one put
    /// by hand in [`Disabled`](CircuitState::Disabled),
    /// [`ForcedOpen`](CircuitState::ForcedOpen) or [`MetricsOnly`](CircuitState::MetricsOnly)
    /// stays there. Calls in flight are discarded when they end, as after a
    /// [`reset`](Self::reset). Subscribers get a [`Reconfigured`](super::EventKind::Reconfigured) event
    /// (and a transition event when the state changes).
    ///
    /// Each reconfiguration allocates a new generation (its window comes from a pool of freed
    /// ones when one of its shape is free); the old one is freed once no service still holds
    /// it (a service moves to the new one at its next call).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if a setting is out of range, or if `configure` sets a
    /// [`clock`](Builder::clock) or asks for metrics (a breaker keeps its clock and its
    /// metrics, chosen when it was built); the breaker is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::{CircuitBreaker, classify::Outcome};
    ///
    /// let breaker = CircuitBreaker::builder("pg").count_window(100).build()?;
    /// let layer = breaker.layer(); // services made from it follow the new configuration
    /// breaker.try_acquire()?.record(Outcome::Failure);
    ///
    /// breaker.reconfigure(|b| b.count_window(10).minimum_calls(5))?;
    /// assert_eq!(breaker.metrics().buffered_calls, 0); // a fresh window
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reconfigure(
        &self,
        configure: impl FnOnce(Builder) -> Builder,
    ) -> Result<(), ConfigError> {
        let config = configure(Builder::new(self.name().to_owned())).validate_for_reconfigure()?;
        let (old, replaced) = {
            let mut latest = self.lock();
            let old = Arc::clone(&latest);
            let replaced = old.replace(&config, &self.root.latest);
            *latest = Arc::clone(&replaced.successor);
            (old, replaced)
        };
        // Outside the lock: subscribers hear of it, and a callback may use this handle. The
        // old generation is freed once no service holds it any more.
        old.announce_retired(&replaced);
        Ok(())
    }

    /// Asks to make one call, for code that does not go through a tower service.
    ///
    /// The handle finds the breaker's current generation under a lock (it may have been
    /// reconfigured), so calls through a layered service, which holds its generation, cost
    /// less.
    ///
    /// Record the call's outcome on the returned permit; dropping the permit without recording
    /// counts as a cancelled call (nothing recorded; a half-open permit is given back). The
    /// call is timed from here when the breaker needs durations.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker rejects the call; the rejection is counted.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::{CircuitBreaker, classify::Outcome};
    ///
    /// let breaker = CircuitBreaker::builder("db").build()?;
    /// let permit = breaker.try_acquire()?;
    /// let rows: Result<u32, std::io::Error> = Ok(3); // the call
    /// permit.record(if rows.is_ok() { Outcome::Success } else { Outcome::Failure });
    /// assert_eq!(breaker.metrics().successful_calls, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire(&self) -> Result<CallPermit, CircuitOpen> {
        let mut core = self.core();
        loop {
            match core.try_acquire() {
                Ok(admission) => {
                    let mut permit = CallPermit::new(&core, admission);
                    permit.start_timing();
                    return Ok(permit);
                }
                // Reconfigured: ask the generation that replaced this one.
                Err(rejection) if rejection.retired() => core = core.latest(),
                Err(rejection) => {
                    core.rejected(&rejection);
                    return Err(CircuitOpen::new(&core, &rejection));
                }
            }
        }
    }

    /// Moves the breaker to `state` by hand, from any state. Moving to the current state does
    /// nothing and emits no event. Open waits as configured; half-open starts with no probe
    /// taken; closed, disabled, forced open and metrics-only start with an empty window.
    pub fn transition_to(&self, state: CircuitState) {
        // Outside the lock: subscribers hear of the transition, and may use this handle.
        self.core().transition_to(state);
    }

    /// Rejects every call until another transition: [`ForcedOpen`](CircuitState::ForcedOpen).
    pub fn force_open(&self) {
        self.transition_to(CircuitState::ForcedOpen);
    }

    /// Lets every call through and records nothing: [`Disabled`](CircuitState::Disabled).
    pub fn disable(&self) {
        self.transition_to(CircuitState::Disabled);
    }

    /// Lets every call through and records it, but never opens:
    /// [`MetricsOnly`](CircuitState::MetricsOnly).
    pub fn metrics_only(&self) {
        self.transition_to(CircuitState::MetricsOnly);
    }

    /// Closes the breaker and clears everything: the window, the backoff's count of
    /// consecutive openings, the count of rejected calls. Emits a reset event (and a transition
    /// event unless it was closed already). Calls still in flight are discarded when they end.
    pub fn reset(&self) {
        self.core().reset();
    }

    /// Calls `callback` on every event: transitions, resets, rejections and recorded outcomes.
    /// While such a subscriber exists, every call is timed (its duration is in the event).
    ///
    /// The breaker owns its callbacks: a callback that holds a handle of its own breaker keeps
    /// the breaker alive (a cycle). Capture what the callback needs instead (the event carries
    /// the breaker's name).
    pub fn on_event(&self, callback: impl Fn(&Event) + Send + Sync + 'static) -> SubscriptionId {
        self.root.shared.events.subscribe(true, Arc::new(callback))
    }

    /// Calls `callback` on state transitions and resets only; costs nothing per call.
    pub fn on_state_transition(
        &self,
        callback: impl Fn(&Event) + Send + Sync + 'static,
    ) -> SubscriptionId {
        self.root.shared.events.subscribe(false, Arc::new(callback))
    }

    /// Removes a callback; `false` if it was not registered.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.root.shared.events.unsubscribe(id)
    }

    /// Every event, as a [`tokio::sync::broadcast`] receiver that buffers up to 1024 events: a
    /// receiver that falls further behind gets [`RecvError::Lagged`] and skips ahead. Per-call
    /// events cost their delivery until every receiver is dropped.
    ///
    /// [`RecvError::Lagged`]: tokio::sync::broadcast::error::RecvError::Lagged
    pub fn event_stream(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.root.shared.events.stream()
    }

    /// A layer that classifies `http::Response`s with
    /// [`HttpClassifier`](crate::classify::http::HttpClassifier)'s defaults: `5xx` and errors
    /// fail, `4xx` is ignored.
    pub fn layer(&self) -> CircuitBreakerLayer<crate::classify::http::HttpClassifier> {
        CircuitBreakerLayer::new(self, crate::classify::http::HttpClassifier::new())
    }

    /// A layer for gRPC calls: [`GrpcClassifier`](crate::classify::grpc::GrpcClassifier)'s
    /// defaults, recorded at the end of each response body, where gRPC puts its status.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder("inventory-grpc").build()?;
    /// let layer = breaker.grpc_layer(); // wrap a tonic Channel with it
    /// # let _ = layer;
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn grpc_layer(
        &self,
    ) -> CircuitBreakerLayer<crate::classify::grpc::GrpcClassifier, WithError, AtEndOfStream> {
        CircuitBreakerLayer::new(self, crate::classify::grpc::GrpcClassifier::new()).end_of_stream()
    }

    /// A layer driven by a tower-http [`MakeClassifier`](::tower_http::classify::MakeClassifier)
    /// (feature `tower-http`): see [`tower_http`](super::tower_http). Note
    /// that tower-http has no "ignored" class: with its `ServerErrorsAsFailures`, `4xx` counts
    /// as a success.
    #[cfg(feature = "tower-http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
    pub fn tower_http_layer<M>(
        &self,
        make_classifier: M,
    ) -> CircuitBreakerLayer<M, WithError, super::tower_http::TowerHttp> {
        CircuitBreakerLayer::recording_at(self, make_classifier)
    }

    /// A layer that classifies results with `classifier`: a closure
    /// `Fn(Result<&Response, &Error>) -> Outcome` or a [`Classify`](crate::classify::Classify)
    /// implementation.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::{CircuitBreaker, classify::Outcome};
    ///
    /// let breaker = CircuitBreaker::builder("db").build()?;
    /// let layer = breaker.layer_with(|result: Result<&Vec<u8>, &std::io::Error>| match result {
    ///     Ok(_) => Outcome::Success,
    ///     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
    ///     Err(_) => Outcome::Failure,
    /// });
    /// # let _ = layer;
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn layer_with<C>(&self, classifier: C) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer::new(self, classifier)
    }
}

/// A handle that does not keep its breaker alive: [`CircuitBreaker::downgrade`].
///
/// For whatever follows a breaker without owning it (a fleet that publishes its state): once
/// every [`CircuitBreaker`] handle of the breaker is dropped, [`upgrade`](Self::upgrade) gives
/// `None`. (Services and layers keep their breaker working, but not this handle's breaker:
/// keep a `CircuitBreaker` as long as something should follow it, as a registry does.)
///
/// # Example
///
/// ```
/// use breakwater::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("pg").build()?;
/// let weak = breaker.downgrade();
/// assert_eq!(weak.upgrade().as_ref(), Some(&breaker));
/// drop(breaker);
/// assert!(weak.upgrade().is_none());
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct WeakCircuitBreaker {
    root: Weak<Root>,
}

impl WeakCircuitBreaker {
    /// The breaker, if a [`CircuitBreaker`] handle of it still exists.
    pub fn upgrade(&self) -> Option<CircuitBreaker> {
        self.root.upgrade().map(|root| CircuitBreaker { root })
    }
}

impl fmt::Debug for WeakCircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.upgrade() {
            Some(breaker) => f
                .debug_tuple("WeakCircuitBreaker")
                .field(&breaker.name())
                .finish(),
            None => f.write_str("WeakCircuitBreaker(dropped)"),
        }
    }
}

impl PartialEq for CircuitBreaker {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.root, &other.root)
    }
}

impl Eq for CircuitBreaker {}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}
