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

/// What a recorder has recorded so far. The debugging recorder's snapshots drain it
/// (counters and gauges go back to zero, histograms are emptied), so each reading is added to
/// what was read before.
struct Recorded {
    snapshotter: Snapshotter,
    values: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Recorded {
    fn of(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            values: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    /// Reads the recorder; metrics are named by name and sorted labels.
    fn read(&mut self) -> &Self {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.values.entry(name).or_default() += n as f64,
                DebugValue::Gauge(x) => *self.values.entry(name).or_default() += x.into_inner(),
                DebugValue::Histogram(v) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(v.iter().map(|x| x.into_inner())),
            }
        }
        self
    }

    fn value(&self, key: &str) -> f64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("{key}: not recorded"))
    }

    fn calls(&self, outcome: &str) -> f64 {
        self.value(&format!(
            "breakwater_circuit_breaker_calls_total{{breaker=pg,outcome={outcome}}}"
        ))
    }

    fn gauge(&self, state: &str) -> f64 {
        self.value(&format!(
            "breakwater_circuit_breaker_state{{breaker=pg,state={state}}}"
        ))
    }

    fn histogram(&self, outcome: &str) -> &[f64] {
        self.histograms
            .get(&format!(
                "breakwater_circuit_breaker_call_duration_seconds{{breaker=pg,outcome={outcome}}}"
            ))
            .map_or(&[], Vec::as_slice)
    }
}

#[test]
fn outcomes_states_and_durations_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let mut seen = Recorded::of(&recorder);
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
            .metrics_durations(true)
            .build()
            .unwrap()
    });
    seen.read();
    assert_eq!(seen.gauge("closed"), 1.0);
    assert_eq!(seen.gauge("open"), 0.0);

    call(&pg, &clock, Outcome::Success, Duration::from_millis(250));
    call(&pg, &clock, Outcome::Success, Duration::from_millis(1_500));
    // Slow, but ignored: not recorded, so not counted as slow either.
    call(&pg, &clock, Outcome::Ignored, Duration::from_millis(1_200));
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(500));
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(500));
    assert_eq!(pg.state(), CircuitState::Closed);
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(500));
    assert_eq!(pg.state(), CircuitState::Open);
    for _ in 0..3 {
        assert!(pg.try_acquire().is_err());
    }

    seen.read();
    assert_eq!(
        [
            seen.calls("success"),
            seen.calls("failure"),
            seen.calls("ignored"),
            seen.calls("rejected")
        ],
        [2.0, 3.0, 1.0, 3.0]
    );
    assert_eq!(
        seen.value("breakwater_circuit_breaker_slow_calls_total{breaker=pg}"),
        1.0
    );
    assert_eq!(seen.gauge("closed"), 0.0);
    assert_eq!(seen.gauge("open"), 1.0);
    assert_eq!(seen.histogram("success"), [0.25, 1.5]);
    assert_eq!(seen.histogram("failure"), [0.5, 0.5, 0.5]);
    assert_eq!(seen.histogram("ignored"), [1.2]);

    // Forced open, then reconfigured: the gauge follows every move.
    pg.force_open();
    seen.read();
    assert_eq!(seen.gauge("forced_open"), 1.0);
    assert_eq!(seen.gauge("open"), 0.0);
    pg.reset();
    pg.reconfigure(|b| b.count_window(2)).unwrap();
    pg.metrics_only();
    seen.read();
    let states: Vec<f64> = [
        "closed",
        "open",
        "half_open",
        "disabled",
        "forced_open",
        "metrics_only",
    ]
    .iter()
    .map(|s| seen.gauge(s))
    .collect();
    assert_eq!(states, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn a_disabled_breaker_still_counts_its_calls() {
    let recorder = DebuggingRecorder::new();
    let mut seen = Recorded::of(&recorder);
    let clock = ManualClock::new();
    let pg = metrics::with_local_recorder(&recorder, || {
        CircuitBreaker::builder("pg")
            .clock(clock.clone())
            .metrics_durations(true)
            .build()
            .unwrap()
    });
    pg.disable();
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(20));
    seen.read();
    assert_eq!(seen.calls("failure"), 1.0);
    assert_eq!(seen.gauge("disabled"), 1.0);
    assert_eq!(seen.gauge("closed"), 0.0);
    assert_eq!(seen.histogram("failure"), [0.02]);
    assert_eq!(pg.metrics().buffered_calls, 0, "recorded nowhere");
}

