//! resilience4j's `CircuitBreakerStateMachineTest`, ported: the same configuration, calls, clock
//! moves and expected numbers. Where breakwater's documented semantics differ, the test says so.

mod support;

use std::time::Duration;

use breakwater::circuit_breaker::{EventKind, ExponentialBackoff, TransitionCause};
use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitState};
use support::{EventLog, assert_metrics, call, err, ignored, ok};

const SECOND: Duration = Duration::from_secs(1);

/// resilience4j's set-up: a 20 s time window with 5 minimum calls, 50% thresholds, calls over
/// 4 s are slow, 4 half-open probes, a 5 s wait, at most 1 s in half-open.
fn breaker() -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("testName")
        .failure_rate_threshold(50.0)
        .permitted_calls_in_half_open(4)
        .slow_call_duration_threshold(Duration::from_secs(4))
        .slow_call_rate_threshold(50.0)
        .max_wait_in_half_open(SECOND)
        .time_window(Duration::from_secs(20))
        .minimum_calls(5)
        .wait_duration_in_open(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .unwrap();
    (breaker, clock)
}

fn half_open() -> (CircuitBreaker, ManualClock) {
    let (b, clock) = breaker();
    b.transition_to(CircuitState::Open);
    b.transition_to(CircuitState::HalfOpen);
    (b, clock)
}

#[test]
fn has_its_name() {
    assert_eq!(breaker().0.name(), "testName");
}

#[test]
fn rejects_and_counts_calls_when_open() {
    let (b, _) = breaker();
    b.transition_to(CircuitState::Open);
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), CircuitState::Open);
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(b.metrics().not_permitted_calls, 1);
}

#[test]
fn rejects_and_counts_calls_when_forced_open() {
    let (b, _) = breaker();
    b.force_open();
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(
        (rejected.state(), rejected.retry_after()),
        (CircuitState::ForcedOpen, None)
    );
    assert_eq!(b.metrics().not_permitted_calls, 1);
}

#[test]
fn a_permit_given_back_can_be_taken_again() {
    let (b, _) = half_open();
    let held: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().is_err());
    assert!(b.try_acquire().is_err());
    drop(held.into_iter().next());
    assert!(b.try_acquire().is_ok());
}

#[test]
fn rejects_and_counts_calls_beyond_the_half_open_permits() {
    let (b, _) = half_open();
    let _held: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(
        (rejected.state(), rejected.retry_after()),
        (CircuitState::HalfOpen, None)
    );
    assert_eq!(b.metrics().not_permitted_calls, 1);
}

#[test]
fn permits_only_four_calls_in_each_half_open_state() {
    let (b, _) = breaker();
    assert_metrics(&b, None, 0, 0, 0, 0);
    b.transition_to(CircuitState::Open);
    b.transition_to(CircuitState::HalfOpen);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let first: Vec<_> = (0..6).map(|_| b.try_acquire()).collect();
    assert_eq!(
        first.iter().map(Result::is_ok).collect::<Vec<_>>(),
        [true, true, true, true, false, false]
    );
    // A new half-open state has fresh permits, whatever the old ones did.
    b.transition_to(CircuitState::Open);
    b.transition_to(CircuitState::HalfOpen);
    let second: Vec<_> = (0..6).map(|_| b.try_acquire()).collect();
    assert_eq!(
        second.iter().map(Result::is_ok).collect::<Vec<_>>(),
        [true, true, true, true, false, false]
    );
}

#[test]
fn opens_when_the_failure_rate_reaches_the_threshold_in_a_time_window() {
    let (b, clock) = breaker();
    for outcome in [
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
        Outcome::Failure,
    ] {
        call(&b, &clock, outcome, Duration::ZERO);
        clock.advance(SECOND);
    }
    err(&b, &clock);
    // 2 of 5 = 40%.
    assert_eq!(b.state(), CircuitState::Closed);
    clock.advance(SECOND);
    assert_eq!(b.state(), CircuitState::Closed);
    err(&b, &clock);
    // 3 of 6 = 50%: the threshold is inclusive.
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().failure_rate, Some(50.0));
}

