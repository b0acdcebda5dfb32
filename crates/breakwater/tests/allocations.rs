//! The call path allocates nothing, except the boxed error of a rejected call.
//!
//! `allocation-counter` replaces the global allocator of this test binary only, and counts the
//! allocations of the current thread.

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breakwater::classify::{FailOnError, Outcome};
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitState};
use tower::{Layer, Service};

#[derive(Clone, Copy)]
struct Answer(Result<u32, ()>);

impl Service<u32> for Answer {
    type Response = u32;
    type Error = std::io::Error;
    type Future = Ready<Result<u32, std::io::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: u32) -> Self::Future {
        ready(self.0.map_err(|()| std::io::Error::other("down")))
    }
}

/// Makes `n` calls and returns (allocations, failed calls).
fn calls<S: Service<u32>>(svc: &mut S, n: u32) -> (u64, u32) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut failed = 0;
    let info = allocation_counter::measure(|| {
        for i in 0..n {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let future = pin!(svc.call(i));
            match future.poll(&mut cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) => failed += 1,
                Poll::Pending => unreachable!("the service answers at once"),
            }
        }
    });
    (info.count_total, failed)
}

#[test]
fn closed_calls_allocate_nothing() {
    let breaker = CircuitBreaker::builder("count").build().unwrap();
    let mut svc = breaker.layer_with(FailOnError).layer(Answer(Ok(1)));
    assert_eq!(calls(&mut svc, 10_000), (0, 0));
    assert_eq!(breaker.metrics().buffered_calls, 100);

    let timed = CircuitBreaker::builder("timed")
        .time_window(Duration::from_secs(10))
        .slow_call_duration_threshold(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut svc = timed.layer_with(FailOnError).layer(Answer(Ok(1)));
    assert_eq!(calls(&mut svc, 10_000), (0, 0));
}

#[test]
fn failures_and_metrics_only_calls_allocate_nothing() {
    let breaker = CircuitBreaker::builder("failing")
        .failure_rate_threshold(100.0)
        .build()
        .unwrap();
    breaker.metrics_only();
    let mut svc = breaker.layer_with(FailOnError).layer(Answer(Err(())));
    // The inner service allocates its io::Error; the layered service boxes it into a BoxError,
    // as every tower layer with a BoxError does: one allocation per failure, none for the
    // breaker itself.
    let (allocations, failed) = calls(&mut svc, 1_000);
    assert_eq!(failed, 1_000);
    let (inner, _) = calls(&mut Answer(Err(())), 1_000);
    assert_eq!(allocations, inner + 1_000);
}

#[test]
fn half_open_probes_allocate_nothing() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("probes")
        .permitted_calls_in_half_open(1_000)
        .clock(clock)
        .build()
        .unwrap();
    breaker.transition_to(CircuitState::Open);
    breaker.transition_to(CircuitState::HalfOpen);
    let layer = breaker.layer_with(|_: Result<&u32, &std::io::Error>| Outcome::Success);
    let mut svc = layer.layer(Answer(Ok(1)));
    assert_eq!(calls(&mut svc, 999), (0, 0));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[test]
fn a_rejected_call_allocates_only_its_boxed_error() {
    let breaker = CircuitBreaker::builder("open").build().unwrap();
    breaker.transition_to(CircuitState::Open);
    let mut svc = breaker.layer_with(FailOnError).layer(Answer(Ok(1)));
    assert_eq!(calls(&mut svc, 1_000), (1_000, 1_000));
}

/// A service of `http::Request`s that answers `200` at once.
#[derive(Clone, Copy)]
struct Ok200;

impl Service<http::Request<()>> for Ok200 {
    type Response = http::Response<()>;
    type Error = std::io::Error;
    type Future = Ready<Result<http::Response<()>, std::io::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        ready(Ok(http::Response::new(())))
    }
}

#[test]
fn the_http_stack_allocates_nothing_per_call() {
    // The stack of the examples: the breaker with its HTTP classifier over a timeout, inside a
    // tokio runtime (the timeout's timer is created per call, on the stack of the future).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let breaker = CircuitBreaker::builder("http").build().unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(breakwater::TimeoutLayer::new(Duration::from_secs(5)))
        .service(Ok200);
    let mut cx = Context::from_waker(Waker::noop());
    // The requests are made before counting: building one allocates (its headers), as it
    // would without breakwater.
    let requests: Vec<_> = (0..1_000).map(|_| http::Request::new(())).collect();
    let mut ok = 0;
    let info = allocation_counter::measure(|| {
        for request in requests {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let future = pin!(svc.call(request));
            if let Poll::Ready(Ok(response)) = future.poll(&mut cx) {
                ok += usize::from(response.status() == http::StatusCode::OK);
            }
        }
    });
    assert_eq!(ok, 1_000);
    assert_eq!(info.count_total, 0);
    assert_eq!(breaker.metrics().successful_calls, 100);
}
