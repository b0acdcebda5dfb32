//! What a coordinator of several instances (breakwater-fleet) asks of a breaker: opening on
//! the fleet's word, holding the move to half-open, probing or closing when told, a weak
//! handle. Time is tokio's, paused.

use std::time::Duration;

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::classify::Outcome;
use breakwater::{CircuitBreaker, CircuitState};
use tokio::time::sleep;

const WAIT: Duration = Duration::from_secs(30);

fn breaker(automatic: bool) -> CircuitBreaker {
    CircuitBreaker::builder("fleet-pg")
        .count_window(2)
        .minimum_calls(2)
        .permitted_calls_in_half_open(1)
        .wait_duration_in_open(WAIT)
        .automatic_transition_from_open_to_half_open(automatic)
        .build()
        .unwrap()
}

fn transitions(breaker: &CircuitBreaker) -> tokio::sync::mpsc::UnboundedReceiver<EventKind> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    breaker.on_state_transition(move |e| {
        let _ = tx.send(e.kind().clone());
    });
    rx
}

fn trip(breaker: &CircuitBreaker) {
    for _ in 0..2 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_fleet_opens_a_closed_breaker_for_the_time_it_gives_and_names_itself() {
    let breaker = breaker(false);
    let mut events = transitions(&breaker);
    assert!(breaker.open_by_fleet(Duration::from_millis(4_500), 2));
    assert_eq!(
        events.try_recv().unwrap(),
        EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            cause: TransitionCause::FleetQuorum { reporting: 2 },
        }
    );
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.retry_after(), Some(Duration::from_millis(4_500)));
    // Not the configured 30 s: the fleet's 4.5 s.
    sleep(Duration::from_millis(4_500)).await;
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // Only from closed: half-open, open, forced open are left alone.
    assert!(!breaker.open_by_fleet(WAIT, 3));
    breaker.transition_to(CircuitState::ForcedOpen);
    assert!(!breaker.open_by_fleet(WAIT, 3));
    assert_eq!(breaker.state(), CircuitState::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn a_held_breaker_stays_open_past_its_wait_until_told_to_probe() {
    let breaker = breaker(false);
    let mut events = transitions(&breaker);
    breaker.hold_probes(Duration::from_secs(60));
    assert!(breaker.probes_held());
    trip(&breaker);
    events.try_recv().unwrap();
    assert!(!breaker.start_probing(), "the wait is not over");
    assert!(!breaker.wait_over());
    sleep(WAIT).await;
    assert!(breaker.wait_over());
    // Held: rejected, and the rejection says when the hold ends.
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(breaker.state(), CircuitState::Open);
    // The coordinator grants this instance the probe.
    assert!(breaker.start_probing());
    assert_eq!(
        events.try_recv().unwrap(),
        EventKind::StateTransition {
            from: CircuitState::Open,
            to: CircuitState::HalfOpen,
            cause: TransitionCause::WaitElapsed,
        }
    );
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hold_that_is_not_renewed_lapses_and_the_breaker_probes_on_its_own() {
    let breaker = breaker(false);
    trip(&breaker);
    breaker.hold_probes(WAIT + Duration::from_secs(5));
    sleep(WAIT).await;
    assert!(breaker.try_acquire().is_err());
    sleep(Duration::from_secs(5)).await;
    assert!(!breaker.probes_held());
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // A zero lease ends a hold at once.
    breaker.hold_probes(Duration::from_secs(60));
    breaker.hold_probes(Duration::ZERO);
    assert!(!breaker.probes_held());
}

#[tokio::test(start_paused = true)]
async fn the_automatic_transition_waits_for_the_hold_too() {
    let breaker = breaker(true);
    let mut events = transitions(&breaker);
    breaker.hold_probes(Duration::from_secs(3_600));
    trip(&breaker);
    events.recv().await.unwrap();
    sleep(2 * WAIT).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(events.try_recv().is_err());
    assert!(breaker.start_probing());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn the_fleet_closes_only_a_breaker_whose_wait_is_over() {
    let breaker = breaker(false);
    let mut events = transitions(&breaker);
    breaker.hold_probes(Duration::from_secs(3_600));
    trip(&breaker);
    events.try_recv().unwrap();
    sleep(WAIT - Duration::from_millis(1)).await;
    assert!(!breaker.close_by_fleet());
    assert_eq!(breaker.state(), CircuitState::Open);
    sleep(Duration::from_millis(1)).await;
    assert!(breaker.close_by_fleet());
    assert_eq!(
        events.try_recv().unwrap(),
        EventKind::StateTransition {
            from: CircuitState::Open,
            to: CircuitState::Closed,
            cause: TransitionCause::FleetProbesSucceeded,
        }
    );
    assert!(breaker.try_acquire().is_ok());
    // Closed, half-open and the manual states are not "open with its wait over".
    assert!(!breaker.close_by_fleet());
    breaker.transition_to(CircuitState::ForcedOpen);
    assert!(!breaker.close_by_fleet());
}

#[tokio::test(start_paused = true)]
async fn a_reconfigured_breaker_keeps_its_hold_for_services_made_before() {
    use tower::{Layer, Service, ServiceExt};
    let breaker = breaker(false);
    // A service made before the reconfiguration holds the old generation.
    let mut svc = breaker
        .layer()
        .layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::io::Error>(http::Response::new(()))
        }));
    breaker.hold_probes(Duration::from_secs(3_600));
    breaker
        .reconfigure(|b| {
            b.count_window(2)
                .minimum_calls(2)
                .wait_duration_in_open(WAIT)
        })
        .unwrap();
    trip(&breaker);
    sleep(WAIT).await;
    let held = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    assert!(
        held.unwrap_err().is::<breakwater::CircuitOpen>(),
        "still held"
    );
    assert!(breaker.start_probing());
    let probe = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    assert_eq!(probe.unwrap().status(), 200);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[test]
fn a_weak_handle_does_not_keep_the_breaker() {
    let breaker = breaker(false);
    let weak = breaker.downgrade();
    let again = weak.upgrade().unwrap();
    assert_eq!(again, breaker);
    assert_eq!(format!("{weak:?}"), "WeakCircuitBreaker(\"fleet-pg\")");
    drop((breaker, again));
    assert!(weak.upgrade().is_none());
    assert_eq!(format!("{weak:?}"), "WeakCircuitBreaker(dropped)");
}

#[tokio::test(start_paused = true)]
async fn a_prober_that_gets_no_probe_done_is_put_back_open_for_its_wait() {
    let breaker = breaker(false);
    let mut events = transitions(&breaker);
    assert!(!breaker.end_probing(), "closed: nothing to end");
    breaker.hold_probes(Duration::from_secs(3_600));
    trip(&breaker);
    sleep(WAIT).await;
    assert!(breaker.start_probing());
    events.try_recv().unwrap();
    events.try_recv().unwrap();
    assert!(breaker.end_probing());
    assert_eq!(
        events.try_recv().unwrap(),
        EventKind::StateTransition {
            from: CircuitState::HalfOpen,
            to: CircuitState::Open,
            cause: TransitionCause::HalfOpenTimedOut,
        }
    );
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), Some(WAIT));
}
