//! The rows of each scenario: the bare service, and the same behind breakwater and behind each
//! peer (see `peers` for how each is set up). breakwater's rows use `breaker.layer()`, its
//! default `HttpClassifier`, whose cost is part of what is measured.
//!
//! The functions that make seatbelt's rows need a tokio runtime entered (its clock's driver is
//! spawned there).

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::classify::http::HttpClassifier;
use http::StatusCode;
use tower::{Layer, Service};
use tower_resilience_circuitbreaker::SlidingWindowType;

use crate::measure::{Entry, Expect, Req, Res, request};
use crate::peers::{
    HOUR, SEATBELT_SAMPLING, SLOW, TIME_WINDOW, WAIT, WINDOW, failsafe_default,
    failsafe_time_window, failsafe_tripping, recloser, seatbelt, seatbelt_clock, tower_resilience,
};
use crate::services::{FAILING, OK, Reclosed, Switched, WaitsOnce, Wrapped};
use crate::two_tasks::Pair;

// ---- breakwater ----

/// A count window of 100 calls, at least 100 of them, 50%, no slow-call threshold (which are
/// resilience4j's defaults, and breakwater's), open for `wait`; with `automatic`, a timer
/// moves it to half-open after the wait.
fn count_window(name: &str, wait: Duration, automatic: bool) -> CircuitBreaker {
    CircuitBreaker::builder(name)
        .count_window(WINDOW as u32)
        .minimum_calls(WINDOW as u32)
        .failure_rate_threshold(50.0)
        .wait_duration_in_open(wait)
        .automatic_transition_from_open_to_half_open(automatic)
        .build()
        .unwrap_or_else(|e| panic!("breakwater `{name}`, a count window of 100: {e}"))
}

fn breakwater_time_window() -> CircuitBreaker {
    let built = CircuitBreaker::builder("bench-time")
        .time_window(TIME_WINDOW)
        .slow_call_duration_threshold(SLOW)
        .build();
    built.unwrap_or_else(|e| panic!("breakwater, a time window: {e}"))
}

/// breakwater's breaker of the closed rows, with its metrics off or on (a recorder is
/// installed for the whole run, see `recorder`).
fn breakwater_metrics(metrics: Metrics) -> CircuitBreaker {
    // The feature is on for the whole bench (and so for every breaker in it); only the breakers
    // that ask record metrics.
    let (name, counts, durations) = match metrics {
        Metrics::Off => ("bench-metrics-off", false, false),
        Metrics::Counts => ("bench-metrics-counts", true, false),
        Metrics::On => ("bench-metrics-on", true, true),
    };
    CircuitBreaker::builder(name)
        .count_window(WINDOW as u32)
        .minimum_calls(WINDOW as u32)
        .failure_rate_threshold(50.0)
        .wait_duration_in_open(WAIT)
        .metrics(counts)
        .metrics_durations(durations)
        .build()
        .unwrap_or_else(|e| panic!("breakwater `{name}`: {e}"))
}

/// What a metrics row's breaker records.
#[derive(Debug, Clone, Copy)]
enum Metrics {
    Off,
    /// Counters and state gauges, calls not timed.
    Counts,
    /// Counters, state gauges, and every call timed for the duration histogram.
    On,
}

/// Makes failing calls until every one is rejected: the breaker is open.
fn trip<S: Service<Req>>(mut svc: S) {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10 * WINDOW {
        if let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) {
            let future = std::pin::pin!(svc.call(request()));
            let _ = Future::poll(future, &mut cx);
        }
    }
}

/// How a one-thread row makes its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// `ready().await`, `.await` on the call, in a task.
    Awaited,
    /// `svc.clone().oneshot(req).await` for each request, in a task (axum style).
    ClonePerRequest,
    /// `poll_ready`, `call`, one poll in place with a no-op waker (the old harness).
    InPlace,
}

