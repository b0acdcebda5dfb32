//! resilience4j's sliding-window metric tests, through a breaker in metrics-only mode (so the
//! window can be watched without the breaker opening).

mod support;

use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use support::call;

const MS: Duration = Duration::from_millis(1);

fn watched(builder: breakwater::circuit_breaker::Builder) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = builder
        .minimum_calls(1)
        .slow_call_duration_threshold(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    breaker.metrics_only();
    (breaker, clock)
}

/// (calls, successful, failed, slow, failure rate) after each call.
fn numbers(b: &CircuitBreaker) -> (u64, u64, u64, u64, Option<f64>) {
    let m = b.metrics();
    (
        m.buffered_calls,
        m.successful_calls,
        m.failed_calls,
        m.slow_calls,
        m.failure_rate,
    )
}

#[test]
fn a_count_window_evicts_the_oldest_call() {
    let (b, clock) = watched(CircuitBreaker::builder("count").count_window(4));
    let mut seen = Vec::new();
    for outcome in [
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
    ] {
        call(&b, &clock, outcome, 100 * MS);
        seen.push(numbers(&b));
    }
    assert_eq!(
        seen,
        [
            (1, 0, 1, 0, Some(100.0)),
            (2, 1, 1, 0, Some(50.0)),
            (3, 2, 1, 0, Some(100.0 / 3.0)),
            (4, 3, 1, 0, Some(25.0)),
            // The failure leaves the window.
            (4, 4, 0, 0, Some(0.0)),
        ]
    );
}

#[test]
fn a_count_window_evicts_slow_calls_too() {
    let (b, clock) = watched(CircuitBreaker::builder("count").count_window(2));
    let slow = Duration::from_secs(10);
    call(&b, &clock, Outcome::Failure, slow);
    assert_eq!(numbers(&b), (1, 0, 1, 1, Some(100.0)));
    call(&b, &clock, Outcome::Success, slow);
    assert_eq!(numbers(&b), (2, 1, 1, 2, Some(50.0)));
    call(&b, &clock, Outcome::Success, 100 * MS);
    assert_eq!(numbers(&b), (2, 2, 0, 1, Some(0.0)));
    call(&b, &clock, Outcome::Success, 100 * MS);
    assert_eq!(numbers(&b), (2, 2, 0, 0, Some(0.0)));
    assert_eq!(b.metrics().slow_call_rate, Some(0.0));
}

#[test]
fn the_slow_call_rate_counts_slow_calls_failed_or_not() {
    let (b, clock) = watched(CircuitBreaker::builder("count").count_window(5));
    call(&b, &clock, Outcome::Success, Duration::from_secs(10));
    call(&b, &clock, Outcome::Failure, Duration::from_secs(10));
    for _ in 0..3 {
        call(&b, &clock, Outcome::Success, 100 * MS);
    }
    let m = b.metrics();
    assert_eq!(
        (
            m.buffered_calls,
            m.successful_calls,
            m.slow_calls,
            m.slow_call_rate
        ),
        (5, 4, 2, Some(40.0))
    );
}

