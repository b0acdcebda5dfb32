//! What a breaker tells its subscribers and its log (resilience4j's event publisher tests, and
//! the tracing levels).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitState};
use support::{EventLog, call, err, ignored, ok};

fn window_of_one() -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("events")
        .count_window(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    (breaker, clock)
}

#[test]
fn outcomes_are_events_with_their_duration() {
    let (b, clock) = window_of_one();
    b.metrics_only();
    let log = EventLog::all(&b);
    call(&b, &clock, Outcome::Success, Duration::from_micros(1));
    call(&b, &clock, Outcome::Ignored, Duration::from_millis(2));
    call(&b, &clock, Outcome::Failure, Duration::from_millis(3));
    assert_eq!(
        log.kinds(),
        [
            EventKind::Success {
                elapsed: Some(Duration::from_micros(1)),
                slow: false
            },
            EventKind::Ignored {
                elapsed: Some(Duration::from_millis(2))
            },
            EventKind::Failure {
                elapsed: Some(Duration::from_millis(3)),
                slow: false
            },
            EventKind::ThresholdExceeded {
                cause: TransitionCause::FailureRate(100.0)
            },
        ]
    );
}

#[test]
fn a_second_failure_while_open_emits_no_second_transition() {
    let (b, clock) = window_of_one();
    let log = EventLog::all(&b);
    let first = b.try_acquire().unwrap();
    let second = b.try_acquire().unwrap();
    first.record(Outcome::Failure);
    second.record(Outcome::Failure);
    clock.advance(Duration::from_secs(1));
    assert_eq!(log.states(), [(CircuitState::Closed, CircuitState::Open)]);
    assert!(b.try_acquire().is_err());
    assert_eq!(
        log.count(|k| *k
            == EventKind::CallNotPermitted {
                state: CircuitState::Open
            }),
        1
    );
}

#[test]
fn a_disabled_breaker_emits_only_its_transitions() {
    let (b, clock) = window_of_one();
    let log = EventLog::all(&b);
    b.disable();
    err(&b, &clock);
    err(&b, &clock);
    ok(&b, &clock);
    ignored(&b, &clock);
    assert_eq!(
        log.kinds(),
        [EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Disabled,
            cause: TransitionCause::Manual
        }]
    );
}

#[test]
fn reset_is_an_event_even_when_closed() {
    let (b, _) = window_of_one();
    let log = EventLog::transitions(&b);
    b.reset();
    assert_eq!(log.kinds(), [EventKind::Reset]);
    b.force_open();
    b.reset();
    assert_eq!(
        log.kinds(),
        [
            EventKind::Reset,
            EventKind::StateTransition {
                from: CircuitState::Closed,
                to: CircuitState::ForcedOpen,
                cause: TransitionCause::Manual
            },
            EventKind::StateTransition {
                from: CircuitState::ForcedOpen,
                to: CircuitState::Closed,
                cause: TransitionCause::Reset
            },
            EventKind::Reset,
        ]
    );
}

#[test]
fn transition_subscribers_do_not_see_calls_and_unsubscribing_stops_delivery() {
    let (b, clock) = window_of_one();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    let id = b.on_state_transition(move |_| *seen.lock().unwrap() += 1);
    b.metrics_only();
    ok(&b, &clock);
    ok(&b, &clock);
    assert_eq!(*count.lock().unwrap(), 1);
    assert!(b.unsubscribe(id));
    assert!(!b.unsubscribe(id));
    b.reset();
    assert_eq!(*count.lock().unwrap(), 1);
}

#[test]
fn events_carry_the_breaker_name_and_the_clock_time() {
    let (b, clock) = window_of_one();
    let log = EventLog::transitions(&b);
    let start = breakwater::clock::Clock::now(&clock);
    clock.advance(Duration::from_secs(7));
    b.force_open();
    let event = log.events()[0].clone();
    assert_eq!(event.breaker(), "events");
    assert_eq!(event.at() - start, Duration::from_secs(7));
    assert_eq!(
        b.metrics().last_transition_at - start,
        Duration::from_secs(7)
    );
}

#[tokio::test]
async fn the_stream_receives_every_event_until_dropped() {
    let (b, clock) = window_of_one();
    let mut stream = b.event_stream();
    err(&b, &clock);
    assert!(b.try_acquire().is_err());
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(stream.recv().await.unwrap().kind().clone());
    }
    assert_eq!(
        kinds,
        [
            EventKind::Failure {
                elapsed: Some(Duration::ZERO),
                slow: false
            },
            EventKind::StateTransition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
                cause: TransitionCause::FailureRate(100.0)
            },
            EventKind::CallNotPermitted {
                state: CircuitState::Open
            },
        ]
    );
    drop(stream);
    // With no receiver and no subscriber left, calls are no longer timed for events.
    b.reset();
    let permit = b.try_acquire().unwrap();
    let log = EventLog::all(&b);
    permit.record(Outcome::Success);
    assert_eq!(
        log.kinds(),
        [EventKind::Success {
            elapsed: None,
            slow: false
        }]
    );
}
