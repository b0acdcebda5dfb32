//! A breaker's metrics through the `metrics` facade (feature `metrics`).
//!
//! The metric names, labels and costs are documented in the crate docs ("Metrics").

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::circuit_breaker::CircuitState;
use crate::classify::Outcome;

const STATES: [CircuitState; 6] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::Disabled,
    CircuitState::ForcedOpen,
    CircuitState::MetricsOnly,
];

const CALLS: &str = "breakwater_circuit_breaker_calls_total";
const SLOW_CALLS: &str = "breakwater_circuit_breaker_slow_calls_total";
const STATE: &str = "breakwater_circuit_breaker_state";
const DURATION: &str = "breakwater_circuit_breaker_call_duration_seconds";

/// One breaker's handles, made once.
pub(crate) struct Handles {
    success: Counter,
    failure: Counter,
    ignored: Counter,
    rejected: Counter,
    slow: Counter,
    states: [Gauge; 6],
    /// The duration histograms (success, failure, ignored), registered only for a breaker that
    /// asked for durations.
    durations: Option<[Histogram; 3]>,
}

impl Handles {
    pub(crate) fn new(name: &str, durations: bool) -> Self {
        let calls = |outcome: &'static str| counter!(CALLS, "breaker" => name.to_owned(), "outcome" => outcome);
        let duration = |outcome: &'static str| histogram!(DURATION, "breaker" => name.to_owned(), "outcome" => outcome);
        let handles = Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: calls("rejected"),
            slow: counter!(SLOW_CALLS, "breaker" => name.to_owned()),
            states: STATES
                .map(|s| gauge!(STATE, "breaker" => name.to_owned(), "state" => s.as_str())),
            durations: durations.then(|| {
                [
                    duration("success"),
                    duration("failure"),
                    duration("ignored"),
                ]
            }),
        };
        handles.enter(CircuitState::Closed);
        handles
    }

    /// A call ended with `outcome`, after `elapsed` if it was timed for the histogram.
    pub(crate) fn call(&self, outcome: Outcome, slow: bool, elapsed: Option<Duration>) {
        let (count, which) = match outcome {
            Outcome::Ignored => (&self.ignored, 2),
            o if o.is_failure() => (&self.failure, 1),
            _ => (&self.success, 0),
        };
        count.increment(1);
        // An ignored call is not recorded, slow or not: the counter agrees with the window.
        if slow && outcome != Outcome::Ignored {
            self.slow.increment(1);
        }
        if let (Some(elapsed), Some(durations)) = (elapsed, &self.durations) {
            durations[which].record(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }

    /// The breaker moved from `from` to `to`. The state gauges count breakers: 1 or 0 for a
    /// breaker of its own, and for the breakers of a keyed layer (which share a name) how many
    /// keys are in each state. Increments and decrements commute, so transitions that finish
    /// in any order leave the right counts.
    pub(crate) fn moved(&self, from: CircuitState, to: CircuitState) {
        if from != to {
            self.leave(from);
            self.enter(to);
        }
    }

    /// One more breaker in `state`.
    pub(crate) fn enter(&self, state: CircuitState) {
        self.states[index(state)].increment(1.0);
    }

    /// One breaker fewer in `state`.
    pub(crate) fn leave(&self, state: CircuitState) {
        self.states[index(state)].decrement(1.0);
    }
}

fn index(state: CircuitState) -> usize {
    STATES.iter().position(|&s| s == state).unwrap_or(0)
}
