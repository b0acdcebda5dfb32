//! Building a breaker: settings, their defaults and their validation.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::CircuitBreaker;
use super::policy::config::{
    Config, ExponentialBackoff, MAX_PERMITS, MAX_WAIT, OpenWait, SlowCalls, WindowKind,
};
use super::policy::window::{count, time};
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
}

/// The settings as given, before validation.
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    window: WindowSetting,
    minimum_calls: u32,
    failure_rate_threshold: f64,
    slow_call_duration_threshold: Option<Duration>,
    slow_call_rate_threshold: Option<f64>,
    open_wait: OpenWait,
    permitted_calls_in_half_open: u32,
    max_wait_in_half_open: Option<Duration>,
    automatic_transition: bool,
}

#[derive(Debug, Clone, Copy)]
enum WindowSetting {
    Count(u32),
    Time(Duration),
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
    /// wait is not over without reading the clock (about 21 ns a rejection instead of 47 ns
    /// here). The move then happens when tokio's timer fires, which may be up to about a
    /// millisecond after the wait's end.
    pub fn automatic_transition_from_open_to_half_open(mut self, enabled: bool) -> Self {
        self.settings.automatic_transition = enabled;
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

    /// Builds a breaker from settings checked before (under another name: any name goes
    /// here, even an empty one). Settings that fail after all give way to the defaults.
    pub(crate) fn build_checked(self) -> CircuitBreaker {
        let config = self
            .settings
            .validate_settings()
            .unwrap_or_else(|_| defaults());
        CircuitBreaker::from_config(self.settings.name, config, self.clock)
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
        self.settings.validate()
    }
}

/// The configuration of a builder left at its defaults, which needs no checking.
fn defaults() -> Config {
    Config {
        window: WindowKind::Count(100),
        minimum_calls: 100,
        failure_rate_threshold: 50.0,
        slow_calls: None,
        open_wait: OpenWait::Fixed(Duration::from_secs(60)),
        permitted_calls_in_half_open: 10,
        max_wait_in_half_open: None,
        automatic_transition: false,
    }
}

const PERCENT: &str = "a percentage greater than 0 and at most 100";
const WAIT: &str = "a duration of at least 1 ms and at most 365 days";

impl Settings {
    fn validate(&self) -> Result<Config, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new(
                &self.name,
                "name",
                format!("{:?}", self.name),
                "a non-empty name",
            ));
        }
        self.validate_settings()
    }

    /// Every setting but the name.
    fn validate_settings(&self) -> Result<Config, ConfigError> {
        let error = |setting: &'static str, value: String, allowed: &'static str| {
            Err(ConfigError::new(&self.name, setting, value, allowed))
        };
        let window = match self.window {
            WindowSetting::Count(calls) => {
                if calls == 0 || calls > count::MAX_SIZE {
                    return error("count_window", calls.to_string(), "from 1 to 65535 calls");
                }
                WindowKind::Count(calls)
            }
            WindowSetting::Time(span) => match u32::try_from(span.as_secs()) {
                Ok(seconds @ 1..=time::MAX_SECONDS) if span.subsec_nanos() == 0 => {
                    WindowKind::Time(seconds)
                }
                _ => {
                    return error(
                        "time_window",
                        format!("{span:?}"),
                        "a whole number of seconds from 1 s to 3600 s",
                    );
                }
            },
        };
        if self.minimum_calls == 0 {
            return error("minimum_calls", "0".into(), "at least 1 call");
        }
        check_percent(
            &self.name,
            "failure_rate_threshold",
            self.failure_rate_threshold,
        )?;
        let slow_calls = match (
            self.slow_call_duration_threshold,
            self.slow_call_rate_threshold,
        ) {
            (None, None) => None,
            (threshold, rate) => {
                let threshold = threshold.unwrap_or(Duration::from_secs(60));
                if threshold.is_zero() {
                    return error(
                        "slow_call_duration_threshold",
                        format!("{threshold:?}"),
                        "a duration greater than zero",
                    );
                }
                let rate_threshold = rate.unwrap_or(100.0);
                check_percent(&self.name, "slow_call_rate_threshold", rate_threshold)?;
                Some(SlowCalls {
                    threshold,
                    rate_threshold,
                })
            }
        };
        match self.open_wait {
            OpenWait::Fixed(wait) => check_wait(&self.name, "wait_duration_in_open", wait)?,
            OpenWait::Backoff(b) => {
                check_wait(&self.name, "wait_backoff_in_open.initial", b.initial)?;
                check_wait(&self.name, "wait_backoff_in_open.max", b.max)?;
                if b.max < b.initial {
                    return error(
                        "wait_backoff_in_open.max",
                        format!("{:?}", b.max),
                        "a duration no shorter than the initial wait",
                    );
                }
                if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
                    return error(
                        "wait_backoff_in_open.multiplier",
                        b.multiplier.to_string(),
                        "a finite number of at least 1",
                    );
                }
                if !(0.0..1.0).contains(&b.jitter) {
                    return error(
                        "wait_backoff_in_open.jitter",
                        b.jitter.to_string(),
                        "a fraction from 0 (inclusive) to 1 (exclusive)",
                    );
                }
            }
        }
        let permits = self.permitted_calls_in_half_open;
        if permits == 0 || permits > MAX_PERMITS {
            return error(
                "permitted_calls_in_half_open",
                permits.to_string(),
                "from 1 to 1023 calls",
            );
        }
        if let Some(wait) = self.max_wait_in_half_open {
            check_wait(&self.name, "max_wait_in_half_open", wait)?;
        }
        Ok(Config {
            window,
            minimum_calls: self.minimum_calls,
            failure_rate_threshold: self.failure_rate_threshold,
            slow_calls,
            open_wait: self.open_wait,
            permitted_calls_in_half_open: permits,
            max_wait_in_half_open: self.max_wait_in_half_open,
            automatic_transition: self.automatic_transition,
        })
    }
}

fn check_percent(name: &str, setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::new(name, setting, value.to_string(), PERCENT))
    }
}

fn check_wait(name: &str, setting: &'static str, wait: Duration) -> Result<(), ConfigError> {
    if wait >= Duration::from_millis(1) && wait <= MAX_WAIT {
        Ok(())
    } else {
        Err(ConfigError::new(name, setting, format!("{wait:?}"), WAIT))
    }
}

/// A setting of a breaker is out of range: which breaker, which setting, the value given and
/// what is allowed.
///
/// # Example
///
/// ```
/// use breakwater::CircuitBreaker;
///
/// let error = CircuitBreaker::builder("search").count_window(0).build().unwrap_err();
/// assert_eq!(error.setting(), "count_window");
/// assert_eq!(error.value(), "0");
/// assert_eq!(error.allowed(), "from 1 to 65535 calls");
/// assert_eq!(
///     error.to_string(),
///     "circuit breaker `search`: count_window is 0, but it must be from 1 to 65535 calls",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    breaker: String,
    setting: &'static str,
    value: String,
    allowed: &'static str,
}

impl ConfigError {
    pub(crate) fn new(
        breaker: &str,
        setting: &'static str,
        value: String,
        allowed: &'static str,
    ) -> Self {
        Self {
            breaker: breaker.to_owned(),
            setting,
            value,
            allowed,
        }
    }

    /// The name of the breaker being built.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// The setting whose value is out of range, as the builder method names it.
    pub fn setting(&self) -> &str {
        self.setting
    }

    /// The value given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting allows.
    pub fn allowed(&self) -> &str {
        self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker `{}`: {} is {}, but it must be {}",
            self.breaker, self.setting, self.value, self.allowed
        )
    }
}

impl Error for ConfigError {}

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
