//! What a breaker tells its subscribers: transitions, resets, rejections and recorded outcomes.
//!
//! Subscribe with a callback ([`CircuitBreaker::on_event`], or
//! [`CircuitBreaker::on_state_transition`] for transitions and resets only) or a stream
//! ([`CircuitBreaker::event_stream`]). Callbacks run on the thread that caused the event, after
//! the breaker's state has changed and outside any lock: keep them short and non-blocking.
//!
//! Per-call events (outcomes and rejections) cost nothing while nobody subscribes to them: the
//! call path checks one flag. A call admitted before the first per-call subscriber came, while
//! the window was clean, may end unreported (it was admitted on the clean path, untimed). Transitions are also logged through `tracing` (`warn` when the
//! breaker opens, `info` otherwise), subscribed or not.
//!
//! [`CircuitBreaker::on_event`]: crate::CircuitBreaker::on_event
//! [`CircuitBreaker::on_state_transition`]: crate::CircuitBreaker::on_state_transition
//! [`CircuitBreaker::event_stream`]: crate::CircuitBreaker::event_stream

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::circuit_breaker::CircuitState;
use crate::circuit_breaker::policy::TransitionCause;

/// Something that happened to a breaker.
///
/// # Example
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use breakwater::{CircuitBreaker, CircuitState};
/// use breakwater::circuit_breaker::{EventKind, TransitionCause};
///
/// let breaker = CircuitBreaker::builder("pg").build()?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// breaker.on_state_transition(move |event| log.lock().unwrap().push(event.kind().clone()));
///
/// breaker.force_open();
/// assert_eq!(
///     seen.lock().unwrap()[0],
///     EventKind::StateTransition {
///         from: CircuitState::Closed,
///         to: CircuitState::ForcedOpen,
///         cause: TransitionCause::Manual,
///     },
/// );
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    breaker: Arc<str>,
    at: Instant,
    kind: EventKind,
}

impl Event {
    /// The name of the breaker.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// When it happened, by the breaker's clock.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// What happened.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }
}

/// What happened; see [`Event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The breaker moved from one state to another.
    StateTransition {
        /// The state left.
        from: CircuitState,
        /// The state entered.
        to: CircuitState,
        /// Why.
        cause: TransitionCause,
    },
    /// [`CircuitBreaker::reset`](crate::CircuitBreaker::reset) cleared the breaker.
    Reset,
    /// [`CircuitBreaker::reconfigure`](crate::CircuitBreaker::reconfigure) replaced the
    /// breaker's configuration; its window starts afresh.
    Reconfigured,
    /// A call was rejected without reaching the service.
    CallNotPermitted {
        /// The state that rejected it.
        state: CircuitState,
    },
    /// A call was recorded as a success. `elapsed` is known when the breaker timed the call
    /// (slow-call detection on, or a per-call subscriber present when it started).
    Success {
        /// How long the call took, until its response.
        elapsed: Option<Duration>,
        /// Whether it was slow.
        slow: bool,
    },
    /// A call was recorded as a failure.
    Failure {
        /// How long the call took, until its response or error.
        elapsed: Option<Duration>,
        /// Whether it was slow.
        slow: bool,
    },
    /// A call's outcome was ignored: not recorded.
    Ignored {
        /// How long the call took.
        elapsed: Option<Duration>,
    },
    /// A breaker in [`MetricsOnly`](CircuitState::MetricsOnly) would have opened; told once
    /// per stay in that state.
    ThresholdExceeded {
        /// Which rate, and its value.
        cause: TransitionCause,
    },
}

/// Identifies a callback registered with a breaker, to remove it with
/// [`CircuitBreaker::unsubscribe`](crate::CircuitBreaker::unsubscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Clone)]
struct Subscriber {
    id: u64,
    per_call: bool,
    callback: Callback,
}

#[derive(Default)]
struct Subscribers {
    next_id: u64,
    /// Copied on write, so that emitting clones a pointer and calls outside the lock.
    list: Arc<[Subscriber]>,
    stream: Option<broadcast::Sender<Event>>,
}

impl Subscribers {
    fn wants_per_call(&self) -> bool {
        self.stream.is_some() || self.list.iter().any(|s| s.per_call)
    }
}

/// A breaker's subscribers.
#[derive(Default)]
pub(crate) struct Events {
    per_call: AtomicBool,
    subscribers: Mutex<Subscribers>,
}

/// How many events a stream buffers before a slow receiver starts missing some.
const STREAM_CAPACITY: usize = 1024;

impl Events {
    /// Whether anybody wants per-call events: one relaxed load on the call path.
    #[inline]
    pub(crate) fn per_call(&self) -> bool {
        self.per_call.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        // A subscriber list is valid whatever a panicking thread left half done.
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn subscribe(&self, per_call: bool, callback: Callback) -> SubscriptionId {
        let mut subscribers = self.lock();
        subscribers.next_id += 1;
        let id = subscribers.next_id;
        let mut list = subscribers.list.to_vec();
        list.push(Subscriber {
            id,
            per_call,
            callback,
        });
        subscribers.list = list.into();
        self.per_call
            .store(subscribers.wants_per_call(), Ordering::Relaxed);
        SubscriptionId(id)
    }

    pub(crate) fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut subscribers = self.lock();
        let before = subscribers.list.len();
        let list: Vec<_> = subscribers
            .list
            .iter()
            .filter(|s| s.id != id.0)
            .cloned()
            .collect();
        let removed = list.len() != before;
        subscribers.list = list.into();
        self.per_call
            .store(subscribers.wants_per_call(), Ordering::Relaxed);
        removed
    }

    pub(crate) fn stream(&self) -> broadcast::Receiver<Event> {
        let mut subscribers = self.lock();
        let receiver = match &subscribers.stream {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(STREAM_CAPACITY);
                subscribers.stream = Some(sender);
                receiver
            }
        };
        self.per_call.store(true, Ordering::Relaxed);
        receiver
    }

    /// Delivers an event; `at` is read only if somebody will receive it.
    pub(crate) fn emit(
        &self,
        breaker: &Arc<str>,
        at: impl FnOnce() -> Instant,
        kind: EventKind,
        per_call: bool,
    ) {
        if per_call && !self.per_call() {
            return;
        }
        let (list, stream) = {
            let subscribers = self.lock();
            (Arc::clone(&subscribers.list), subscribers.stream.clone())
        };
        if stream.is_none() && !list.iter().any(|s| s.per_call || !per_call) {
            return;
        }
        let event = Event {
            breaker: Arc::clone(breaker),
            at: at(),
            kind,
        };
        for subscriber in list.iter().filter(|s| s.per_call || !per_call) {
            (subscriber.callback)(&event);
        }
        if let Some(sender) = stream {
            if sender.send(event).is_err() {
                // Every receiver is gone: stop paying for per-call events on their behalf.
                let mut subscribers = self.lock();
                if subscribers
                    .stream
                    .as_ref()
                    .is_some_and(|s| s.same_channel(&sender) && s.receiver_count() == 0)
                {
                    subscribers.stream = None;
                    self.per_call
                        .store(subscribers.wants_per_call(), Ordering::Relaxed);
                }
            }
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subscribers = self.lock();
        f.debug_struct("Events")
            .field("subscribers", &subscribers.list.len())
            .field("stream", &subscribers.stream.is_some())
            .finish()
    }
}
