//! Replacing a breaker's configuration at run time: handles, layers and services in use follow
//! it, subscribers stay, the window starts afresh, calls in flight are discarded.

mod support;

use std::time::Duration;

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::classify::{FailOnError, Outcome};
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
use support::{EventLog, assert_metrics, err, ok, send};
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker(clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder("pg")
        .count_window(10)
        .minimum_calls(10)
        .wait_duration_in_open(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn the_new_configuration_applies_to_every_handle_and_the_window_starts_afresh() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    let old_handle = b.clone();
    for _ in 0..5 {
        err(&b, &clock);
    }
    assert_metrics(&b, None, 0, 5, 5, 0);

    b.reconfigure(|c| {
        c.count_window(2)
            .minimum_calls(2)
            .wait_duration_in_open(Duration::from_secs(5))
    })
    .unwrap();
    assert_metrics(&b, None, 0, 0, 0, 0);
    assert_eq!(b.state(), CircuitState::Closed);
    // The handle made before is the same breaker, and sees the new configuration.
    assert_eq!(old_handle, b);
    err(&old_handle, &clock);
    ok(&old_handle, &clock);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().failure_rate, Some(50.0));
    // The new wait: 5 s, not 60.
    clock.advance(Duration::from_secs(5));
    assert!(old_handle.try_acquire().is_ok());
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_service_made_before_follows_and_its_layer_too() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    let layer = b.layer_with(FailOnError);
    let echo = service_fn(|fail: bool| async move {
        if fail {
            Err(std::io::Error::other("down"))
        } else {
            Ok(())
        }
    });
    let mut before = layer.layer(echo);
    send(&mut before, false).await.unwrap();

    b.reconfigure(|c| c.count_window(3).minimum_calls(3))
        .unwrap();
    let mut after = layer.layer(echo);
    for _ in 0..2 {
        send(&mut before, true).await.unwrap_err();
    }
    assert_eq!(b.state(), CircuitState::Closed);
    send(&mut after, true).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    // Both services are rejected by the new generation.
    for svc in [&mut before, &mut after] {
        let error = send(svc, false).await.unwrap_err();
        assert_eq!(
            error.downcast_ref::<CircuitOpen>().map(CircuitOpen::state),
            Some(CircuitState::Open)
        );
    }
    assert_eq!(b.metrics().not_permitted_calls, 2);
}

#[test]
fn subscribers_stay_subscribed_and_hear_of_it() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    let log = EventLog::transitions(&b);
    let stream = b.event_stream();
    b.transition_to(CircuitState::Open);
    b.reconfigure(|c| c.count_window(1).minimum_calls(1))
        .unwrap();
    err(&b, &clock);
    assert_eq!(
        log.kinds(),
        [
            EventKind::StateTransition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
                cause: TransitionCause::Manual,
            },
            EventKind::Reconfigured,
            EventKind::StateTransition {
                from: CircuitState::Open,
                to: CircuitState::Closed,
                cause: TransitionCause::Reconfigured,
            },
            EventKind::StateTransition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
                cause: TransitionCause::FailureRate(100.0),
            },
        ]
    );
    drop(stream);
}

#[test]
fn a_manual_state_is_kept_and_an_automatic_one_restarts_closed() {
    let clock = ManualClock::new();
    for (before, after) in [
        (CircuitState::Open, CircuitState::Closed),
        (CircuitState::HalfOpen, CircuitState::Closed),
        (CircuitState::ForcedOpen, CircuitState::ForcedOpen),
        (CircuitState::Disabled, CircuitState::Disabled),
        (CircuitState::MetricsOnly, CircuitState::MetricsOnly),
    ] {
        let b = breaker(&clock);
        b.transition_to(before);
        b.reconfigure(|c| c.count_window(5)).unwrap();
        assert_eq!(b.state(), after, "reconfigured in {before:?}");
    }
}

