//! A breaker's numbers at one moment.

use std::time::{Duration, Instant};

use super::state::CircuitState;

/// A breaker's state and window at one moment; made by
/// [`CircuitBreaker::metrics`](crate::CircuitBreaker::metrics).
///
/// Which window the numbers describe depends on the state, as in resilience4j:
///
/// | state | window |
/// |---|---|
/// | closed, metrics only | the sliding window |
/// | open | the window that opened the breaker (frozen, so an operator sees why) |
/// | half-open | the probe calls recorded so far |
/// | disabled, forced open | nothing (all zero) |
///
/// Rates are percentages, and `None` until the window holds the minimum number of calls (for
/// half-open: every probe). `slow_call_rate` is `None` when slow-call detection is off.
///
/// # Example
///
/// ```
/// use breakwater::{CircuitBreaker, classify::Outcome};
///
/// let breaker = CircuitBreaker::builder("pg")
///     .count_window(4)
///     .minimum_calls(2)
///     .failure_rate_threshold(60.0)
///     .build()?;
/// for outcome in [Outcome::Failure, Outcome::Success, Outcome::Success] {
///     breaker.try_acquire().expect("closed").record(outcome);
/// }
/// let metrics = breaker.metrics();
/// assert_eq!(metrics.buffered_calls, 3);
/// assert_eq!(metrics.failed_calls, 1);
/// assert_eq!(metrics.successful_calls, 2);
/// assert_eq!(metrics.failure_rate, Some(100.0 / 3.0));
/// assert_eq!(metrics.slow_call_rate, None);
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The state.
    pub state: CircuitState,
    /// Failed calls as a percentage of `buffered_calls`, once there are enough of them.
    pub failure_rate: Option<f64>,
    /// Slow calls (failed or not) as a percentage of `buffered_calls`, once there are enough of
    /// them and slow-call detection is on.
    pub slow_call_rate: Option<f64>,
    /// Recorded calls in the window (ignored calls are never recorded).
    pub buffered_calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Successful calls in the window: `buffered_calls - failed_calls`.
    pub successful_calls: u64,
    /// Slow calls in the window, failed or not.
    pub slow_calls: u64,
    /// Calls rejected since the breaker last opened (or was forced open).
    pub not_permitted_calls: u64,
    /// When the breaker last changed state (or was reset, or built).
    pub last_transition_at: Instant,
    /// Open: how long until it lets a probe through.
    pub retry_after: Option<Duration>,
}
