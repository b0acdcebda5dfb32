//! A breaker's configuration once checked: what the policy reads. The builder that makes it
//! (and checks every setting) is `circuit_breaker::config`.

use std::time::Duration;

/// The longest wait in the open state, and the longest `Retry-After` honoured: a year.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Half-open counters have 10 bits each.
pub(crate) const MAX_PERMITS: u32 = 1_023;

/// How calls are grouped to compute the rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WindowKind {
    /// The last `n` recorded calls.
    Count(u32),
    /// The calls of the last `n` seconds.
    Time(u32),
}

/// How long an open breaker waits before it lets probes through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum OpenWait {
    Fixed(Duration),
    Backoff(ExponentialBackoff),
}

/// Slow-call detection: off unless one of its two settings is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SlowCalls {
    pub(crate) threshold: Duration,
    pub(crate) rate_threshold: f64,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) window: WindowKind,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_calls: Option<SlowCalls>,
    pub(crate) open_wait: OpenWait,
    pub(crate) permitted_calls_in_half_open: u32,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) automatic_transition: bool,
}

impl Config {
    /// The wait before the `attempt`-th consecutive opening (1-based) may let probes through;
    /// `draw` is a uniform random number in `[0, 1)` for the jitter.
    pub(crate) fn open_wait(&self, attempt: u32, draw: f64) -> Duration {
        match self.open_wait {
            OpenWait::Fixed(wait) => wait,
            OpenWait::Backoff(backoff) => backoff.wait(attempt, draw),
        }
    }
}

/// Exponential backoff for the open state: each consecutive opening waits `multiplier` times
/// longer than the one before, up to `max`, with an optional random jitter; the count starts
/// again when the breaker closes.
///
/// The `n`-th consecutive opening waits `initial × multiplierⁿ⁻¹`, then spread uniformly over
/// `± jitter` of itself, then capped at `max`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::{CircuitBreaker, circuit_breaker::ExponentialBackoff};
///
/// let breaker = CircuitBreaker::builder("pg")
///     .wait_backoff_in_open(
///         ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(60))
///             .multiplier(3.0)
///             .jitter(0.2),
///     )
///     .build()?;
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) multiplier: f64,
    pub(crate) jitter: f64,
}

impl ExponentialBackoff {
    /// Starts at `initial` and doubles up to `max`, without jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.0,
        }
    }

    /// The factor between consecutive waits (at least 1; 2 by default).
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Spreads each wait uniformly over `± jitter` of itself (`0 <= jitter < 1`; 0 by default),
    /// so that breakers opened together do not probe together.
    pub const fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    pub(crate) fn wait(&self, attempt: u32, draw: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let spread = base * self.jitter * (2.0 * draw - 1.0);
        let wait = (base + spread).min(self.max.as_secs_f64());
        // `wait` is finite and within [0, max] here: max was validated.
        Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or(self.max)
    }
}
