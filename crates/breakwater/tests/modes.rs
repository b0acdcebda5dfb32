//! The 503 response mode, and what tonic and tower-http make of the breaker.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
use http::header::RETRY_AFTER;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceExt, service_fn};

type Body = Empty<bytes::Bytes>;

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("orders")
        .count_window(2)
        .permitted_calls_in_half_open(1)
        .wait_duration_in_open(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn route(
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_: Request<()>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Body::new())) }
    })
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_answers_503_with_retry_after_and_keeps_the_route_infallible() {
    let b = breaker();
    let calls = std::sync::Arc::default();
    let mut svc = b
        .layer()
        .respond_503()
        .layer(route(std::sync::Arc::clone(&calls)));
    fn infallible<S: Service<Request<()>, Error = Infallible>>(_: &S) {}
    infallible(&svc);

    b.transition_to(CircuitState::Open);
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "30");
    let open = response.extensions().get::<CircuitOpen>().unwrap();
    assert_eq!(open.breaker(), "orders");
    // Whole seconds, rounded up.
    tokio::time::advance(Duration::from_millis(10_500)).await;
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.headers()[RETRY_AFTER], "20");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(b.metrics().not_permitted_calls, 2);

    // Half-open with its probe in flight: come back in a second.
    b.transition_to(CircuitState::HalfOpen);
    let mut holder = b
        .layer()
        .respond_503()
        .layer(route(std::sync::Arc::clone(&calls)));
    holder.ready().await.unwrap();
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    // Forced open: no promise.
    b.force_open();
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(RETRY_AFTER).is_none());
    // Closed: the route answers.
    b.reset();
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_503_mode_passes_inner_errors_through_unchanged() {
    let b = breaker();
    let mut svc = b
        .layer()
        .respond_503()
        .layer(service_fn(|_: Request<()>| async {
            Err::<Response<Body>, _>(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe"))
        }));
    let error: std::io::Error = support::send(&mut svc, Request::new(())).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(b.metrics().failed_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn the_503_mode_also_records_at_the_end_of_the_stream() {
    let b = breaker();
    let body = || support::Scripted::new([support::Step::Data("a"), support::Step::Error("reset")]);
    let mut svc =
        b.layer()
            .respond_503()
            .end_of_stream()
            .layer(service_fn(move |_: Request<()>| {
                let body = body();
                async move { Ok::<_, Infallible>(Response::new(body)) }
            }));
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(b.metrics().buffered_calls, 0);
    assert!(support::read(response.into_body()).await.is_err());
    // The body failed: recorded then, a failure.
    assert_eq!(b.metrics().failed_calls, 1);
    b.force_open();
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(support::read(response.into_body()).await.unwrap(), "");
}
