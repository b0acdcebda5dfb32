//! The settings as given to a builder, their defaults, and their validation into a
//! [`Config`].

use std::time::Duration;

use super::ConfigError;
use crate::circuit_breaker::policy::config::{
    Config, MAX_PERMITS, MAX_WAIT, OpenWait, SlowCalls, WindowKind,
};
use crate::circuit_breaker::policy::window::{count, time};

/// The settings as given, before validation.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) name: String,
    pub(super) window: WindowSetting,
    pub(super) minimum_calls: u32,
    pub(super) failure_rate_threshold: f64,
    pub(super) slow_call_duration_threshold: Option<Duration>,
    pub(super) slow_call_rate_threshold: Option<f64>,
    pub(super) open_wait: OpenWait,
    pub(super) permitted_calls_in_half_open: u32,
    pub(super) max_wait_in_half_open: Option<Duration>,
    pub(super) automatic_transition: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum WindowSetting {
    Count(u32),
    Time(Duration),
}

pub(super) fn defaults() -> Config {
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
    pub(super) fn validate(&self) -> Result<Config, ConfigError> {
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
    pub(super) fn validate_settings(&self) -> Result<Config, ConfigError> {
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