#[test]
fn opens_after_the_failure_rate_is_exceeded_and_keeps_that_window_while_open() {
    let (b, clock) = breaker();
    let log = EventLog::transitions(&b);
    assert_metrics(&b, None, 0, 0, 0, 0);
    err(&b, &clock);
    assert_metrics(&b, None, 0, 1, 1, 0);
    err(&b, &clock);
    assert_metrics(&b, None, 0, 2, 2, 0);
    err(&b, &clock);
    assert_metrics(&b, None, 0, 3, 3, 0);
    ok(&b, &clock);
    // 4 calls are fewer than the minimum of 5: no rate yet.
    assert_metrics(&b, None, 1, 4, 3, 0);
    assert_eq!(b.state(), CircuitState::Closed);
    ok(&b, &clock);
    assert_eq!(b.state(), CircuitState::Open);
    assert_metrics(&b, Some(60.0), 2, 5, 3, 0);
    assert_eq!(
        log.kinds(),
        [EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            cause: TransitionCause::FailureRate(60.0),
        }]
    );
    assert!(b.try_acquire().is_err());
    assert_metrics(&b, Some(60.0), 2, 5, 3, 1);
}

#[test]
fn opens_after_the_slow_call_rate_is_exceeded() {
    let (b, clock) = breaker();
    let slow = Duration::from_secs(5);
    let fast = Duration::from_millis(100);
    call(&b, &clock, Outcome::Failure, slow);
    call(&b, &clock, Outcome::Success, slow);
    call(&b, &clock, Outcome::Failure, fast);
    call(&b, &clock, Outcome::Success, fast);
    assert_eq!(b.state(), CircuitState::Closed);
    call(&b, &clock, Outcome::Success, slow);
    // 3 of 5 slow = 60%, while 2 of 5 failed = 40% stays under its threshold.
    assert_eq!(b.state(), CircuitState::Open);
    let m = b.metrics();
    assert_eq!(
        (
            m.buffered_calls,
            m.slow_calls,
            m.slow_call_rate,
            m.failure_rate
        ),
        (5, 3, Some(60.0), Some(40.0))
    );
}

#[test]
fn a_call_exactly_as_long_as_the_slow_threshold_is_not_slow() {
    let (b, clock) = breaker();
    for _ in 0..5 {
        call(&b, &clock, Outcome::Success, Duration::from_secs(4));
    }
    assert_eq!(b.metrics().slow_calls, 0);
    call(
        &b,
        &clock,
        Outcome::Success,
        Duration::from_secs(4) + Duration::from_nanos(1),
    );
    assert_eq!(b.metrics().slow_calls, 1);
}

#[test]
fn moves_to_half_open_at_the_first_call_after_the_wait() {
    let (b, clock) = breaker();
    b.transition_to(CircuitState::Open);
    assert_metrics(&b, None, 0, 0, 0, 0);
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_secs(3));
    assert_eq!(b.state(), CircuitState::Open);
    assert!(b.try_acquire().is_err());
    assert_metrics(&b, None, 0, 0, 0, 2);
    clock.advance(Duration::from_secs(2) - Duration::from_millis(1));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    // The wait is over, but the move is lazy: still open until a call attempt.
    assert_eq!(b.state(), CircuitState::Open);
    assert!(b.try_acquire().is_ok());
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // Unlike resilience4j, rejections count from the last opening through half-open.
    assert_metrics(&b, None, 0, 0, 0, 3);
}

#[test]
fn waits_longer_after_each_consecutive_opening_with_a_backoff() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder("backoff")
        .count_window(5)
        .permitted_calls_in_half_open(4)
        .wait_backoff_in_open(
            ExponentialBackoff::new(Duration::from_secs(5), Duration::from_secs(60))
                .multiplier(1.5),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    b.transition_to(CircuitState::Open);
    assert_eq!(b.metrics().retry_after, Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(3));
    assert!(b.try_acquire().is_err());
    assert_metrics(&b, None, 0, 0, 0, 1);
    clock.advance(Duration::from_secs(3));
    assert!(b.try_acquire().is_ok());
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // The second opening in a row waits 5 s x 1.5.
    b.transition_to(CircuitState::Open);
    assert_eq!(b.metrics().retry_after, Some(Duration::from_millis(7_500)));
    clock.advance(Duration::from_millis(7_499));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    assert!(b.try_acquire().is_ok());
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // The third waits 11.25 s; closing starts the count again.
    b.transition_to(CircuitState::Open);
    assert_eq!(b.metrics().retry_after, Some(Duration::from_millis(11_250)));
    b.transition_to(CircuitState::Closed);
    b.transition_to(CircuitState::Open);
    assert_eq!(b.metrics().retry_after, Some(Duration::from_secs(5)));
}

