//! Who owns a breaker: its handles, layers and services. Once they are gone, its event streams
//! end and its callbacks are dropped; a call in flight does not keep it alive. And a half-open
//! probe goes only to a service that can use it.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
use http::{Request, Response};
use support::send;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A client that is ready only once `ready` is set (a connection still being made).
#[derive(Clone)]
struct Connecting {
    ready: Arc<AtomicBool>,
}

impl Service<Request<()>> for Connecting {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready.load(Ordering::Acquire) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

fn ok() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

/// Subscribes a callback that holds the returned value: its count tells whether the callback
/// was dropped.
fn subscribe_a_callback(breaker: &CircuitBreaker) -> Arc<()> {
    let owner = Arc::new(());
    let held = owner.clone();
    breaker.on_state_transition(move |_| {
        let _ = &held;
    });
    owner
}

/// One call through `svc`; whether it succeeded.
async fn succeeds<S: Service<Request<()>>>(svc: &mut S) -> bool {
    send(svc, Request::new(())).await.is_ok()
}

fn half_open_with_one_probe() -> CircuitBreaker {
    let breaker = CircuitBreaker::builder("probe")
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    breaker.transition_to(CircuitState::Open);
    breaker.transition_to(CircuitState::HalfOpen);
    breaker
}

#[tokio::test]
async fn the_probe_goes_to_the_service_that_is_ready() {
    for backpressure in [false, true] {
        let breaker = half_open_with_one_probe();
        let ready = Arc::new(AtomicBool::new(false));
        let layer = if backpressure {
            breaker.layer().backpressure()
        } else {
            breaker.layer()
        };
        let mut connecting = layer.clone().layer(Connecting {
            ready: ready.clone(),
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(connecting.poll_ready(&mut cx).is_pending());

        // The connecting service holds no probe: a ready one gets it and closes the breaker.
        let mut other = layer.layer(ok());
        let response = send(&mut other, Request::new(())).await;
        assert!(
            response.is_ok(),
            "backpressure {backpressure}: {response:?}"
        );
        assert_eq!(breaker.state(), CircuitState::Closed);

        // Once connected, it calls through the closed breaker.
        ready.store(true, Ordering::Release);
        let response = send(&mut connecting, Request::new(())).await;
        assert!(response.is_ok());
        assert_eq!(breaker.metrics().successful_calls, 1);
    }
}

#[tokio::test]
async fn a_ready_service_takes_the_probe_and_the_next_is_rejected() {
    let breaker = half_open_with_one_probe();
    let mut first = breaker.layer().layer(ok());
    let mut second = breaker.layer().layer(ok());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(first.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    // Fail fast still decides before the call: the only probe is taken.
    let error = send(&mut second, Request::new(())).await.unwrap_err();
    let open = error.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(open.state(), CircuitState::HalfOpen);
    // Dropping the service that holds the probe gives it back.
    drop(first);
    assert!(succeeds(&mut second).await);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn an_event_stream_ends_once_every_handle_layer_and_service_is_gone() {
    let breaker = CircuitBreaker::builder("gone").build().unwrap();
    let mut stream = breaker.event_stream();
    let owner = subscribe_a_callback(&breaker);
    let layer = breaker.layer();
    let mut svc = layer.clone().layer(ok());
    send(&mut svc, Request::new(())).await.unwrap();
    assert!(stream.recv().await.is_ok(), "the call's event");

    drop(breaker);
    drop(svc);
    // The layer still holds the breaker.
    assert_eq!(stream.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(Arc::strong_count(&owner), 2);
    drop(layer);
    assert_eq!(stream.recv().await, Err(RecvError::Closed));
    assert_eq!(Arc::strong_count(&owner), 1, "the callback was dropped");
}

#[tokio::test]
async fn a_call_in_flight_does_not_keep_its_breaker_alive() {
    let breaker = CircuitBreaker::builder("in-flight")
        .count_window(2)
        .minimum_calls(2)
        .build()
        .unwrap();
    let owner = subscribe_a_callback(&breaker);
    let (answer, answered) = tokio::sync::oneshot::channel::<u16>();
    let answered = Arc::new(std::sync::Mutex::new(Some(answered)));
    let mut calls = 0;
    let mut svc = breaker.layer().layer(service_fn(move |_: Request<()>| {
        calls += 1;
        let answered = (calls == 4)
            .then(|| answered.lock().unwrap().take())
            .flatten();
        async move {
            let status = match answered {
                Some(answered) => answered.await.unwrap_or(200),
                None => 200,
            };
            Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
        }
    }));
    // A window slides (and may be skipped) once more calls than it holds were recorded.
    for _ in 0..3 {
        send(&mut svc, Request::new(())).await.unwrap();
    }
    // The window is full of successes: this call is admitted on the clean path.
    let call = svc.ready().await.unwrap().call(Request::new(()));
    drop(svc);
    drop(breaker);
    // Metrics (even with the feature on) are not asked for here: the call holds nothing.
    assert_eq!(
        Arc::strong_count(&owner),
        1,
        "freed while the call is in flight"
    );
    // A failure the breaker may no longer be there to record: discarded, no panic.
    answer.send(500).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(Arc::strong_count(&owner), 1, "everything is freed");
}

#[tokio::test]
async fn a_service_made_before_many_reconfigurations_calls_through_the_latest() {
    let breaker = CircuitBreaker::builder("moving").build().unwrap();
    let mut svc = breaker.layer().layer(ok());
    for size in 0..1_000 {
        breaker
            .reconfigure(|b| b.count_window(10 + size % 7))
            .unwrap();
    }
    send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(breaker.metrics().buffered_calls, 1);
    breaker.force_open();
    let error = send(&mut svc, Request::new(())).await.unwrap_err();
    assert!(error.is::<CircuitOpen>());
}

#[test]
fn a_callback_may_use_the_handle_while_its_breaker_is_reconfigured() {
    let breaker = CircuitBreaker::builder("reentrant").build().unwrap();
    let handle = breaker.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    // The callback holds a handle of its own breaker: a cycle, broken by unsubscribing below.
    let id = breaker.on_state_transition(move |_| {
        log.lock().unwrap().push(handle.state());
    });
    breaker.force_open();
    // Runs on another thread: were the callback called under the handle's lock, it would
    // deadlock, and the test would fail on the timeout rather than hang.
    let (done, finished) = std::sync::mpsc::channel();
    let reconfigured = breaker.clone();
    std::thread::spawn(move || {
        reconfigured.reconfigure(|b| b.count_window(10)).unwrap();
        reconfigured.reset();
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("reconfigure and reset returned");
    assert!(breaker.unsubscribe(id));
    // Forced open; reconfigured (the manual state carries over); reset: its transition, then
    // its reset event.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            CircuitState::ForcedOpen,
            CircuitState::ForcedOpen,
            CircuitState::Closed,
            CircuitState::Closed
        ]
    );
}

#[tokio::test]
async fn clones_of_a_service_never_called_follow_reconfigurations_in_one_step() {
    let breaker = CircuitBreaker::builder("template").build().unwrap();
    // A router's route: made once, never called, cloned per request.
    let template = breaker.layer().layer(ok());
    for size in 0..1_000 {
        breaker
            .reconfigure(|b| b.count_window(10 + size % 7))
            .unwrap();
    }
    for _ in 0..3 {
        let response = template.clone().oneshot(Request::new(())).await;
        assert!(response.is_ok());
    }
    // Each clone started on the latest generation: its window holds all three calls.
    assert_eq!(breaker.metrics().buffered_calls, 3);
}

#[tokio::test]
async fn a_probe_taken_while_ready_is_given_back_when_the_service_is_no_longer_ready() {
    let breaker = half_open_with_one_probe();
    let ready = Arc::new(AtomicBool::new(true));
    let mut flaky = breaker.layer().layer(Connecting {
        ready: ready.clone(),
    });
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(flaky.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    // The connection is lost before the call: polled again, the service holds no probe.
    ready.store(false, Ordering::Release);
    assert!(flaky.poll_ready(&mut cx).is_pending());
    let mut other = breaker.layer().layer(ok());
    assert!(succeeds(&mut other).await);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_rejection_kept_by_the_caller_keeps_neither_the_stream_nor_the_callbacks() {
    let breaker = CircuitBreaker::builder("kept").build().unwrap();
    let mut stream = breaker.event_stream();
    let owner = subscribe_a_callback(&breaker);
    breaker.force_open();
    let rejected = breaker.try_acquire().unwrap_err();
    drop(breaker);
    while stream.try_recv().is_ok() {}
    assert_eq!(stream.recv().await, Err(RecvError::Closed));
    assert_eq!(Arc::strong_count(&owner), 1);
    // The rejection still says whose it was.
    assert_eq!(rejected.breaker(), "kept");
    assert_eq!(rejected.state(), CircuitState::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_copies_short_names_shares_long_ones_and_counts_its_wait_down() {
    let long = "a-breaker-whose-name-is-longer-than-thirty-eight-bytes";
    for name in ["pg", "thirty-eight-bytes-exactly-xxxxxxxxxxx", long] {
        let breaker = CircuitBreaker::builder(name)
            .wait_duration_in_open(Duration::from_secs(30))
            .build()
            .unwrap();
        breaker.transition_to(CircuitState::Open);
        let rejected = breaker.try_acquire().unwrap_err();
        drop(breaker);
        assert_eq!(rejected.breaker(), name);
        assert_eq!(rejected.retry_after(), Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(12)).await;
        assert_eq!(rejected.retry_after(), Some(Duration::from_secs(18)));
        assert_eq!(
            rejected.to_string(),
            format!("circuit breaker `{name}` is open; retry after 18s")
        );
    }
    assert_eq!("thirty-eight-bytes-exactly-xxxxxxxxxxx".len(), 38);
}

#[tokio::test(start_paused = true)]
async fn rejections_are_equal_only_when_one_breaker_made_them() {
    let open = |breaker: &CircuitBreaker| {
        breaker.transition_to(CircuitState::Open);
        breaker.try_acquire().unwrap_err()
    };
    // Two breakers of one name, opened at the same (paused) instant.
    let first = CircuitBreaker::builder("pg").build().unwrap();
    let second = CircuitBreaker::builder("pg").build().unwrap();
    let (a, b) = (open(&first), open(&second));
    assert_eq!(a.retry_after(), b.retry_after());
    assert_ne!(a, b, "two breakers");
    assert_eq!(
        a,
        first.try_acquire().unwrap_err(),
        "one breaker, one state"
    );
}

#[test]
fn a_kept_rejection_counts_its_wait_down_on_the_breakers_manual_clock() {
    let clock = breakwater::clock::ManualClock::new();
    let breaker = CircuitBreaker::builder("manual")
        .wait_duration_in_open(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    breaker.transition_to(CircuitState::Open);
    let rejected = breaker.try_acquire().unwrap_err();
    drop(breaker);
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
    clock.advance(Duration::from_secs(4));
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(6)));
    clock.advance(Duration::from_secs(60));
    assert_eq!(rejected.retry_after(), Some(Duration::ZERO));
}
