//! What the demo measured: per phase, per transition, and the headline.

use std::fmt;
use std::time::Duration;

use breakwater::CircuitState;

use crate::telemetry::LogCounts;

use super::driver::Sample;

/// How a confirmation ended, as the customer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `200`: charged.
    Approved,
    /// `400`: the PG refused.
    Rejected,
    /// `502`: the PG failed (5xx, timeout).
    Failed,
    /// `503`: the breaker is open; the PG was not called.
    Unavailable,
}

/// One phase of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseReport {
    /// Its number, from 1.
    pub number: usize,
    /// What happens in it.
    pub name: &'static str,
    /// When it started, since the demo started.
    pub started: Duration,
    /// How long it took.
    pub took: Duration,
    /// Confirmations sent.
    pub calls: usize,
    /// Confirmations charged.
    pub approved: usize,
    /// Refused by the PG (4xx).
    pub rejected: usize,
    /// Failed at the PG (5xx, timeout).
    pub failed: usize,
    /// Failed fast: the breaker was open.
    pub unavailable: usize,
    /// Requests that reached the PG.
    pub pg_hits: u64,
    /// Median confirmation latency.
    pub p50: Duration,
    /// 99th percentile confirmation latency.
    pub p99: Duration,
    /// `warn` and `error` lines logged.
    pub logs: LogCounts,
    /// The breaker's state at the end.
    pub state_after: CircuitState,
}

impl PhaseReport {
    pub(crate) fn of(
        number: usize,
        name: &'static str,
        (started, took): (Duration, Duration),
        samples: &[Sample],
        pg_hits: u64,
        logs: LogCounts,
        state_after: CircuitState,
    ) -> Self {
        let count = |outcome| samples.iter().filter(|s| s.outcome == outcome).count();
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        latencies.sort_unstable();
        Self {
            number,
            name,
            started,
            took,
            calls: samples.len(),
            approved: count(Outcome::Approved),
            rejected: count(Outcome::Rejected),
            failed: count(Outcome::Failed),
            unavailable: count(Outcome::Unavailable),
            pg_hits,
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            logs,
            state_after,
        }
    }
}

/// The nearest-rank percentile of sorted `values` (zero when there are none).
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A state transition of the PG's breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// When, since the demo started.
    pub at: Duration,
    /// The state left.
    pub from: CircuitState,
    /// The state entered.
    pub to: CircuitState,
    /// Why, in words.
    pub cause: String,
}

/// The seed's headline: with the PG hanging behind the read timeout, confirmation latency
/// while the breaker is still closed and once it is open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Headline {
    /// The read timeout.
    pub read_timeout: Duration,
    /// p99 of the confirmations made while the breaker was closed.
    pub p99_closed: Duration,
    /// p99 of the confirmations made once it was open.
    pub p99_open: Duration,
}

/// Milliseconds, or seconds from one second up.
pub(crate) struct Millis(pub(crate) Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        let text = if ms >= 1000.0 {
            format!("{:.2} s", ms / 1000.0)
        } else if ms >= 10.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{ms:.2} ms")
        };
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&values, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&values[..10], 99.0), Duration::from_millis(10));
        assert_eq!(percentile(&values[..1], 50.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn durations_print_in_a_readable_unit() {
        assert_eq!(Millis(Duration::from_micros(1234)).to_string(), "1.23 ms");
        assert_eq!(Millis(Duration::from_millis(45)).to_string(), "45 ms");
        assert_eq!(Millis(Duration::from_millis(3004)).to_string(), "3.00 s");
    }
}
