//! What tonic and tower-http make of a breaker (features `tonic` and `tower-http`).

mod support;

use std::convert::Infallible;
use std::time::Duration;

use breakwater::{CircuitBreaker, CircuitState};
use http::{Request, Response};
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

#[test]
fn tonic_reports_rejections_as_unavailable_and_timeouts_as_deadline_exceeded() {
    let b = breaker();
    b.force_open();
    let rejected: breakwater::BoxError = Box::new(b.try_acquire().unwrap_err());
    let status = tonic::Status::from_error(rejected);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.message(),
        "circuit breaker `orders` rejected the call"
    );
    let elapsed: breakwater::BoxError = Box::new(breakwater::Elapsed::new(Duration::from_secs(1)));
    assert_eq!(
        tonic::Status::from_error(elapsed).code(),
        tonic::Code::DeadlineExceeded
    );
}

#[tokio::test(start_paused = true)]
async fn tower_http_classifiers_drive_the_breaker() {
    use tower_http::classify::{GrpcErrorsAsFailures, ServerErrorsAsFailures};
    let b = breaker();
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(404));
    let answer = {
        let status = std::sync::Arc::clone(&status);
        service_fn(move |_: Request<()>| {
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                Ok::<_, Infallible>(Response::builder().status(code).body(Body::new()).unwrap())
            }
        })
    };
    let mut svc = b
        .tower_http_layer(ServerErrorsAsFailures::make_classifier())
        .layer(answer);
    for _ in 0..3 {
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
    }
    // tower-http has no ignored class: a 404 is a success there.
    assert_eq!(b.metrics().successful_calls, 2);
    // A 500 next to a success: 50% of the window of two.
    status.store(500, std::sync::atomic::Ordering::SeqCst);
    svc.ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(b.state(), CircuitState::Open);

    // A gRPC classifier waits for the trailers.
    let grpc = breaker();
    let mut svc = grpc
        .tower_http_layer(GrpcErrorsAsFailures::make_classifier())
        .layer(service_fn(|_: Request<()>| async {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "14".parse().unwrap());
            let body = support::Scripted::new([
                support::Step::Data("m"),
                support::Step::Trailers(trailers),
            ]);
            Ok::<_, Infallible>(Response::new(body))
        }));
    let response = support::send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(grpc.metrics().buffered_calls, 0);
    support::read(response.into_body()).await.unwrap();
    assert_eq!(grpc.metrics().failed_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_trailers_only_grpc_answer_is_read_from_its_headers() {
    use tower_http::classify::GrpcErrorsAsFailures;
    let grpc = breaker();
    let answer = |code: &'static str| {
        service_fn(move |_: Request<()>| async move {
            let response = Response::builder()
                .header("grpc-status", code)
                .body(Body::new())
                .unwrap();
            Ok::<_, Infallible>(response)
        })
    };
    let mut ok = grpc
        .tower_http_layer(GrpcErrorsAsFailures::make_classifier())
        .layer(answer("0"));
    for _ in 0..2 {
        ok.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
    }
    assert_eq!(grpc.metrics().successful_calls, 2);
    let mut unavailable = grpc
        .tower_http_layer(GrpcErrorsAsFailures::make_classifier())
        .layer(answer("14"));
    support::send(&mut unavailable, Request::new(()))
        .await
        .unwrap();
    assert_eq!(grpc.metrics().failed_calls, 1);
}
