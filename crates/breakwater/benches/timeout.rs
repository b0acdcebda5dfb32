//! `TimeoutLayer` against `tower::timeout`, around a service that answers at once.
//!
//! Run with `cargo bench -p breakwater --bench timeout`. Each iteration is one whole call:
//! `poll_ready`, `call` (which starts the timer), and one poll of the response future.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breakwater::TimeoutLayer;
use breakwater::timeout::TimeoutOverride;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service};

/// A request that never overrides the timeout.
#[derive(Clone, Copy)]
struct Req(#[allow(dead_code)] u64);

impl TimeoutOverride for Req {}

#[derive(Clone, Copy)]
struct Bare;

impl<R> Service<R> for Bare {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: R) -> Self::Future {
        ready(Ok(()))
    }
}

#[inline(always)]
fn one_call<S: Service<R>, R>(svc: &mut S, cx: &mut Context<'_>, request: R) -> bool {
    if !matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))) {
        return false;
    }
    let future = pin!(svc.call(request));
    matches!(future.poll(cx), Poll::Ready(Ok(_)))
}

fn bench_timeout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _in_runtime = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let timeout = Duration::from_secs(3);
    let mut group = c.benchmark_group("timeout");
    group.bench_function("tower_timeout", |b| {
        let mut svc = tower::timeout::TimeoutLayer::new(timeout).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(Req(7)))));
    });
    group.bench_function("breakwater_timeout", |b| {
        let mut svc = TimeoutLayer::new(timeout).layer(Bare);
        b.iter(|| black_box(one_call(&mut svc, &mut cx, black_box(Req(7)))));
    });
    group.bench_function("tower_timeout_http_request", |b| {
        let mut svc = tower::timeout::TimeoutLayer::new(timeout).layer(Bare);
        b.iter(|| {
            black_box(one_call(
                &mut svc,
                &mut cx,
                black_box(http::Request::new(())),
            ))
        });
    });
    group.bench_function("breakwater_timeout_http_request", |b| {
        let mut svc = TimeoutLayer::new(timeout).layer(Bare);
        b.iter(|| {
            black_box(one_call(
                &mut svc,
                &mut cx,
                black_box(http::Request::new(())),
            ))
        });
    });
    group.finish();
}

criterion_group!(benches, bench_timeout);
criterion_main!(benches);