impl How {
    fn entry<S>(self, label: &'static str, svc: S, expect: Expect) -> Entry
    where
        S: Service<Req, Response = Res> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
    {
        match self {
            How::Awaited => Entry::new(label, svc, expect),
            How::ClonePerRequest => Entry::cloned(label, svc, expect),
            How::InPlace => Entry::in_place(label, svc, expect),
        }
    }
}

/// Closed, on one thread, each call made `how`. Every subject here is `Clone`, so each has a
/// clone-per-request row. Needs a tokio runtime entered.
pub(crate) fn closed(how: How) -> Vec<Entry> {
    let clock = seatbelt_clock();
    let ok = Expect::Success;
    let mut entries = vec![
        how.entry("bare service", OK, ok),
        how.entry(
            "breakwater",
            count_window("bench", WAIT, false).layer().layer(OK),
            ok,
        ),
        how.entry(
            "tower-resilience-circuitbreaker",
            tower_resilience(SlidingWindowType::CountBased, WAIT).layer(OK),
            ok,
        ),
        how.entry(
            "failsafe",
            Wrapped {
                breaker: failsafe_default(),
                inner: OK,
            },
            ok,
        ),
        how.entry(
            "recloser",
            Reclosed {
                breaker: recloser(WAIT),
                inner: OK,
            },
            ok,
        ),
        how.entry(
            "seatbelt",
            seatbelt(&clock, SEATBELT_SAMPLING, WAIT, OK),
            ok,
        ),
        how.entry(
            "breakwater, HTTP rules of its own",
            count_window("bench-rules", WAIT, false)
                .layer_with(own_rules())
                .layer(OK),
            ok,
        ),
    ];
    // The first row's breaker, joined to a fleet (when a Redis answers): not a target row.
    if let Some(breaker) =
        crate::fleet::joined(count_window(&format!("bench-fleet-{how:?}"), WAIT, false))
    {
        entries.push(how.entry("breakwater, fleet joined", breaker.layer().layer(OK), ok));
    }
    entries
}

/// An `HttpClassifier` with a rule of its own (429 counts as a failure): its rules live in a
/// pooled table, which each call reads through a view.
fn own_rules() -> HttpClassifier {
    HttpClassifier::new().failure(429)
}

/// Closed, two tasks sharing each breaker. Needs a tokio runtime entered.
pub(crate) fn closed_pairs() -> Vec<Pair> {
    let clock = seatbelt_clock();
    vec![
        Pair::new("bare service", OK),
        Pair::new(
            "breakwater",
            count_window("bench", WAIT, false).layer().layer(OK),
        ),
        Pair::new(
            "tower-resilience-circuitbreaker",
            tower_resilience(SlidingWindowType::CountBased, WAIT).layer(OK),
        ),
        Pair::new(
            "failsafe",
            Wrapped {
                breaker: failsafe_default(),
                inner: OK,
            },
        ),
        Pair::new(
            "recloser",
            Reclosed {
                breaker: recloser(WAIT),
                inner: OK,
            },
        ),
        Pair::new("seatbelt", seatbelt(&clock, SEATBELT_SAMPLING, WAIT, OK)),
        Pair::new(
            "breakwater, HTTP rules of its own",
            count_window("bench-rules", WAIT, false)
                .layer_with(own_rules())
                .layer(OK),
        ),
    ]
}

/// Open: every call rejected (after a row of the bare service, whose call is subtracted as in
/// the other tables). Each breaker is tripped by failing calls first, so it is open
/// the way a failing downstream opens it (the wait, an hour, is checked on every call). The
/// last row is breakwater with the automatic transition. Needs a tokio runtime entered.
pub(crate) fn rejected() -> Vec<Entry> {
    let breakwater = count_window("bench-open", HOUR, false);
    trip(breakwater.layer().layer(FAILING));
    let tower_resilience = tower_resilience(SlidingWindowType::CountBased, HOUR);
    trip(tower_resilience.layer(FAILING));
    let failsafe = failsafe_tripping();
    trip(Wrapped {
        breaker: failsafe.clone(),
        inner: FAILING,
    });
    let recloser = recloser(HOUR);
    trip(Reclosed {
        breaker: recloser.clone(),
        inner: FAILING,
    });
    // seatbelt makes a circuit per `layer` call: the service measured is the one tripped,
    // its inner service failing only while tripping (an open breaker never calls it).
    let switch = Switched::default();
    let seatbelt = seatbelt(&seatbelt_clock(), SEATBELT_SAMPLING, HOUR, switch.clone());
    switch.fail(true);
    trip(seatbelt.clone());
    switch.fail(false);
    let automatic = count_window("bench-automatic", HOUR, true);
    trip(automatic.layer().layer(FAILING));
    let failed = Expect::Failure;
    let mut entries = vec![
        Entry::new("bare service", OK, Expect::Success),
        Entry::new("breakwater", breakwater.layer().layer(OK), failed),
        Entry::new(
            "tower-resilience-circuitbreaker",
            tower_resilience.layer(OK),
            failed,
        ),
        Entry::new(
            "failsafe",
            Wrapped {
                breaker: failsafe,
                inner: OK,
            },
            failed,
        ),
        Entry::new(
            "recloser",
            Reclosed {
                breaker: recloser,
                inner: OK,
            },
            failed,
        ),
        Entry::new("seatbelt", seatbelt, failed),
        Entry::new(
            "breakwater, automatic transition",
            automatic.layer().layer(OK),
            failed,
        ),
    ];
    // A breaker whose wait is over, held by a fleet's hold on half-open (another instance
    // probes): each rejection reads the clock and the hold. Not a target row.
    let held = count_window("bench-held", Duration::from_millis(1), false);
    held.hold_probes(HOUR);
    trip(held.layer().layer(FAILING));
    std::thread::sleep(Duration::from_millis(5));
    entries.push(Entry::new(
        "breakwater, held past its wait",
        held.layer().layer(OK),
        failed,
    ));
    // breakwater's first row, its breaker joined to a fleet (when a Redis answers).
    let open = count_window("bench-fleet-open", HOUR, false);
    trip(open.layer().layer(FAILING));
    if let Some(open) = crate::fleet::joined(open) {
        entries.push(Entry::new(
            "breakwater, fleet joined",
            open.layer().layer(OK),
            failed,
        ));
    }
    entries
}

/// Closed, a 60 s time window, on one thread; breakwater and tower-resilience-circuitbreaker
/// detect slow calls (5 s). recloser has no time window; failsafe and seatbelt have one but no
/// slow-call detection. Needs a tokio runtime entered.
pub(crate) fn time_window() -> Vec<Entry> {
    let ok = Expect::Success;
    vec![
        Entry::new("bare service", OK, ok),
        Entry::new("breakwater", breakwater_time_window().layer().layer(OK), ok),
        Entry::new(
            "tower-resilience-circuitbreaker",
            tower_resilience(SlidingWindowType::TimeBased, WAIT).layer(OK),
            ok,
        ),
        Entry::new(
            "failsafe (no slow calls)",
            Wrapped {
                breaker: failsafe_time_window(),
                inner: OK,
            },
            ok,
        ),
        Entry::new(
            "seatbelt (no slow calls)",
            seatbelt(&seatbelt_clock(), TIME_WINDOW, WAIT, OK),
            ok,
        ),
    ]
}

/// breakwater with its metrics off, and on (the recorder installed, every call timed for the
/// duration histogram), as in "Closed, one thread".
pub(crate) fn metrics() -> Vec<Entry> {
    let ok = Expect::Success;
    vec![
        Entry::new("bare service", OK, ok),
        Entry::new(
            "breakwater, metrics off",
            breakwater_metrics(Metrics::Off).layer().layer(OK),
            ok,
        ),
        Entry::new(
            "breakwater, metrics on (recorder installed, calls timed)",
            breakwater_metrics(Metrics::On).layer().layer(OK),
            ok,
        ),
        Entry::new(
            "breakwater, counts only (recorder installed, calls not timed)",
            breakwater_metrics(Metrics::Counts).layer().layer(OK),
            ok,
        ),
    ]
}

/// The timeout rows: first around a service that answers at once, then around one that waits
/// once; in each half, the bare service, `breakwater::TimeoutLayer`, `tower::timeout`,
/// `tower_http::timeout` (which answers `408` instead of failing) and breakwater's over a
/// `SharedTimeout` (a registry's time limiter, which a reload changes). Needs a tokio runtime
/// entered.
pub(crate) fn timeouts() -> Vec<Entry> {
    let timeout = Duration::from_secs(30);
    let breakwater = breakwater::TimeoutLayer::new(timeout).without_override();
    let shared =
        breakwater::TimeoutLayer::shared(breakwater::timeout::SharedTimeout::new(Some(timeout)))
            .without_override();
    let tower = tower::timeout::TimeoutLayer::new(timeout);
    let tower_http =
        tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout);
    let ok = Expect::Success;
    vec![
        Entry::new("bare service", OK, ok),
        Entry::new("breakwater::TimeoutLayer", breakwater.layer(OK), ok),
        Entry::new("tower::timeout::TimeoutLayer", tower.layer(OK), ok),
        Entry::new(
            "tower_http::timeout::TimeoutLayer",
            tower_http.layer(OK),
            ok,
        ),
        Entry::new(
            "breakwater::TimeoutLayer, shared (a registry's)",
            shared.clone().layer(OK),
            ok,
        ),
        Entry::new("bare service, waits once", WaitsOnce, ok),
        Entry::new(
            "breakwater::TimeoutLayer, waits once",
            breakwater.layer(WaitsOnce),
            ok,
        ),
        Entry::new(
            "tower::timeout::TimeoutLayer, waits once",
            tower.layer(WaitsOnce),
            ok,
        ),
        Entry::new(
            "tower_http::timeout::TimeoutLayer, waits once",
            tower_http.layer(WaitsOnce),
            ok,
        ),
        Entry::new(
            "breakwater::TimeoutLayer, shared (a registry's), waits once",
            shared.layer(WaitsOnce),
            ok,
        ),
    ]
}

/// How many rows each half of [`timeouts`] has.
pub(crate) const TIMEOUT_HALF: usize = 5;