#[tokio::test]
async fn the_state_gauges_of_a_keyed_layer_count_its_keys() {
    use tower::{Layer, Service, ServiceExt};

    let recorder = DebuggingRecorder::new();
    let mut seen = Recorded::of(&recorder);
    let clock = ManualClock::new();
    let layer = CircuitBreaker::builder("pg")
        .count_window(2)
        .minimum_calls(2)
        .clock(clock.clone())
        .metrics(true)
        .keyed()
        .max_keys(2)
        .build()
        .unwrap();
    let partners = tower::service_fn(|request: http::Request<()>| async move {
        let status = if request.uri().port_u16() == Some(9001) {
            500
        } else {
            200
        };
        Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap())
    });
    let mut svc = layer.layer(partners);
    let get = |port: u16| {
        http::Request::get(format!("http://127.0.0.1:{port}/"))
            .body(())
            .unwrap()
    };
    // Breakers are made on a key's first call: the recorder must be there then.
    metrics::with_local_recorder(&recorder, || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for port in [9001, 9002] {
            let _ = svc.poll_ready(&mut cx);
            drop(svc.call(get(port)));
        }
    });
    for _ in 0..2 {
        svc.ready().await.unwrap().call(get(9001)).await.unwrap();
    }
    seen.read();
    assert_eq!((seen.gauge("closed"), seen.gauge("open")), (1.0, 1.0));
    // A third key evicts the closed one: its breaker leaves the count until it serves again.
    metrics::with_local_recorder(&recorder, || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = svc.poll_ready(&mut cx);
        drop(svc.call(get(9003)));
    });
    seen.read();
    assert_eq!((seen.gauge("closed"), seen.gauge("open")), (1.0, 1.0));
    assert_eq!(
        layer.keys(),
        ["http://127.0.0.1:9001", "http://127.0.0.1:9003"]
    );
}

#[test]
fn a_dropped_keyed_layer_leaves_the_state_gauges_at_zero() {
    use tower::{Layer, Service};

    let recorder = DebuggingRecorder::new();
    let mut seen = Recorded::of(&recorder);
    let clock = ManualClock::new();
    // `Recorded` reads the series of the breaker named `pg`.
    let layer = CircuitBreaker::builder("pg")
        .clock(clock.clone())
        .metrics(true)
        .keyed()
        .max_keys(4)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ok = tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::io::Error>(http::Response::new(()))
    });
    let mut svc = layer.layer(ok);
    let mut call = |port: u16| {
        metrics::with_local_recorder(&recorder, || {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = svc.poll_ready(&mut cx);
            let request = http::Request::get(format!("http://127.0.0.1:{port}/"));
            drop(svc.call(request.body(()).unwrap()));
        });
    };
    call(9001);
    call(9002);
    // A sweep comes with a new key every half idle timeout; the third evicts 9001 and 9002,
    // and 9005 takes one of their breakers: the other waits for a key, uncounted.
    for port in [9003, 9004, 9005] {
        clock.advance(Duration::from_secs(6));
        call(port);
    }
    assert_eq!(layer.keys().len(), 3);
    seen.read();
    assert_eq!(seen.gauge("closed"), 3.0);
    drop((svc, layer));
    seen.read();
    assert_eq!((seen.gauge("closed"), seen.gauge("open")), (0.0, 0.0));
}

