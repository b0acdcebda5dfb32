//! Soak: one million calls through the breaker's tower service, over two threads, against a
//! backend that flaps between healthy and failing, with random cancellations at every point a
//! call can be cancelled (a service dropped between `poll_ready` and `call`, a future dropped
//! before it completes). Then the backend recovers for good.
//!
//! It must end with no deadlock (a watchdog fails the test if the threads do not finish), and
//! with the breaker closed within one open wait and one round of probes after the recovery.
//! That last check is also the one for leaked permits: a half-open state closes only once all
//! its permits' probes are recorded, so a permit that leaked (taken, never given back nor
//! recorded) would keep the breaker half-open, rejecting, for good. (Making the give-back of a
//! cancelled probe a no-op fails this test.)
//!
//! Time is a `ManualClock` that every call moves forward 50 µs, so the breaker opens,
//! half-opens and closes thousands of times. Bounded: one million calls, two minutes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use breakwater::classify::Outcome;
use breakwater::clock::{Clock, ManualClock};
use breakwater::{CircuitBreaker, CircuitState};
use tower::{Layer, Service};

const CALLS: u64 = 1_000_000;
/// The backend is healthy from this call on.
const RECOVERY: u64 = 900_000;
/// Healthy and failing phases alternate every this many calls until the recovery.
const PHASE: u64 = 20_000;
const TICK: Duration = Duration::from_micros(50);
const WAIT: Duration = Duration::from_millis(10);
const PERMITS: u32 = 3;

/// The backend's answer: an HTTP-like status.
type Status = u16;

/// The flapping backend: a status picked from the call's number (its request: the phase is
/// the caller's, whether or not the breaker let earlier calls through) and a draw; a future
/// that answers at once, or after one `Pending` (so that it can be dropped mid-flight).
#[derive(Clone, Copy)]
struct Backend;

/// A call: its number among all calls issued, and a random draw.
#[derive(Clone, Copy)]
struct Call {
    n: u64,
    draw: u64,
}

struct Answer {
    status: Status,
    pending: bool,
}

impl Future for Answer {
    type Output = Result<Status, std::io::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.pending {
            self.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(match self.status {
            0 => Err(std::io::Error::other("connection reset")),
            status => Ok(status),
        })
    }
}

impl Service<Call> for Backend {
    type Response = Status;
    type Error = std::io::Error;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, Call { n, draw }: Call) -> Answer {
        let failing = n < RECOVERY && (n / PHASE) % 2 == 1;
        let status = match draw % 10 {
            _ if !failing => 200,
            0 => 404, // a 4xx: ignored
            1 => 0,   // an error
            2 | 3 => 200,
            _ => 503,
        };
        Answer {
            status,
            pending: draw % 7 == 0,
        }
    }
}

fn classify(result: Result<&Status, &std::io::Error>) -> Outcome {
    match result {
        Ok(status) if *status >= 500 => Outcome::Failure,
        Ok(status) if *status >= 400 => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[derive(Debug, Default)]
struct Tally {
    completed: u64,
    rejected: u64,
    dropped_before_call: u64,
    dropped_in_flight: u64,
}

#[test]
fn a_million_calls_on_two_threads_against_a_flapping_backend() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("soak")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .wait_duration_in_open(WAIT)
        .permitted_calls_in_half_open(PERMITS)
        .clock(clock.clone())
        .build()
        .unwrap();
    let openings = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&openings);
    breaker.on_state_transition(move |event| {
        if let breakwater::circuit_breaker::EventKind::StateTransition {
            to: CircuitState::Open,
            ..
        } = event.kind()
        {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    let recovered_at = Arc::new(OnceLock::new());
    let service = breaker.layer_with(classify).layer(Backend);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let (done, finished) = mpsc::channel();
    for thread in 0..2u64 {
        let (service, clock, issued, recovered_at, done) = (
            service.clone(),
            clock.clone(),
            Arc::clone(&issued),
            Arc::clone(&recovered_at),
            done.clone(),
        );
        std::thread::spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (thread + 1);
            let mut tally = Tally::default();
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= CALLS {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "the soak outran its two minutes"
                );
                clock.advance(TICK);
                if n == RECOVERY {
                    let _ = recovered_at.set(clock.now());
                }
                let draw = xorshift(&mut rng);
                // A fresh clone per call, as a `Buffer` or router would make: it holds the
                // admission between `poll_ready` and `call`.
                let mut svc = service.clone();
                match svc.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => {}
                    other => panic!("a fail-fast breaker is always ready: {other:?}"),
                }
                if draw % 50 == 1 {
                    drop(svc); // cancelled between poll_ready and call
                    tally.dropped_before_call += 1;
                    continue;
                }
                let mut call = svc.call(Call { n, draw });
                let mut polls = 0;
                let result = loop {
                    if let Poll::Ready(result) = Pin::new(&mut call).poll(&mut cx) {
                        break Some(result);
                    }
                    polls += 1;
                    if draw % 3 == 0 {
                        break None; // cancelled in flight
                    }
                    assert!(polls < 3, "the backend answers on its second poll");
                };
                match result {
                    None => tally.dropped_in_flight += 1,
                    Some(Err(error)) if error.is::<breakwater::CircuitOpen>() => {
                        tally.rejected += 1;
                    }
                    Some(_) => tally.completed += 1,
                }
            }
            done.send(tally).unwrap();
        });
    }
    drop(done);
    let mut tallies = Vec::new();
    for _ in 0..2 {
        let tally = finished
            .recv_timeout(Duration::from_secs(150))
            .expect("a soak thread did not finish: deadlock or panic");
        tallies.push(tally);
    }
    let total: u64 = tallies
        .iter()
        .map(|t| t.completed + t.rejected + t.dropped_before_call + t.dropped_in_flight)
        .sum();
    assert_eq!(total, CALLS, "{tallies:?}");
    // Every path was taken many times.
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    assert!(sum(|t| t.rejected) > 10_000, "{tallies:?}");
    assert!(sum(|t| t.dropped_before_call) > 10_000, "{tallies:?}");
    assert!(sum(|t| t.dropped_in_flight) > 10_000, "{tallies:?}");
    let openings = openings.load(Ordering::Relaxed);
    assert!(openings > 100, "the breaker flapped only {openings} times");

    // Recovered: the breaker closed within one wait and one round of probes of the recovery,
    // and stayed closed.
    assert_eq!(breaker.state(), CircuitState::Closed);
    let recovered_at = *recovered_at.get().unwrap();
    let closed_at = breaker.metrics().last_transition_at;
    let after = closed_at.saturating_duration_since(recovered_at);
    assert!(
        after <= WAIT + TICK * 100,
        "closed {after:?} after the recovery"
    );
}