#[test]
fn calls_in_flight_are_discarded_and_probes_leak_nothing() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    let closed_call = b.try_acquire().unwrap();
    b.transition_to(CircuitState::HalfOpen);
    let probe = b.try_acquire().unwrap();
    b.reconfigure(|c| {
        c.count_window(2)
            .minimum_calls(2)
            .permitted_calls_in_half_open(1)
    })
    .unwrap();
    closed_call.record(Outcome::Failure);
    probe.record(Outcome::Failure);
    assert_metrics(&b, None, 0, 0, 0, 0);
    // The new generation's single half-open permit is whole.
    b.transition_to(CircuitState::HalfOpen);
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_permit_held_by_a_ready_service_is_decided_again() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    let mut svc = b
        .layer_with(FailOnError)
        .layer(service_fn(|()| async { Ok::<_, std::io::Error>(()) }));
    svc.ready().await.unwrap();
    b.reconfigure(|c| c.count_window(1).minimum_calls(1))
        .unwrap();
    b.force_open();
    // The permit came from the retired generation: the call is decided by the new one.
    let error = svc.call(()).await.unwrap_err();
    assert!(error.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn a_service_waiting_in_backpressure_mode_wakes_up() {
    let b = CircuitBreaker::builder("pg")
        .wait_duration_in_open(Duration::from_secs(3600))
        .build()
        .unwrap();
    b.transition_to(CircuitState::Open);
    let mut svc = b
        .layer_with(FailOnError)
        .backpressure()
        .layer(service_fn(|()| async { Ok::<_, std::io::Error>(7) }));
    let waiter = tokio::spawn(async move { send(&mut svc, ()).await.unwrap() });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    b.reconfigure(|c| c.count_window(5)).unwrap();
    assert_eq!(waiter.await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_service_waiting_on_a_forced_open_breaker_listens_to_the_new_generation() {
    let b = CircuitBreaker::builder("pg").build().unwrap();
    b.force_open();
    let mut svc = b
        .layer_with(FailOnError)
        .backpressure()
        .layer(service_fn(|()| async { Ok::<_, std::io::Error>(7) }));
    let waiter = tokio::spawn(async move { send(&mut svc, ()).await.unwrap() });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Still forced open after it: the service must now wait on the new generation.
    b.reconfigure(|c| c.count_window(5)).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    assert_eq!(b.state(), CircuitState::ForcedOpen);
    b.reset();
    let answer = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("the waiting service was never woken")
        .unwrap();
    assert_eq!(answer, 7);
}

#[test]
fn a_bad_configuration_changes_nothing() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    err(&b, &clock);
    let error = b
        .reconfigure(|c| c.failure_rate_threshold(150.0))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "circuit breaker `pg`: failure_rate_threshold is 150, but it must be a percentage \
         greater than 0 and at most 100"
    );
    let error = b.reconfigure(|c| c.clock(ManualClock::new())).unwrap_err();
    assert_eq!(error.setting(), "clock");
    assert_metrics(&b, None, 0, 1, 1, 0);
}

#[test]
fn manual_operations_through_an_old_handle_reach_the_new_generation() {
    let clock = ManualClock::new();
    let b = breaker(&clock);
    let old = b.clone();
    b.reconfigure(|c| c.count_window(3)).unwrap();
    b.reconfigure(|c| c.count_window(4)).unwrap();
    old.force_open();
    assert_eq!(b.state(), CircuitState::ForcedOpen);
    old.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    let log = EventLog::all(&old);
    err(&b, &clock);
    assert_eq!(log.count(|k| matches!(k, EventKind::Failure { .. })), 1);
}

#[test]
fn racing_reconfigurations_and_calls_settle_on_one_configuration() {
    let b = CircuitBreaker::builder("race")
        .count_window(50)
        .minimum_calls(50)
        .build()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (b, stop) = (b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut calls = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && calls < 1_000_000 {
                    if let Ok(permit) = b.try_acquire() {
                        permit.record(Outcome::Success);
                    }
                    calls += 1;
                }
            })
        })
        .collect();
    let reconfigurers: Vec<_> = (0..2)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                for size in 1..=50 {
                    b.reconfigure(|c| c.count_window(size * 2 + t).minimum_calls(1_000))
                        .unwrap();
                }
            })
        })
        .collect();
    for r in reconfigurers {
        r.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    // Whatever the order, the breaker works with one of the last two configurations.
    b.reset();
    for _ in 0..200 {
        b.try_acquire().unwrap().record(Outcome::Success);
    }
    let buffered = b.metrics().buffered_calls;
    assert!(buffered == 100 || buffered == 101, "{buffered}");
    assert_eq!(b.state(), CircuitState::Closed);
}
