//! What the breaker adds to a call, against a bare service that answers at once.
//!
//! Run with `cargo bench -p breakwater --bench circuit_breaker`. Each iteration is one whole call
//! as tower makes it: `poll_ready`, `call`, and one poll of the response future.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breakwater::classify::FailOnError;
use breakwater::{CircuitBreaker, CircuitState};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service};

/// A service that is always ready and answers at once.
#[derive(Clone, Copy)]
struct Bare;

impl Service<u64> for Bare {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u64) -> Self::Future {
        ready(Ok(request))
    }
}

/// One call: ready, call, poll once. Returns whether it succeeded.
#[inline(always)]
fn one_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, request: u64) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let future = pin!(svc.call(request));
    matches!(future.poll(cx), Poll::Ready(Ok(_)))
}

fn bench_closed(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("closed_path");
    group.bench_function("bare_service", |b| {
        let mut svc = Bare;
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(7))));
    });
    let count = CircuitBreaker::builder("count").build().unwrap();
    group.bench_function("count_window", |b| {
        let mut svc = count.layer_with(FailOnError).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(7))));
    });
    let timed = CircuitBreaker::builder("timed")
        .time_window(Duration::from_secs(60))
        .slow_call_duration_threshold(Duration::from_secs(5))
        .build()
        .unwrap();
    group.bench_function("time_window_slow_calls", |b| {
        let mut svc = timed.layer_with(FailOnError).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(7))));
    });
    group.finish();
}

fn bench_rejected(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("rejected");
    let open = CircuitBreaker::builder("open")
        .wait_duration_in_open(Duration::from_secs(365 * 24 * 3600))
        .build()
        .unwrap();
    open.transition_to(CircuitState::Open);
    group.bench_function("open", |b| {
        let mut svc = open.layer_with(FailOnError).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(7))));
    });
    // With the automatic transition, the opening's timer stands in for the clock read.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let automatic = CircuitBreaker::builder("automatic")
        .wait_duration_in_open(Duration::from_secs(365 * 24 * 3600))
        .automatic_transition_from_open_to_half_open(true)
        .build()
        .unwrap();
    automatic.transition_to(CircuitState::Open);
    group.bench_function("open_automatic_transition", |b| {
        let mut svc = automatic.layer_with(FailOnError).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(7))));
    });
    let forced = CircuitBreaker::builder("forced").build().unwrap();
    forced.force_open();
    group.bench_function("forced_open", |b| {
        let mut svc = forced.layer_with(FailOnError).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(7))));
    });
    group.finish();
}

/// A service of `http::Request`s that is always ready and answers `200` at once.
#[derive(Clone, Copy)]
struct BareHttp;

impl Service<http::Request<()>> for BareHttp {
    type Response = http::Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        ready(Ok(http::Response::new(())))
    }
}

/// One call of a request made fresh each time (as a client makes them): ready, call, poll.
#[inline(always)]
fn one_request<S: Service<http::Request<()>>>(
    svc: &mut S,
    cx: &mut Context<'_>,
    uri: &'static str,
) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let request = http::Request::get(uri).body(()).unwrap();
    let future = pin!(svc.call(request));
    matches!(future.poll(cx), Poll::Ready(Ok(_)))
}

/// A breaker per downstream: the key of each request, and finding its breaker.
fn bench_keyed(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("keyed");
    group.bench_function("bare_service", |b| {
        let mut svc = BareHttp;
        b.iter(|| black_box(one_request(&mut svc, &mut cx, "http://127.0.0.1:9001/a")));
    });
    let single = CircuitBreaker::builder("single").build().unwrap();
    group.bench_function("one_breaker", |b| {
        let mut svc = single.layer().layer(BareHttp);
        b.iter(|| black_box(one_request(&mut svc, &mut cx, "http://127.0.0.1:9001/a")));
    });
    let keyed = CircuitBreaker::builder("keyed").keyed().build().unwrap();
    group.bench_function("same_key", |b| {
        let mut svc = keyed.layer(BareHttp);
        b.iter(|| black_box(one_request(&mut svc, &mut cx, "http://127.0.0.1:9001/a")));
    });
    group.bench_function("alternating_keys", |b| {
        let mut svc = keyed.layer(BareHttp);
        let mut odd = false;
        b.iter(|| {
            odd = !odd;
            let uri = if odd {
                "http://127.0.0.1:9001/a"
            } else {
                "http://127.0.0.1:9002/a"
            };
            black_box(one_request(&mut svc, &mut cx, uri))
        });
    });
    group.finish();
}

criterion_group!(benches, bench_closed, bench_rejected, bench_keyed);
criterion_main!(benches);
