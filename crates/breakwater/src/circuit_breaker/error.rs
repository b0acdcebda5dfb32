//! The error of a call the breaker rejected.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use super::CircuitState;
use super::core::Rejection;

/// A call was rejected by an open breaker without reaching the service.
///
/// The layered service returns it boxed in a [`BoxError`](crate::BoxError); find it with
/// `error.downcast_ref::<CircuitOpen>()` (or `error.is::<CircuitOpen>()`).
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
/// // The wait has millisecond resolution, rounded up.
/// assert!(rejected.retry_after().is_some_and(|wait| wait > Duration::from_secs(29)));
/// assert!(rejected.to_string().starts_with("circuit breaker `pg-payment` is open; retry after "));
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    breaker: &'static str,
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    pub(crate) fn new(breaker: &'static str, rejection: &Rejection) -> Self {
        Self {
            breaker,
            state: rejection.state,
            retry_after: rejection.retry_after(),
        }
    }

    /// The name of the breaker that rejected the call.
    pub const fn breaker(&self) -> &'static str {
        self.breaker
    }

    /// The state that rejected it: [`Open`](CircuitState::Open), [`ForcedOpen`](CircuitState::ForcedOpen),
    /// or [`HalfOpen`](CircuitState::HalfOpen) with every probe permit taken.
    pub const fn state(&self) -> CircuitState {
        self.state
    }

    /// Open: how long, from the rejection, until the breaker lets a probe through. `None` in
    /// the other states, which have no such deadline.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}` is ", self.breaker)?;
        match (self.state, self.retry_after) {
            (CircuitState::Open, Some(wait)) => write!(f, "open; retry after {wait:?}"),
            (CircuitState::HalfOpen, _) => {
                f.write_str("half-open and all its probe calls are in flight")
            }
            (CircuitState::ForcedOpen, _) => f.write_str("forced open"),
            (state, _) => write!(f, "{state}"),
        }
    }
}

impl Error for CircuitOpen {}