#[test]
fn a_breaker_that_does_not_ask_records_nothing_and_counts_without_timing_when_asked() {
    let recorder = DebuggingRecorder::new();
    let mut seen = Recorded::of(&recorder);
    let clock = ManualClock::new();
    let (quiet, counted) = metrics::with_local_recorder(&recorder, || {
        let quiet = CircuitBreaker::builder("quiet")
            .clock(clock.clone())
            .build()
            .unwrap();
        // `pg`, the name `Recorded` reads: counts, no durations, though its calls are timed
        // for slow-call detection.
        let counted = CircuitBreaker::builder("pg")
            .clock(clock.clone())
            .slow_call_duration_threshold(Duration::from_secs(1))
            .metrics(true)
            .build()
            .unwrap();
        (quiet, counted)
    });
    for breaker in [&quiet, &counted] {
        call(breaker, &clock, Outcome::Success, Duration::from_millis(10));
        call(breaker, &clock, Outcome::Failure, Duration::from_millis(10));
    }
    seen.read();
    assert_eq!([seen.calls("success"), seen.calls("failure")], [1.0, 1.0]);
    assert_eq!(seen.gauge("closed"), 1.0);
    assert!(
        seen.histograms.is_empty(),
        "no duration histogram without `metrics_durations`: {:?}",
        seen.histograms.keys()
    );
    let names = |seen: &Recorded| -> Vec<String> {
        seen.values
            .keys()
            .chain(seen.histograms.keys())
            .cloned()
            .collect()
    };
    assert!(
        names(&seen).iter().all(|key| key.contains("breaker=pg")),
        "a breaker that did not ask has no series: {:?}",
        names(&seen)
    );
    // `metrics(false)` turns both off.
    metrics::with_local_recorder(&recorder, || {
        let off = CircuitBreaker::builder("off")
            .clock(clock.clone())
            .metrics_durations(true)
            .metrics(false)
            .build()
            .unwrap();
        call(&off, &clock, Outcome::Success, Duration::from_millis(10));
    });
    seen.read();
    assert!(
        names(&seen).iter().all(|key| key.contains("breaker=pg")),
        "{:?}",
        names(&seen)
    );
}

#[test]
fn a_registry_asks_for_metrics_for_the_breakers_it_makes() {
    let recorder = DebuggingRecorder::new();
    let mut seen = Recorded::of(&recorder);
    let clock = ManualClock::new();
    let registry = breakwater::Registry::new()
        .with_clock(clock.clone())
        .with_metrics_durations(true);
    let pg = metrics::with_local_recorder(&recorder, || registry.circuit_breaker("pg"));
    call(&pg, &clock, Outcome::Failure, Duration::from_millis(30));
    seen.read();
    assert_eq!(seen.calls("failure"), 1.0);
    assert_eq!(seen.histogram("failure"), [0.03]);

    // Its keyed layers too: a breaker per key, counted under the layer's name.
    use std::future::Future;
    use tower::{Layer, Service};
    let registry = breakwater::Registry::new().with_metrics(true);
    let layer = metrics::with_local_recorder(&recorder, || registry.keyed_layer("partners"));
    let ok = tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::io::Error>(http::Response::new(()))
    });
    let mut svc = layer.layer(ok);
    metrics::with_local_recorder(&recorder, || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        let request = http::Request::get("http://127.0.0.1:9001/")
            .body(())
            .unwrap();
        let mut call = std::pin::pin!(svc.call(request));
        assert!(call.as_mut().poll(&mut cx).is_ready());
    });
    seen.read();
    assert_eq!(
        seen.value("breakwater_circuit_breaker_calls_total{breaker=partners,outcome=success}"),
        1.0
    );
}

#[test]
fn a_reconfiguration_keeps_the_metrics_chosen_at_build() {
    let pg = CircuitBreaker::builder("pg").build().unwrap();
    let error = pg
        .reconfigure(|b| b.count_window(10).metrics(true))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "circuit breaker `pg`: metrics is metrics(true), but it must be left unset: a breaker \
         keeps the metrics chosen when it was built"
    );
    assert_eq!(pg.metrics().buffered_calls, 0);
}
