//! The error of a call the breaker rejected.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::CircuitState;
use super::generation::{Core, Identity};
use super::policy::Rejection;

/// A call was rejected by an open breaker without reaching the service.
///
/// The layered service returns it boxed in a [`BoxError`](crate::BoxError); find it with
/// `error.downcast_ref::<CircuitOpen>()` (or `error.is::<CircuitOpen>()`). With the `tonic`
/// feature its [`source`](Error::source) is an `UNAVAILABLE` status, so a tonic client reports
/// a rejected call as `UNAVAILABLE`, not `UNKNOWN`. That status is built once per breaker and
/// shared by every rejection (no allocation per call), so its message is fixed ("circuit
/// breaker `name` rejected the call"); the state and the wait are on the `CircuitOpen`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
///
/// let breaker = CircuitBreaker::builder("pg-payment")
///     .wait_duration_in_open(Duration::from_secs(30))
///     .build()?;
/// breaker.transition_to(CircuitState::Open);
///
/// let rejected: CircuitOpen = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.breaker(), "pg-payment");
/// assert_eq!(rejected.state(), CircuitState::Open);
/// // Counted from now; the wait has millisecond resolution, rounded up.
/// assert!(rejected.retry_after().is_some_and(|wait| wait > Duration::from_secs(29)));
/// assert!(rejected.to_string().starts_with("circuit breaker `pg-payment` is open; retry after "));
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitOpen {
    /// The breaker's identity: its name, clock and tonic status (not its window nor its
    /// subscribers: a rejection kept by the caller keeps only this small part alive).
    id: Arc<Identity>,
    state: CircuitState,
    /// When the rejection may end, in nanoseconds since the breaker was built (`u64::MAX`:
    /// only a transition can end it).
    deadline: u64,
    /// The key of a keyed breaker.
    key: Option<Arc<str>>,
}

impl CircuitOpen {
    pub(crate) fn new(core: &Core, rejection: &Rejection) -> Self {
        Self {
            id: Arc::clone(&core.shared.id),
            state: rejection.state(),
            deadline: rejection.deadline(),
            key: None,
        }
    }

    /// The rejection of a keyed breaker's call, for `key`.
    pub(crate) fn with_key(mut self, key: Arc<str>) -> Self {
        self.key = Some(key);
        self
    }

    /// The name of the breaker that rejected the call.
    pub fn breaker(&self) -> &str {
        &self.id.name
    }

    /// For a breaker of a [keyed layer](super::keyed): the key (the downstream) whose breaker
    /// rejected the call.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The state that rejected it: [`Open`](CircuitState::Open), [`ForcedOpen`](CircuitState::ForcedOpen),
    /// or [`HalfOpen`](CircuitState::HalfOpen) with every probe permit taken.
    pub const fn state(&self) -> CircuitState {
        self.state
    }

    /// Open: how long from now until the breaker lets a probe through, by the breaker's clock.
    /// It is computed when asked (the rejection itself reads no clock when it need not), so it
    /// shrinks as time passes. `None` in the other states, which have no such deadline.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.state == CircuitState::Open)
            .then(|| Duration::from_nanos(self.deadline.saturating_sub(self.id.time.now())))
    }
}

impl PartialEq for CircuitOpen {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.id, &other.id)
            && self.state == other.state
            && self.deadline == other.deadline
            && self.key == other.key
    }
}

impl Eq for CircuitOpen {}

impl fmt::Debug for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("breaker", &self.breaker())
            .field("key", &self.key)
            .field("state", &self.state)
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}` ", self.breaker())?;
        if let Some(key) = &self.key {
            write!(f, "for `{key}` ")?;
        }
        f.write_str("is ")?;
        match (self.state, self.retry_after()) {
            (CircuitState::Open, Some(wait)) => write!(f, "open; retry after {wait:?}"),
            (CircuitState::HalfOpen, _) => {
                f.write_str("half-open and all its probe calls are in flight")
            }
            (CircuitState::ForcedOpen, _) => f.write_str("forced open"),
            (state, _) => write!(f, "{state}"),
        }
    }
}

impl Error for CircuitOpen {
    /// With the `tonic` feature: an `UNAVAILABLE` status, which a tonic client finds in the
    /// source chain and reports instead of `UNKNOWN`.
    #[cfg(feature = "tonic")]
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.id.unavailable.get_or_init(|| {
            tonic::Status::unavailable(format!(
                "circuit breaker `{}` rejected the call",
                self.id.name
            ))
        }))
    }
}
