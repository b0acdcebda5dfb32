//! Building a breaker: the builder. Its settings, their defaults and their validation are in
//! `settings`, the error for a bad one in `error`.

mod error;
mod settings;

use std::sync::Arc;
use std::time::Duration;

pub use self::error::ConfigError;
use self::settings::{Settings, WindowSetting, defaults};
use super::CircuitBreaker;
use super::observe::Metering;
use super::policy::config::{Config, ExponentialBackoff, OpenWait};
use crate::clock::Clock;

/// Builds a [`CircuitBreaker`]; made by [`CircuitBreaker::builder`].
///
/// Defaults are resilience4j's, except slow-call detection, which is off until one of its two
/// settings is given (resilience4j times every call against 60 s at a 100% rate, which needs a
/// clock read per call):
///
/// | setting | default | allowed |
/// |---|---|---|
/// | window | [`count_window(100)`](Self::count_window) | 1..=65 535 calls, or [`time_window`](Self::time_window) 1..=3 600 whole seconds |
/// | [`minimum_calls`](Self::minimum_calls) | 100 | at least 1 (capped at a count window's size) |
/// | [`failure_rate_threshold`](Self::failure_rate_threshold) | 50 | percent, `0 < x <= 100` |
/// | [`slow_call_duration_threshold`](Self::slow_call_duration_threshold) | off (60 s once the rate is set) | more than zero |
/// | [`slow_call_rate_threshold`](Self::slow_call_rate_threshold) | off (100 once the duration is set) | percent, `0 < x <= 100` |
/// | [`wait_duration_in_open`](Self::wait_duration_in_open) | 60 s | 1 ms ..= 365 days |
/// | [`permitted_calls_in_half_open`](Self::permitted_calls_in_half_open) | 10 | 1..=1 023 |
/// | [`max_wait_in_half_open`](Self::max_wait_in_half_open) | none (wait for the probes) | 1 ms ..= 365 days |
///
/// The open wait has millisecond resolution: a breaker opens until the first whole millisecond
/// at or after the wait's end.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("pg-payment")
///     .count_window(10)
///     .minimum_calls(10)
///     .failure_rate_threshold(50.0)
///     .slow_call_duration_threshold(Duration::from_secs(5))
///     .slow_call_rate_threshold(50.0)
///     .wait_duration_in_open(Duration::from_secs(30))
///     .permitted_calls_in_half_open(5)
///     .build()?;
///
/// let error = CircuitBreaker::builder("pg-payment").failure_rate_threshold(150.0).build().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "circuit breaker `pg-payment`: failure_rate_threshold is 150, but it must be a \
///      percentage greater than 0 and at most 100",
/// );
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug, Clone)]
pub struct Builder {
    settings: Settings,
    clock: Option<Arc<dyn Clock>>,
    metering: Metering,
}

impl Builder {
    pub(crate) fn new(name: String) -> Self {
        Self {
            settings: Settings {
                name,
                window: WindowSetting::Count(100),
                minimum_calls: 100,
                failure_rate_threshold: 50.0,
                slow_call_duration_threshold: None,
                slow_call_rate_threshold: None,
                open_wait: OpenWait::Fixed(Duration::from_secs(60)),
                permitted_calls_in_half_open: 10,
                max_wait_in_half_open: None,
                automatic_transition: false,
            },
            clock: None,
            metering: Metering::default(),
        }
    }

