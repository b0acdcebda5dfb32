//! The opt-in automatic transition from open to half-open, on tokio's timer.

use std::time::Duration;

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitState};

const WAIT: Duration = Duration::from_secs(30);

fn automatic() -> breakwater::circuit_breaker::Builder {
    CircuitBreaker::builder("auto")
        .count_window(2)
        .wait_duration_in_open(WAIT)
        .automatic_transition_from_open_to_half_open(true)
}

fn trip(breaker: &CircuitBreaker) {
    for _ in 0..2 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_moves_to_half_open_by_itself_when_the_wait_ends() {
    let breaker = automatic().build().unwrap();
    let (tx, mut transitions) = tokio::sync::mpsc::unbounded_channel();
    breaker.on_state_transition(move |e| {
        let _ = tx.send(e.kind().clone());
    });
    trip(&breaker);
    let opened = tokio::time::Instant::now();
    // Rejections before the end of the wait, with the true time left.
    tokio::time::sleep(WAIT - Duration::from_millis(1)).await;
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.retry_after(), Some(Duration::from_millis(1)));
    assert_eq!(breaker.state(), CircuitState::Open);
    // No call is needed for the move.
    transitions.recv().await.unwrap();
    assert_eq!(
        transitions.recv().await.unwrap(),
        EventKind::StateTransition {
            from: CircuitState::Open,
            to: CircuitState::HalfOpen,
            cause: TransitionCause::WaitElapsed,
        }
    );
    assert_eq!(opened.elapsed(), WAIT);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_reset_cancels_the_pending_move() {
    let breaker = automatic().build().unwrap();
    trip(&breaker);
    breaker.reset();
    tokio::time::sleep(2 * WAIT).await;
    assert_eq!(breaker.state(), CircuitState::Closed);
    // A new opening gets a new timer (looked at just after it, not at the same instant).
    trip(&breaker);
    tokio::time::sleep(WAIT + Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[test]
fn when_the_timers_runtime_shuts_down_the_move_is_lazy_again() {
    let breaker = automatic().build().unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    first.block_on(async { trip(&breaker) });
    // The timer task is dropped with its runtime, before it could fire.
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    second.block_on(async {
        // The wait ends on a whole millisecond, rounded up from when the breaker opened.
        tokio::time::advance(WAIT + Duration::from_millis(1)).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        // The first call after the wait moves it, as without the automatic transition.
        assert!(breaker.try_acquire().is_ok());
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    });
}

#[tokio::test(start_paused = true)]
async fn a_custom_clock_still_decides_when_the_wait_ends() {
    let clock = ManualClock::new();
    let breaker = automatic().clock(clock.clone()).build().unwrap();
    trip(&breaker);
    clock.advance(WAIT - Duration::from_millis(1));
    assert!(breaker.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    // The timer sleeps on tokio's clock, which has not moved; the breaker's own clock says the
    // wait is over, and the next call moves it.
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[test]
fn without_a_runtime_the_move_stays_lazy() {
    let clock = ManualClock::new();
    let breaker = automatic().clock(clock.clone()).build().unwrap();
    trip(&breaker);
    clock.advance(WAIT);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[test]
fn backpressure_past_the_deadline_waits_quietly_for_the_timer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, Service};

    let breaker = automatic().build().unwrap();
    // Opened in a runtime that is never driven: its timer stays pending, so the breaker keeps
    // rejecting past the deadline without reading the clock.
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    {
        let _in_idle = idle.enter();
        breaker.transition_to(CircuitState::Open);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = polls.clone();
    let mut svc = breaker
        .layer_with(breakwater::classify::FailOnError)
        .backpressure()
        .layer(tower::service_fn(|()| async {
            Ok::<_, std::io::Error>(())
        }));
    let waiter = runtime.spawn(async move {
        std::future::poll_fn(|cx| {
            counted.fetch_add(1, Ordering::SeqCst);
            svc.poll_ready(cx)
        })
        .await
        .unwrap();
    });
    runtime.block_on(async {
        // Past the deadline, then a hundred turns of the scheduler: a waiter that spun on the
        // clock would be polled on every one of them.
        tokio::time::advance(WAIT + Duration::from_secs(5)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
    });
    let before = polls.load(Ordering::SeqCst);
    assert!(before <= 3, "polled {before} times while waiting");
    // The timer's runtime goes away: the waiter is told, and decides by the clock.
    drop(idle);
    runtime.block_on(async {
        waiter.await.unwrap();
    });
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}
