//! Many callers at once, on a multi-threaded runtime. Time comes from a `ManualClock`: tokio's
//! paused clock works on a current-thread runtime only.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use breakwater::circuit_breaker::EventKind;
use breakwater::classify::{FailOnError, Outcome};
use breakwater::clock::ManualClock;
use breakwater::{BoxError, CircuitBreaker, CircuitOpen, CircuitState};
use support::EventLog;
use tokio::sync::{Barrier, mpsc, watch};
use tower::{Layer, Service, ServiceExt};

const CALLERS: usize = 48;
const PERMITS: u32 = 5;

fn breaker(clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder("race")
        .count_window(20)
        .minimum_calls(20)
        .permitted_calls_in_half_open(PERMITS)
        .wait_duration_in_open(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[derive(Debug, PartialEq)]
enum Seen {
    Admitted,
    Rejected,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_racing_at_the_end_of_the_wait_get_exactly_the_permits() {
    for round in 0..40 {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        let log = EventLog::transitions(&breaker);
        breaker.transition_to(CircuitState::Open);
        clock.advance(Duration::from_secs(10));

        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let admitted = seen_tx.clone();
        let backend = tower::service_fn(move |()| {
            let admitted = admitted.clone();
            let mut released = released.clone();
            async move {
                admitted.send(Seen::Admitted).unwrap();
                released.wait_for(|r| *r).await.unwrap();
                Ok::<_, BoxError>(())
            }
        });
        let svc = breaker.layer_with(FailOnError).layer(backend);
        let start = Arc::new(Barrier::new(CALLERS));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (mut svc, start, seen_tx) = (svc.clone(), start.clone(), seen_tx.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let result = svc.ready().await.unwrap().call(()).await;
                    if let Err(e) = result {
                        assert!(e.is::<CircuitOpen>());
                        seen_tx.send(Seen::Rejected).unwrap();
                    }
                })
            })
            .collect();
        let mut tally = (0, 0);
        for _ in 0..CALLERS {
            let one = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
            match one.expect("every caller is admitted or rejected").unwrap() {
                Seen::Admitted => tally.0 += 1,
                Seen::Rejected => tally.1 += 1,
            }
        }
        assert_eq!(
            tally,
            (PERMITS as usize, CALLERS - PERMITS as usize),
            "round {round}"
        );
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        // Exactly one caller made the move to half-open.
        assert_eq!(
            log.states(),
            [
                (CircuitState::Closed, CircuitState::Open),
                (CircuitState::Open, CircuitState::HalfOpen)
            ]
        );
        release.send(true).unwrap();
        for caller in callers {
            caller.await.unwrap();
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "round {round}");
        assert_eq!(
            breaker.metrics().not_permitted_calls,
            (CALLERS - PERMITS as usize) as u64
        );
    }
}

/// Lets `n` other tasks run.
async fn turns(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// A small deterministic generator for the storm's timings.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_cancelled_calls_leaks_no_permit_and_the_breaker_then_closes() {
    let clock = ManualClock::new();
    let breaker = breaker(&clock);
    breaker.transition_to(CircuitState::Open);
    breaker.transition_to(CircuitState::HalfOpen);

    // The backend hangs until it is healthy again.
    let healthy = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (healthy, entered) = (healthy.clone(), entered.clone());
        tower::service_fn(move |()| {
            entered.fetch_add(1, Ordering::Relaxed);
            let healthy = healthy.load(Ordering::Acquire);
            async move {
                if !healthy {
                    std::future::pending::<()>().await;
                }
                Ok::<_, BoxError>(())
            }
        })
    };
    let svc = breaker.layer_with(FailOnError).layer(backend);

    // 32 callers, 1000 attempts each; a call that gets in is cancelled after a few scheduler
    // turns, a rejected caller yields a few turns. Permits are taken and given back all the
    // time, on four worker threads.
    let storm: Vec<_> = (0..32u64)
        .map(|i| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let mut rng = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..1_000 {
                    match xorshift(&mut rng) % 4 {
                        // Ready, then dropped before the call: the service held a permit.
                        0 => {
                            let mut held = svc.clone();
                            let _ = held.ready().await;
                            turns(xorshift(&mut rng) % 4).await;
                        }
                        // Called, then cancelled after a random number of turns.
                        1 | 2 => {
                            let call = async { svc.ready().await?.call(()).await };
                            tokio::select! {
                                _ = call => {}
                                () = turns(xorshift(&mut rng) % 8) => {}
                            }
                        }
                        // Polled once, and cancelled whatever the decision.
                        _ => {
                            tokio::select! {
                                biased;
                                _ = svc.ready() => {}
                                () = turns(0) => {}
                            }
                        }
                    }
                    turns(xorshift(&mut rng) % 4).await;
                }
            })
        })
        .collect();
    for task in storm {
        task.await.unwrap();
    }
    let (entered, rejected) = (
        entered.load(Ordering::Relaxed),
        breaker.metrics().not_permitted_calls,
    );
    // The storm went through the permits many times over, and was turned away many times.
    assert!(
        entered > 1_000 && rejected > 1_000,
        "entered {entered}, rejected {rejected}"
    );
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.metrics().buffered_calls, 0);

    // Every permit came back: exactly PERMITS can be taken now.
    let taken: Vec<_> = (0..PERMITS)
        .map(|_| breaker.try_acquire().unwrap())
        .collect();
    assert!(breaker.try_acquire().is_err());
    drop(taken);

    // The backend recovers: PERMITS successful probes close the breaker.
    healthy.store(true, Ordering::Release);
    let probes: Vec<_> = (0..PERMITS)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { svc.ready().await?.call(()).await })
        })
        .collect();
    for probe in probes {
        probe.await.unwrap().unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn threads_failing_together_open_the_breaker_exactly_once() {
    for _ in 0..20 {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder("together")
            .count_window(50)
            .minimum_calls(50)
            .clock(clock.clone())
            .build()
            .unwrap();
        let log = EventLog::all(&breaker);
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (breaker, barrier) = (breaker.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut recorded = 0;
                    for _ in 0..100 {
                        if let Ok(permit) = breaker.try_acquire() {
                            permit.record(Outcome::Failure);
                            recorded += 1;
                        }
                    }
                    recorded
                })
            })
            .collect();
        let recorded: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(log.states(), [(CircuitState::Closed, CircuitState::Open)]);
        let failures = log.count(|k| matches!(k, EventKind::Failure { .. }));
        let rejections = log.count(|k| matches!(k, EventKind::CallNotPermitted { .. }));
        // The 50th recorded failure opened the breaker; a thread may still record one while
        // the opening is under way (the breaker is closed until it is done). Calls that finish
        // after it opened are discarded, with no event.
        assert!(
            (50..=recorded).contains(&failures),
            "{failures} of {recorded}"
        );
        assert_eq!(recorded + rejections, 400);
        let m = breaker.metrics();
        assert_eq!((m.buffered_calls, m.failed_calls), (50, 50));
        assert_eq!(m.not_permitted_calls as usize, rejections);
    }
}
