//! Metrics through the `metrics` facade: counters per outcome, a gauge per state and a
//! histogram of call durations, labelled with the breaker's name, into a test recorder.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::CircuitState;
use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::call;

/// Every metric of the recorder, by name and sorted labels.
fn read(snapshotter: &Snapshotter) -> HashMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn counter(metrics: &HashMap<String, DebugValue>, key: &str) -> u64 {
    match metrics.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key}: {other:?}"),
    }
}

fn gauge(metrics: &HashMap<String, DebugValue>, state: &str) -> f64 {
    match metrics.get(&format!(
        "breakwater_circuit_breaker_state{{breaker=pg,state={state}}}"
    )) {
        Some(DebugValue::Gauge(x)) => x.into_inner(),
        other => panic!("{state}: {other:?}"),
    }
}

fn histogram(metrics: &HashMap<String, DebugValue>, outcome: &str) -> Vec<f64> {
    match metrics.get(&format!(
        "breakwater_circuit_breaker_call_duration_seconds{{breaker=pg,outcome={outcome}}}"
    )) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
        other => panic!("{outcome}: {other:?}"),
    }
}

#[test]
fn outcomes_states_and_durations_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    // Handles are made when the breaker is built, with the recorder installed then.
    let pg = metrics::with_local_recorder(&recorder, || {
        CircuitBreaker::builder("pg")
            .count_window(4)
            .minimum_calls(4)
            .failure_rate_threshold(75.0)
            .slow_call_duration_threshold(Duration::from_secs(1))
            .slow_call_rate_threshold(100.0)
            .clock(clock.clone())
            .build()
            .unwrap()
    });
    let metrics = read(&snapshotter);
    assert_eq!(gauge(&metrics, "closed"), 1.0);
    assert_eq!(gauge(&metrics, "open"), 0.0);

    call(&pg, &clock, Outcome::Success, Duration::from_millis(250));
    call(&pg, &clock, Outcome::Success, Duration::from_millis(1_500));
    call(&pg, &clock, Outcome::Ignored, Duration::from_millis(10));
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(500));
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(500));
    assert_eq!(pg.state(), CircuitState::Closed);
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(500));
    assert_eq!(pg.state(), CircuitState::Open);
    for _ in 0..3 {
        assert!(pg.try_acquire().is_err());
    }

    let metrics = read(&snapshotter);
    let calls = |outcome| {
        counter(
            &metrics,
            &format!("breakwater_circuit_breaker_calls_total{{breaker=pg,outcome={outcome}}}"),
        )
    };
    assert_eq!(
        [
            calls("success"),
            calls("failure"),
            calls("ignored"),
            calls("rejected")
        ],
        [2, 3, 1, 3]
    );
    assert_eq!(
        counter(
            &metrics,
            "breakwater_circuit_breaker_slow_calls_total{breaker=pg}"
        ),
        1
    );
    assert_eq!(gauge(&metrics, "closed"), 0.0);
    assert_eq!(gauge(&metrics, "open"), 1.0);
    assert_eq!(histogram(&metrics, "success"), [0.25, 1.5]);
    assert_eq!(histogram(&metrics, "failure"), [0.5, 0.5, 0.5]);
    assert_eq!(histogram(&metrics, "ignored"), [0.01]);

    // Forced open, then reconfigured: the gauge follows every move.
    pg.force_open();
    assert_eq!(gauge(&read(&snapshotter), "forced_open"), 1.0);
    assert_eq!(gauge(&read(&snapshotter), "open"), 0.0);
    pg.reset();
    pg.reconfigure(|b| b.count_window(2)).unwrap();
    pg.metrics_only();
    let metrics = read(&snapshotter);
    let states: Vec<f64> = [
        "closed",
        "open",
        "half_open",
        "disabled",
        "forced_open",
        "metrics_only",
    ]
    .iter()
    .map(|s| gauge(&metrics, s))
    .collect();
    assert_eq!(states, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn a_disabled_breaker_still_counts_its_calls() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    let pg = metrics::with_local_recorder(&recorder, || {
        CircuitBreaker::builder("pg")
            .clock(clock.clone())
            .build()
            .unwrap()
    });
    pg.disable();
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(20));
    let metrics = read(&snapshotter);
    assert_eq!(
        counter(
            &metrics,
            "breakwater_circuit_breaker_calls_total{breaker=pg,outcome=failure}"
        ),
        1
    );
    assert_eq!(gauge(&metrics, "disabled"), 1.0);
    assert_eq!(pg.metrics().buffered_calls, 0, "recorded nowhere");
}