#[test]
fn a_count_window_keeps_exactly_the_last_calls() {
    // resilience4j's CircuitBreakerMetricsTest: a window of 10 with a minimum of 10.
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("count")
        .count_window(10)
        .minimum_calls(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    b.metrics_only();
    let record = |outcome, n| {
        for _ in 0..n {
            call(&b, &clock, outcome, Duration::ZERO);
        }
    };
    record(Outcome::Success, 2);
    record(Outcome::Failure, 2);
    let m = b.metrics();
    assert_eq!(
        (
            m.buffered_calls,
            m.failed_calls,
            m.successful_calls,
            m.failure_rate
        ),
        (4, 2, 2, None)
    );
    record(Outcome::Failure, 4);
    record(Outcome::Success, 4);
    // 12 calls; the last 10 are 6 failures and 4 successes.
    let m = b.metrics();
    assert_eq!(
        (
            m.buffered_calls,
            m.failed_calls,
            m.successful_calls,
            m.failure_rate
        ),
        (10, 6, 4, Some(60.0))
    );
    record(Outcome::Success, 3);
    assert_eq!(b.metrics().failure_rate, Some(30.0));
}

#[test]
fn a_time_window_forgets_a_second_after_its_span() {
    // resilience4j's shouldClearSlidingTimeWindowMetrics, a 5-second window.
    let (b, clock) = watched(CircuitBreaker::builder("time").time_window(Duration::from_secs(5)));
    call(&b, &clock, Outcome::Failure, Duration::ZERO);
    assert_eq!(numbers(&b), (1, 0, 1, 0, Some(100.0)));
    clock.advance(100 * MS);
    call(&b, &clock, Outcome::Success, Duration::ZERO);
    assert_eq!(numbers(&b), (2, 1, 1, 0, Some(50.0)));
    clock.advance(700 * MS);
    // Slow: a second and a half, recorded at 2.3 s.
    call(&b, &clock, Outcome::Failure, 1_500 * MS);
    assert_eq!(numbers(&b), (3, 1, 2, 1, Some(200.0 / 3.0)));
    clock.advance(Duration::from_millis(2_600));
    // 4.9 s: second 0 is still in the window.
    assert_eq!(numbers(&b), (3, 1, 2, 1, Some(200.0 / 3.0)));
    clock.advance(100 * MS);
    // 5.0 s: the two calls of second 0 have left.
    assert_eq!(numbers(&b), (1, 0, 1, 1, Some(100.0)));
    clock.advance(2 * Duration::from_secs(1));
    // 7.0 s: the call of second 2 has left too.
    assert_eq!(numbers(&b), (0, 0, 0, 0, None));
    call(&b, &clock, Outcome::Success, Duration::ZERO);
    assert_eq!(numbers(&b), (1, 1, 0, 0, Some(0.0)));
    clock.advance(Duration::from_secs(5));
    call(&b, &clock, Outcome::Success, Duration::ZERO);
    assert_eq!(numbers(&b), (1, 1, 0, 0, Some(0.0)));
}

#[test]
fn a_time_window_slides_by_whole_seconds() {
    // resilience4j's testSlidingTimeWindowMetrics: (calls, successful, failed) after each call.
    let (b, clock) = watched(CircuitBreaker::builder("time").time_window(Duration::from_secs(5)));
    let steps = [
        (0, Outcome::Failure, (1, 0, 1)),
        (100, Outcome::Success, (2, 1, 1)),
        (100, Outcome::Success, (3, 2, 1)),
        (1_000, Outcome::Success, (4, 3, 1)),
        (1_000, Outcome::Success, (5, 4, 1)),
        (1_000, Outcome::Failure, (6, 4, 2)),
        (1_000, Outcome::Success, (7, 5, 2)),
        // 5.2 s: second 0 (a failure and two successes) leaves.
        (1_000, Outcome::Success, (5, 4, 1)),
        // 6.2 s: second 1 leaves.
        (1_000, Outcome::Success, (5, 4, 1)),
        // 11.2 s: everything before second 7 has left.
        (5_000, Outcome::Success, (1, 1, 0)),
    ];
    for (i, (advance_ms, outcome, expected)) in steps.into_iter().enumerate() {
        clock.advance(advance_ms * MS);
        call(&b, &clock, outcome, Duration::ZERO);
        let m = b.metrics();
        assert_eq!(
            (m.buffered_calls, m.successful_calls, m.failed_calls),
            expected,
            "step {i}"
        );
    }
}

#[test]
fn a_time_window_rate_needs_the_minimum_within_the_span() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("time")
        .time_window(Duration::from_secs(10))
        .minimum_calls(3)
        .clock(clock.clone())
        .build()
        .unwrap();
    call(&b, &clock, Outcome::Failure, Duration::ZERO);
    call(&b, &clock, Outcome::Failure, Duration::ZERO);
    clock.advance(Duration::from_secs(10));
    // The two failures left before the third call: 1 failure of 1 call, below the minimum.
    call(&b, &clock, Outcome::Failure, Duration::ZERO);
    assert_eq!(b.state(), breakwater::CircuitState::Closed);
    assert_eq!(b.metrics().failure_rate, None);
    call(&b, &clock, Outcome::Success, Duration::ZERO);
    call(&b, &clock, Outcome::Failure, Duration::ZERO);
    // 2 of 3 = 67%.
    assert_eq!(b.state(), breakwater::CircuitState::Open);
}

#[test]
fn the_minimum_is_capped_at_the_count_window_size() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("small")
        .count_window(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    // The default minimum of 100 is capped at 1: one failure is 100%.
    call(&b, &clock, Outcome::Failure, Duration::ZERO);
    assert_eq!(b.state(), breakwater::CircuitState::Open);
}