#[test]
fn opens_again_when_the_probes_fail() {
    let (b, clock) = half_open();
    assert_metrics(&b, None, 0, 0, 0, 0);
    err(&b, &clock);
    err(&b, &clock);
    ok(&b, &clock);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_metrics(&b, None, 1, 3, 2, 0);
    err(&b, &clock);
    assert_eq!(b.state(), CircuitState::Open);
    // The open state shows the probes' window: 3 of 4 failed.
    assert_metrics(&b, Some(75.0), 1, 4, 3, 0);
}

#[test]
fn opens_again_when_the_probes_are_slow() {
    let (b, clock) = half_open();
    for _ in 0..3 {
        call(&b, &clock, Outcome::Success, Duration::from_secs(5));
    }
    call(&b, &clock, Outcome::Success, SECOND);
    assert_eq!(b.state(), CircuitState::Open);
    let m = b.metrics();
    assert_eq!(
        (m.slow_calls, m.slow_call_rate, m.failure_rate),
        (3, Some(75.0), Some(0.0))
    );
}

#[test]
fn closes_when_the_probes_succeed_and_starts_a_fresh_window() {
    let (b, clock) = half_open();
    let log = EventLog::transitions(&b);
    err(&b, &clock);
    ok(&b, &clock);
    ok(&b, &clock);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    ok(&b, &clock);
    // 1 of 4 = 25%.
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        log.kinds(),
        [EventKind::StateTransition {
            from: CircuitState::HalfOpen,
            to: CircuitState::Closed,
            cause: TransitionCause::ProbesSucceeded,
        }]
    );
    assert_metrics(&b, None, 0, 0, 0, 0);
    ok(&b, &clock);
    assert_metrics(&b, None, 1, 1, 0, 0);
}

#[test]
fn reset_clears_the_window() {
    let (b, clock) = breaker();
    assert_metrics(&b, None, 0, 0, 0, 0);
    ok(&b, &clock);
    err(&b, &clock);
    assert_metrics(&b, None, 1, 2, 1, 0);
    b.reset();
    assert_metrics(&b, None, 0, 0, 0, 0);
}

#[test]
fn disabled_lets_every_call_through_and_records_nothing() {
    let (b, clock) = breaker();
    b.disable();
    assert_eq!(b.state(), CircuitState::Disabled);
    let log = EventLog::all(&b);
    ok(&b, &clock);
    for _ in 0..4 {
        err(&b, &clock);
    }
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_metrics(&b, None, 0, 0, 0, 0);
    assert_eq!(log.kinds(), []);
}

#[test]
fn forced_open_rejects_every_call_however_long_it_waits() {
    let (b, clock) = breaker();
    b.force_open();
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_secs(6));
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), CircuitState::ForcedOpen);
    assert_metrics(&b, None, 0, 0, 0, 2);
}

#[test]
fn an_ignored_outcome_gives_its_half_open_permit_back() {
    let (b, clock) = half_open();
    ok(&b, &clock);
    assert_metrics(&b, None, 1, 1, 0, 0);
    ok(&b, &clock);
    assert_metrics(&b, None, 2, 2, 0, 0);
    ok(&b, &clock);
    assert_metrics(&b, None, 3, 3, 0, 0);
    ignored(&b, &clock);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_metrics(&b, None, 3, 3, 0, 0);
    // The fourth permit is free again.
    err(&b, &clock);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_metrics(&b, None, 0, 0, 0, 0);
}

