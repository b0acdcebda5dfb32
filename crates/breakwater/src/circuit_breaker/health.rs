//! The health of a set of breakers, for a `/health` endpoint.

use std::time::{Duration, SystemTime};

use super::{CircuitBreaker, CircuitState};

/// The health of a set of breakers: an overall status, and each breaker's state and numbers.
/// Made by [`Registry::health`](crate::Registry::health), or [`HealthReport::of`] any
/// breakers.
///
/// With the `serde` feature it serializes as a `/health` endpoint would answer:
///
/// ```json
/// {"status": "down",
///  "breakers": [{"name": "pg", "state": "open", "failure_rate": 60.0, "slow_call_rate": null,
///                "buffered_calls": 10, "failed_calls": 6, "slow_calls": 0,
///                "not_permitted_calls": 3, "in_state_ms": 1200,
///                "since_unix_ms": 1795000000000, "retry_after_ms": 28800}]}
/// ```
///
/// # Example
///
/// ```
/// use breakwater::registry::{HealthReport, HealthStatus};
/// use breakwater::{CircuitBreaker, CircuitState};
///
/// let pg = CircuitBreaker::builder("pg").build()?;
/// let search = CircuitBreaker::builder("search").build()?;
/// assert_eq!(HealthReport::of(&[pg.clone(), search.clone()]).status, HealthStatus::Up);
/// pg.transition_to(CircuitState::Open);
/// let report = HealthReport::of(&[pg, search]);
/// assert_eq!(report.status, HealthStatus::Down);
/// assert_eq!(report.breakers[0].state, CircuitState::Open);
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The worst of the breakers' statuses.
    pub status: HealthStatus,
    /// Each breaker, in the order given (a registry's: by name).
    pub breakers: Vec<BreakerHealth>,
    /// What the registry's file asked that could not be carried over, one line each (see
    /// `Registry::warnings`); empty for a report that has no file behind it. They do not
    /// change the status.
    pub warnings: Vec<String>,
}

/// How healthy the downstreams behind a set of breakers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Every breaker lets calls through: closed, disabled or metrics only.
    Up,
    /// Some breaker is half-open: a downstream is being probed.
    Degraded,
    /// Some breaker is open or forced open: calls to a downstream fail fast.
    Down,
}

impl HealthStatus {
    /// Of one state.
    pub const fn of(state: CircuitState) -> Self {
        match state {
            CircuitState::Open | CircuitState::ForcedOpen => HealthStatus::Down,
            CircuitState::HalfOpen => HealthStatus::Degraded,
            CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => {
                HealthStatus::Up
            }
        }
    }

    /// `up`, `degraded` or `down`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Up => "up",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        }
    }
}

/// One breaker's state and numbers (see [`MetricsSnapshot`](crate::MetricsSnapshot) for which
/// window they describe).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerHealth {
    /// The breaker's name.
    pub name: String,
    /// For a breaker of a [keyed layer](crate::circuit_breaker::keyed): its key.
    pub key: Option<String>,
    /// Its state.
    pub state: CircuitState,
    /// Failed calls in percent, once the window holds enough calls.
    pub failure_rate: Option<f64>,
    /// Slow calls in percent, once the window holds enough calls (and slow-call detection is
    /// on).
    pub slow_call_rate: Option<f64>,
    /// Calls recorded in the window.
    pub buffered_calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Calls rejected since the breaker last opened.
    pub not_permitted_calls: u64,
    /// How long it has been in its state, by its clock.
    pub in_state: Duration,
    /// Since when, by the system's clock (its clock's time in the state, counted back from
    /// now).
    pub since: SystemTime,
    /// Open: how long until it lets a probe through.
    pub retry_after: Option<Duration>,
}

impl BreakerHealth {
    /// The health of one breaker, now.
    pub fn of(breaker: &CircuitBreaker) -> Self {
        let m = breaker.metrics();
        let in_state = breaker.time_in_state();
        Self {
            name: breaker.name().to_owned(),
            key: None,
            state: m.state,
            failure_rate: m.failure_rate,
            slow_call_rate: m.slow_call_rate,
            buffered_calls: m.buffered_calls,
            failed_calls: m.failed_calls,
            slow_calls: m.slow_calls,
            not_permitted_calls: m.not_permitted_calls,
            in_state,
            since: SystemTime::now()
                .checked_sub(in_state)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            retry_after: m.retry_after,
        }
    }
}

impl BreakerHealth {
    /// The same, for the breaker of `key` in a keyed layer.
    pub(crate) fn for_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }
}

impl HealthReport {
    /// The health of `breakers`, now.
    pub fn of(breakers: &[CircuitBreaker]) -> Self {
        Self::from_entries(breakers.iter().map(BreakerHealth::of).collect())
    }

    /// A report of these entries.
    pub(crate) fn from_entries(breakers: Vec<BreakerHealth>) -> Self {
        let status = breakers
            .iter()
            .map(|b| HealthStatus::of(b.state))
            .max()
            .unwrap_or(HealthStatus::Up);
        Self {
            status,
            breakers,
            warnings: Vec::new(),
        }
    }
}

#[cfg(feature = "serde")]
mod serialize {
    use serde::ser::{Serialize, SerializeStruct, Serializer};
    use std::time::{Duration, SystemTime};

    use super::{BreakerHealth, HealthReport, HealthStatus};

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    impl Serialize for HealthStatus {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(self.as_str())
        }
    }

    impl Serialize for HealthReport {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut s = serializer.serialize_struct("HealthReport", 3)?;
            s.serialize_field("status", &self.status)?;
            s.serialize_field("breakers", &self.breakers)?;
            if self.warnings.is_empty() {
                s.skip_field("warnings")?;
            } else {
                s.serialize_field("warnings", &self.warnings)?;
            }
            s.end()
        }
    }

    impl Serialize for BreakerHealth {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut s = serializer.serialize_struct("BreakerHealth", 12)?;
            s.serialize_field("name", &self.name)?;
            match &self.key {
                Some(key) => s.serialize_field("key", key)?,
                None => s.skip_field("key")?,
            }
            s.serialize_field("state", &self.state)?;
            s.serialize_field("failure_rate", &self.failure_rate)?;
            s.serialize_field("slow_call_rate", &self.slow_call_rate)?;
            s.serialize_field("buffered_calls", &self.buffered_calls)?;
            s.serialize_field("failed_calls", &self.failed_calls)?;
            s.serialize_field("slow_calls", &self.slow_calls)?;
            s.serialize_field("not_permitted_calls", &self.not_permitted_calls)?;
            s.serialize_field("in_state_ms", &millis(self.in_state))?;
            let since = self
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            s.serialize_field("since_unix_ms", &millis(since))?;
            s.serialize_field("retry_after_ms", &self.retry_after.map(millis))?;
            s.end()
        }
    }
}
