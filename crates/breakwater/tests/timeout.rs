//! The timeout layer: its three modes, per-request overrides, and what the breaker makes of it.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use breakwater::timeout::{RequestTimeout, TimeoutOverride};
use breakwater::{BreakwaterExt, CircuitBreaker, CircuitState, Elapsed, TimeoutLayer};
use http::{Request, Response, StatusCode};
use support::{Scripted, Step, read, send};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const SECOND: Duration = Duration::from_secs(1);

/// A server that answers after `head` with the given body script.
fn server(
    head: Duration,
    body: Vec<Step>,
) -> impl Service<Request<()>, Response = Response<Scripted>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_: Request<()>| {
        let body = body.clone();
        async move {
            tokio::time::sleep(head).await;
            Ok::<_, Infallible>(Response::new(Scripted::new(body)))
        }
    })
}

fn elapsed_of(error: &breakwater::BoxError) -> Option<Duration> {
    error.downcast_ref::<Elapsed>().map(Elapsed::timeout)
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_timeout_fails_with_elapsed_at_the_deadline() {
    let mut svc = TimeoutLayer::new(3 * SECOND).layer(server(10 * SECOND, vec![]));
    let start = Instant::now();
    let error = send(&mut svc, Request::new(())).await.unwrap_err();
    assert_eq!(elapsed_of(&error), Some(3 * SECOND));
    assert_eq!(start.elapsed(), 3 * SECOND);
    // In time, it answers.
    let mut svc = TimeoutLayer::new(3 * SECOND).layer(server(2 * SECOND, vec![]));
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_can_carry_its_own_timeout() {
    let mut svc = TimeoutLayer::new(3 * SECOND).layer(server(2 * SECOND, vec![]));
    let mut impatient = Request::new(());
    impatient.extensions_mut().insert(RequestTimeout(SECOND));
    let error = send(&mut svc, impatient).await.unwrap_err();
    assert_eq!(elapsed_of(&error), Some(SECOND));
    let mut svc = TimeoutLayer::new(SECOND).layer(server(2 * SECOND, vec![]));
    let mut patient = Request::new(());
    patient.extensions_mut().insert(RequestTimeout(5 * SECOND));
    assert!(svc.ready().await.unwrap().call(patient).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn requests_of_any_type_work_once_they_say_whether_they_override() {
    struct Query(Option<Duration>);
    impl TimeoutOverride for Query {
        fn timeout_override(&self) -> Option<Duration> {
            self.0
        }
    }
    let slow = service_fn(|_: Query| async {
        tokio::time::sleep(2 * SECOND).await;
        Ok::<_, std::io::Error>(())
    });
    let mut svc = TimeoutLayer::new(3 * SECOND).layer(slow);
    assert!(svc.ready().await.unwrap().call(Query(None)).await.is_ok());
    let error = send(&mut svc, Query(Some(SECOND))).await.unwrap_err();
    assert_eq!(elapsed_of(&error), Some(SECOND));
}

#[tokio::test(start_paused = true)]
async fn covering_the_body_catches_a_server_that_stalls_after_its_headers() {
    let stalling = server(SECOND, vec![Step::Data("first bytes"), Step::Stall]);
    // Without it, the headers arrive in time and the stall goes unnoticed by the timeout.
    let mut plain = TimeoutLayer::new(3 * SECOND).layer(stalling.clone());
    let response = send(&mut plain, Request::new(())).await.unwrap();
    let read_plain = tokio::time::timeout(60 * SECOND, read(response.into_body())).await;
    assert!(
        read_plain.is_err(),
        "the plain timeout let the stalled body hang"
    );

    let mut covered = TimeoutLayer::new(3 * SECOND)
        .covering_body()
        .layer(stalling);
    let start = Instant::now();
    let response = send(&mut covered, Request::new(())).await.unwrap();
    assert_eq!(start.elapsed(), SECOND);
    let error = read(response.into_body()).await.unwrap_err();
    assert_eq!(elapsed_of(&error), Some(3 * SECOND));
    // One deadline for the whole call: 3 s from the start, not from the headers.
    assert_eq!(start.elapsed(), 3 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn covering_the_body_lets_a_timely_body_through() {
    let mut covered = TimeoutLayer::new(3 * SECOND).covering_body().layer(server(
        SECOND,
        vec![Step::Data("a"), Step::Pause(SECOND), Step::Data("b")],
    ));
    let response = send(&mut covered, Request::new(())).await.unwrap();
    assert_eq!(read(response.into_body()).await.unwrap(), "ab");
}

#[tokio::test(start_paused = true)]
async fn a_server_answers_504_and_keeps_its_error_type() {
    let mut route =
        TimeoutLayer::new(SECOND)
            .respond_504()
            .layer(service_fn(|_: Request<()>| async {
                tokio::time::sleep(5 * SECOND).await;
                Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
            }));
    let response: Response<_> = send(&mut route, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.extensions().get::<Elapsed>().map(Elapsed::timeout),
        Some(SECOND)
    );
    // The error type is still the route's own.
    fn infallible<S: Service<Request<()>, Error = Infallible>>(_: &S) {}
    infallible(&route);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_counts_timeouts_of_the_call_and_of_the_body() {
    let breaker = CircuitBreaker::builder("pg")
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    let mut headers_late = ServiceBuilder::new()
        .circuit_breaker(&breaker)
        .deadline(3 * SECOND)
        .service(server(10 * SECOND, vec![]));
    for _ in 0..2 {
        assert!(send(&mut headers_late, Request::new(())).await.is_err());
    }
    let mut body_stalls = ServiceBuilder::new()
        .layer(breaker.layer().end_of_stream())
        .layer(TimeoutLayer::new(3 * SECOND).covering_body())
        .service(server(SECOND, vec![Step::Stall]));
    for _ in 0..2 {
        let response = send(&mut body_stalls, Request::new(())).await.unwrap();
        assert!(read(response.into_body()).await.is_err());
    }
    assert_eq!(breaker.metrics().failed_calls, 4);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_body_deadline_is_classified_as_a_timeout() {
    use breakwater::classify::Outcome;
    use breakwater::classify::http::HttpClassifier;
    let breaker = CircuitBreaker::builder("pg")
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    // Timeouts are ignored, other errors fail: a stalled body must be the former.
    let classifier = HttpClassifier::new().on_timeout(Outcome::Ignored);
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer_with(classifier).end_of_stream())
        .layer(TimeoutLayer::new(3 * SECOND).covering_body())
        .service(server(SECOND, vec![Step::Stall]));
    for _ in 0..4 {
        let response = send(&mut svc, Request::new(())).await.unwrap();
        assert!(read(response.into_body()).await.is_err());
    }
    assert_eq!(breaker.metrics().buffered_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn without_override_any_request_type_is_accepted() {
    let slow = service_fn(|uri: http::Uri| async move {
        tokio::time::sleep(2 * SECOND).await;
        Ok::<_, std::io::Error>(uri)
    });
    let mut svc = TimeoutLayer::new(SECOND).without_override().layer(slow);
    let error = send(&mut svc, http::Uri::from_static("http://127.0.0.1/"))
        .await
        .unwrap_err();
    assert_eq!(elapsed_of(&error), Some(SECOND));
    // And an http::Request's extension is not read.
    let mut svc = TimeoutLayer::new(SECOND)
        .without_override()
        .layer(server(2 * SECOND, vec![]));
    let mut request = Request::new(());
    request.extensions_mut().insert(RequestTimeout(5 * SECOND));
    assert!(svc.ready().await.unwrap().call(request).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_breaker_counts_the_504s_of_a_timeout_in_504_mode() {
    let breaker = CircuitBreaker::builder("route")
        .count_window(2)
        .minimum_calls(2)
        .build()
        .unwrap();
    let mut route = ServiceBuilder::new()
        .layer(breaker.layer().respond_503())
        .layer(TimeoutLayer::new(SECOND).respond_504())
        .service(service_fn(|_: Request<()>| async {
            tokio::time::sleep(5 * SECOND).await;
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        }));
    fn infallible<S: Service<Request<()>, Error = Infallible>>(_: &S) {}
    infallible(&route);
    for _ in 0..2 {
        let response = send(&mut route, Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let response = send(&mut route, Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