#[test]
fn ignored_outcomes_never_use_up_the_probes() {
    let (b, clock) = half_open();
    for _ in 0..4 {
        ignored(&b, &clock);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_metrics(&b, None, 0, 0, 0, 0);
    }
    for _ in 0..3 {
        ok(&b, &clock);
        assert_eq!(b.state(), CircuitState::HalfOpen);
    }
    assert_metrics(&b, None, 3, 3, 0, 0);
    ok(&b, &clock);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_metrics(&b, None, 0, 0, 0, 0);
}

#[test]
fn any_state_can_be_entered_by_hand() {
    // resilience4j forbids closed -> half-open and metrics-only -> open; breakwater leaves the
    // choice to the operator.
    let states = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::Disabled,
        CircuitState::ForcedOpen,
        CircuitState::MetricsOnly,
    ];
    for from in states {
        for to in states {
            let (b, _) = breaker();
            b.transition_to(from);
            b.transition_to(to);
            assert_eq!(b.state(), to, "{from} -> {to}");
        }
    }
}

#[test]
fn reset_closes_an_open_breaker() {
    let (b, _) = breaker();
    b.transition_to(CircuitState::Open);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert!(b.try_acquire().is_ok());
}

#[test]
fn reset_clears_a_closed_breaker() {
    let (b, clock) = breaker();
    ok(&b, &clock);
    ok(&b, &clock);
    assert_eq!(b.metrics().successful_calls, 2);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().successful_calls, 0);
}

#[test]
fn metrics_only_starts_a_fresh_window() {
    let (b, clock) = breaker();
    ok(&b, &clock);
    ok(&b, &clock);
    assert_eq!(b.metrics().successful_calls, 2);
    b.metrics_only();
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_eq!(b.metrics().successful_calls, 0);
}

#[test]
fn metrics_only_records_but_never_opens_and_reports_the_threshold_once() {
    let (b, clock) = breaker();
    b.metrics_only();
    assert!(b.try_acquire().is_ok());
    assert_metrics(&b, None, 0, 0, 0, 0);
    let log = EventLog::all(&b);
    for n in 1..=3 {
        err(&b, &clock);
        assert_eq!(b.state(), CircuitState::MetricsOnly);
        assert_metrics(&b, None, 0, n, n, 0);
    }
    ok(&b, &clock);
    assert_metrics(&b, None, 1, 4, 3, 0);
    ok(&b, &clock);
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_metrics(&b, Some(60.0), 2, 5, 3, 0);
    err(&b, &clock);
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    let failure = |k: &EventKind| matches!(k, EventKind::Failure { .. });
    let success = |k: &EventKind| matches!(k, EventKind::Success { .. });
    let transition = |k: &EventKind| matches!(k, EventKind::StateTransition { .. });
    assert_eq!(
        (
            log.count(failure),
            log.count(success),
            log.count(transition)
        ),
        (4, 2, 0)
    );
    assert_eq!(
        log.count(|k| matches!(k, EventKind::ThresholdExceeded { .. })),
        1
    );
    assert!(log.kinds().contains(&EventKind::ThresholdExceeded {
        cause: TransitionCause::FailureRate(60.0)
    }));
}

#[test]
fn a_transition_to_the_same_state_emits_nothing() {
    let (b, _) = breaker();
    let log = EventLog::transitions(&b);
    let mut seen = Vec::new();
    for state in [
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::Disabled,
        CircuitState::MetricsOnly,
        CircuitState::ForcedOpen,
        CircuitState::Closed,
    ] {
        b.transition_to(state);
        seen.push(log.states().len());
        b.transition_to(state);
        seen.push(log.states().len());
    }
    assert_eq!(seen, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]);
}