    /// Rates are computed over the last `calls` recorded calls (1..=65 535). Replaces a time
    /// window set before.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.settings.window = WindowSetting::Count(calls);
        self
    }

    /// Rates are computed over the calls of the last `span`, in one-second buckets: a whole
    /// number of seconds, 1 s ..= 1 hour. Replaces a count window set before.
    pub fn time_window(mut self, span: Duration) -> Self {
        self.settings.window = WindowSetting::Time(span);
        self
    }

    /// No rate is computed, and the breaker cannot open, before the window holds this many
    /// recorded calls (at least 1; capped at a count window's size).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.settings.minimum_calls = calls;
        self
    }

    /// The breaker opens when at least this percentage of the window's calls failed
    /// (`0 < percent <= 100`).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.settings.failure_rate_threshold = percent;
        self
    }

    /// A call is slow when it takes longer than this (until its response arrives). Turns on
    /// slow-call detection, with a rate threshold of 100% unless
    /// [`slow_call_rate_threshold`](Self::slow_call_rate_threshold) says otherwise.
    pub fn slow_call_duration_threshold(mut self, threshold: Duration) -> Self {
        self.settings.slow_call_duration_threshold = Some(threshold);
        self
    }

    /// The breaker opens when at least this percentage of the window's calls were slow, failed
    /// or not (`0 < percent <= 100`). Turns on slow-call detection, with a duration threshold of
    /// 60 s unless [`slow_call_duration_threshold`](Self::slow_call_duration_threshold) says
    /// otherwise.
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.settings.slow_call_rate_threshold = Some(percent);
        self
    }

    /// An open breaker rejects calls for this long, then lets probes through (1 ms ..= 365
    /// days). Replaces a backoff set before.
    pub fn wait_duration_in_open(mut self, wait: Duration) -> Self {
        self.settings.open_wait = OpenWait::Fixed(wait);
        self
    }

    /// An open breaker waits longer after each consecutive opening. Replaces a fixed wait set
    /// before.
    pub fn wait_backoff_in_open(mut self, backoff: ExponentialBackoff) -> Self {
        self.settings.open_wait = OpenWait::Backoff(backoff);
        self
    }

    /// How many probe calls a half-open breaker lets through (1..=1 023); their outcomes decide
    /// whether it closes or opens again.
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.settings.permitted_calls_in_half_open = calls;
        self
    }

    /// A half-open breaker whose probes have not all finished after this long opens again
    /// (checked when a call finds no free permit). Without it, a half-open breaker waits for
    /// its probes however long they take.
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.settings.max_wait_in_half_open = Some(wait);
        self
    }

    /// Moves an open breaker to half-open when its wait ends, through a tokio timer, rather than
    /// at the first call after it. Needs a tokio runtime with timers enabled when the breaker
    /// opens; without a runtime the move stays lazy.
    ///
    /// It also makes rejections cheaper: while the timer is pending, an open breaker knows its
    /// wait is not over without reading the clock (in BENCHMARKS.md, a rejection adds about
    /// 31 ns instead of 50). The move then happens when tokio's timer fires, which may be up to about a
    /// millisecond after the wait's end.
    pub fn automatic_transition_from_open_to_half_open(mut self, enabled: bool) -> Self {
        self.settings.automatic_transition = enabled;
        self
    }

    /// Records this breaker's metrics through the [`metrics`](https://docs.rs/metrics) facade
    /// (feature `metrics`; names, labels and costs in the crate docs, "Metrics"): counters of
    /// calls by outcome, of rejections and of slow calls, and a gauge per state. Off by
    /// default: the feature only makes metrics available, and a breaker that does not ask
    /// for them pays nothing for them (cargo unifies features, so another crate of the build
    /// may have turned the feature on). A breaker that records counts every call, so its calls
    /// do not take the clean path (see "Sharing, lifetime and cost" in the breaker's docs).
    /// `metrics(false)` also stops [`metrics_durations`](Self::metrics_durations).
    ///
    /// A [`Registry`](crate::Registry) asks for it for all its breakers with
    /// [`Registry::with_metrics`](crate::Registry::with_metrics).
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::CircuitBreaker;
    ///
    /// // With a recorder installed (metrics-exporter-prometheus, say), this breaker's
    /// // `breakwater_circuit_breaker_calls_total{breaker="pg"}` counts its calls.
    /// let breaker = CircuitBreaker::builder("pg").metrics(true).build()?;
    /// # let _ = breaker;
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metering = Metering {
            counts: enabled,
            durations: enabled && self.metering.durations,
        };
        self
    }

    /// Also times every call for the duration histogram
    /// (`breakwater_circuit_breaker_call_duration_seconds`), which costs two clock reads a
    /// call; implies [`metrics(true)`](Self::metrics). Off by default.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder("pg").metrics_durations(true).build()?;
    /// # let _ = breaker;
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_durations(mut self, enabled: bool) -> Self {
        self.metering = Metering {
            counts: enabled || self.metering.counts,
            durations: enabled,
        };
        self
    }

    /// Reads time from `clock` instead of tokio's clock (see [`clock`](crate::clock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks every setting and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting whose value is out of range, the value, and
    /// what is allowed.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let config = self.settings.validate()?;
        Ok(CircuitBreaker::from_config(
            self.settings.name,
            config,
            self.clock,
            self.metering,
        ))
    }
}

impl Builder {
    /// The name of the breaker being built.
    pub(crate) fn name(&self) -> &str {
        &self.settings.name
    }

    /// The clock the breaker will read: the one given, or tokio's.
    pub(crate) fn clock_or_tokio(&self) -> Arc<dyn Clock> {
        self.clock
            .clone()
            .unwrap_or_else(|| Arc::new(crate::clock::TokioClock))
    }

    /// Checks every setting without building.
    pub(crate) fn check(&self) -> Result<Config, ConfigError> {
        self.settings.validate()
    }

    /// The same settings for a breaker named `name`.
    pub(crate) fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.settings.name);
        self
    }

    /// Reads time from `clock`, shared with others.
    pub(crate) fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Records the metrics `metering` asks for (a registry's choice for its breakers).
    pub(crate) fn metering(mut self, metering: Metering) -> Self {
        self.metering = metering;
        self
    }

    /// Builds a breaker from settings checked before (under another name: any name goes
    /// here, even an empty one). Settings that fail after all give way to the defaults.
    pub(crate) fn build_checked(self) -> CircuitBreaker {
        let config = self
            .settings
            .validate_settings()
            .unwrap_or_else(|_| defaults());
        CircuitBreaker::from_config(self.settings.name, config, self.clock, self.metering)
    }

    /// The configuration to replace a breaker's with; a breaker keeps its clock.
    pub(crate) fn validate_for_reconfigure(self) -> Result<Config, ConfigError> {
        if self.clock.is_some() {
            return Err(ConfigError::new(
                &self.settings.name,
                "clock",
                "a new clock".into(),
                "the breaker's own clock: a reconfiguration cannot replace it",
            ));
        }
        if self.metering != Metering::default() {
            let asked = if self.metering.durations {
                "metrics_durations(true)"
            } else {
                "metrics(true)"
            };
            return Err(ConfigError::new(
                &self.settings.name,
                "metrics",
                asked.into(),
                "left unset: a breaker keeps the metrics chosen when it was built",
            ));
        }
        self.settings.validate()
    }
}

/// The configuration of a builder left at its defaults, which needs no checking.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_need_no_checking() {
        assert_eq!(Builder::new("x".into()).check(), Ok(defaults()));
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let b = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<_> = (1..=6).map(|n| b.wait(n, 0.5).as_secs_f64()).collect();
        assert_eq!(waits, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        let b = b.multiplier(3.0).jitter(0.5);
        assert_eq!(b.wait(2, 0.0), Duration::from_millis(1_500));
        assert_eq!(b.wait(2, 0.5), Duration::from_secs(3));
        assert_eq!(b.wait(2, 0.75), Duration::from_millis(3_750));
        assert_eq!(b.wait(3, 0.99), Duration::from_secs(10));
        assert_eq!(b.wait(u32::MAX, 0.0), Duration::from_secs(10));
    }
}