#[test]
fn a_half_open_state_whose_probes_hang_opens_again_after_its_max_wait() {
    let (b, clock) = half_open();
    let log = EventLog::transitions(&b);
    let hung: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    clock.advance(SECOND - Duration::from_millis(1));
    assert_eq!(b.try_acquire().unwrap_err().state(), CircuitState::HalfOpen);
    clock.advance(Duration::from_millis(1));
    // The next call finds no permit and the half-open state expired: open again, rejected.
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), CircuitState::Open);
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(
        log.kinds(),
        [EventKind::StateTransition {
            from: CircuitState::HalfOpen,
            to: CircuitState::Open,
            cause: TransitionCause::HalfOpenTimedOut,
        }]
    );
    // The hung probes finish later: their outcomes belong to the old state and are discarded.
    for permit in hung {
        permit.record(Outcome::Success);
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn probes_of_an_earlier_half_open_state_neither_count_nor_return_permits() {
    let (b, clock) = half_open();
    let mut hung: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    clock.advance(SECOND);
    assert_eq!(b.try_acquire().unwrap_err().state(), CircuitState::Open);
    clock.advance(Duration::from_secs(5));
    // A new half-open state: its first permit taken by this call.
    let fresh = b.try_acquire().unwrap();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // The old probes end now: failures that would open it, and cancellations that would free
    // permits it never gave.
    hung.pop().unwrap().record(Outcome::Failure);
    hung.pop().unwrap().record(Outcome::Failure);
    hung.pop().unwrap().record(Outcome::Ignored);
    drop(hung);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_metrics(&b, None, 0, 0, 0, 1);
    let taken: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().is_err());
    fresh.record(Outcome::Success);
    for permit in taken {
        permit.record(Outcome::Success);
    }
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_failure_with_retry_after_opens_the_breaker_at_once_for_that_long() {
    let (b, clock) = breaker();
    let log = EventLog::transitions(&b);
    ok(&b, &clock);
    // Below the minimum of 5 calls, but the callee asked for 42 s without calls.
    call(
        &b,
        &clock,
        Outcome::FailureFor(Duration::from_secs(42)),
        Duration::ZERO,
    );
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().retry_after, Some(Duration::from_secs(42)));
    assert_metrics(&b, None, 1, 2, 1, 0);
    assert_eq!(
        log.kinds(),
        [EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            cause: TransitionCause::RetryAfter(Duration::from_secs(42)),
        }]
    );
    clock.advance(Duration::from_secs(42) - Duration::from_millis(1));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    assert!(b.try_acquire().is_ok());
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[test]
fn a_probe_with_retry_after_opens_the_breaker_again_for_that_long() {
    let (b, clock) = half_open();
    ok(&b, &clock);
    call(
        &b,
        &clock,
        Outcome::FailureFor(Duration::from_secs(20)),
        Duration::ZERO,
    );
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().retry_after, Some(Duration::from_secs(20)));
    // A year is the longest wait a callee gets.
    let (b, clock) = breaker();
    call(
        &b,
        &clock,
        Outcome::FailureFor(Duration::from_secs(10 * 365 * 24 * 3600)),
        Duration::ZERO,
    );
    assert_eq!(
        b.metrics().retry_after,
        Some(Duration::from_secs(365 * 24 * 3600))
    );
}

#[test]
fn metrics_only_counts_a_retry_after_as_a_failure_and_stays() {
    let (b, clock) = breaker();
    b.metrics_only();
    call(
        &b,
        &clock,
        Outcome::FailureFor(Duration::from_secs(20)),
        Duration::ZERO,
    );
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_metrics(&b, None, 0, 1, 1, 0);
}

#[test]
fn an_outcome_hundreds_of_transitions_old_is_discarded() {
    // 201 transitions put the window's 8-bit generation tag where the old call's tag looks
    // newer than the current one: only the epoch can tell it is stale.
    for window in [
        CircuitBreaker::builder("count").count_window(5),
        CircuitBreaker::builder("time").time_window(Duration::from_secs(5)),
    ] {
        let clock = ManualClock::new();
        let b = window
            .minimum_calls(5)
            .clock(clock.clone())
            .build()
            .unwrap();
        let old = b.try_acquire().unwrap();
        for _ in 0..100 {
            b.transition_to(CircuitState::Open);
            b.transition_to(CircuitState::HalfOpen);
        }
        b.transition_to(CircuitState::Closed);
        old.record(Outcome::Failure);
        assert_metrics(&b, None, 0, 0, 0, 0);
        // The window still works: five fresh failures open the breaker.
        for _ in 0..5 {
            err(&b, &clock);
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert_metrics(&b, Some(100.0), 0, 5, 5, 0);
    }
}
