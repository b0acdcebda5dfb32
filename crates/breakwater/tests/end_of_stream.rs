//! Recording at the end of the response body: body errors, trailers, early drops, empty bodies.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use breakwater::classify::http::HttpClassifier;
use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use support::{Scripted, Step, read, send};
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("stream")
        .count_window(2)
        .minimum_calls(2)
        .permitted_calls_in_half_open(1)
        .slow_call_duration_threshold(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// A service answering 200 with the given script as its body.
fn answering(
    steps: Vec<Step>,
) -> impl Service<Request<()>, Response = Response<Scripted>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_: Request<()>| {
        let steps = steps.clone();
        async move { Ok::<_, Infallible>(Response::new(Scripted::new(steps))) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_half_way_is_a_failure_only_when_recording_at_the_end() {
    let script = vec![Step::Data("half"), Step::Error("connection reset")];
    let at_head = breaker();
    let mut svc = at_head.layer().layer(answering(script.clone()));
    for _ in 0..2 {
        let response = send(&mut svc, Request::new(())).await.unwrap();
        assert!(read(response.into_body()).await.is_err());
    }
    // Recorded as the 200 arrived: two successes.
    assert_eq!(at_head.metrics().failed_calls, 0);
    assert_eq!(at_head.metrics().successful_calls, 2);

    let at_end = breaker();
    let mut svc = at_end.layer().end_of_stream().layer(answering(script));
    for recorded in 0..2 {
        let response = send(&mut svc, Request::new(())).await.unwrap();
        assert_eq!(
            at_end.metrics().buffered_calls,
            recorded,
            "recorded before the body ended"
        );
        assert!(read(response.into_body()).await.is_err());
    }
    assert_eq!(at_end.metrics().failed_calls, 2);
    assert_eq!(at_end.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_duration_runs_to_the_end_of_the_body() {
    let b = breaker();
    let slow_body = vec![
        Step::Data("a"),
        Step::Pause(Duration::from_millis(1_500)),
        Step::Data("b"),
    ];
    let mut svc = b.layer().end_of_stream().layer(answering(slow_body));
    let response = send(&mut svc, Request::new(())).await.unwrap();
    assert_eq!(read(response.into_body()).await.unwrap(), "ab");
    // The head arrived at once; the body took 1.5 s, longer than the 1 s threshold.
    assert_eq!(b.metrics().slow_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_early_records_its_head_timed_to_the_drop() {
    let b = breaker();
    let mut svc = b
        .layer()
        .end_of_stream()
        .layer(answering(vec![Step::Data("a"), Step::Stall]));
    let response = send(&mut svc, Request::new(())).await.unwrap();
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "a");
    assert_eq!(
        b.metrics().buffered_calls,
        0,
        "recorded before the body ended"
    );
    // The reader stops after 1.5 s: the call took that long, longer than the 1 s threshold.
    tokio::time::advance(Duration::from_millis(1_500)).await;
    drop(body);
    let m = b.metrics();
    assert_eq!(
        (
            m.buffered_calls,
            m.successful_calls,
            m.failed_calls,
            m.slow_calls
        ),
        (1, 1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn ten_bodies_read_halfway_and_ten_errors_fail_half_the_calls() {
    let b = CircuitBreaker::builder("halves")
        .count_window(20)
        .minimum_calls(20)
        .failure_rate_threshold(60.0)
        .build()
        .unwrap();
    let mut halves = b
        .layer()
        .end_of_stream()
        .layer(answering(vec![Step::Data("half"), Step::Data("rest")]));
    let mut errors = b
        .layer()
        .end_of_stream()
        .layer(service_fn(|_: Request<()>| async {
            let response = Response::builder()
                .status(500)
                .body(Scripted::new(vec![Step::Data("oops")]))
                .unwrap();
            Ok::<_, Infallible>(response)
        }));
    for _ in 0..10 {
        let mut body = send(&mut halves, Request::new(()))
            .await
            .unwrap()
            .into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
        drop(send(&mut errors, Request::new(())).await.unwrap());
    }
    let m = b.metrics();
    assert_eq!((m.buffered_calls, m.failed_calls), (20, 10));
    assert_eq!(m.failure_rate, Some(50.0));
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_body_is_dropped_early_counts_as_its_head() {
    let b = breaker();
    b.transition_to(CircuitState::Open);
    b.transition_to(CircuitState::HalfOpen);
    let mut svc = b
        .layer()
        .end_of_stream()
        .layer(answering(vec![Step::Data("a"), Step::Stall]));
    let response = send(&mut svc, Request::new(())).await.unwrap();
    // The single probe's body is still being read: its permit is held.
    let error = send(&mut svc, Request::new(())).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<CircuitOpen>().map(CircuitOpen::state),
        Some(CircuitState::HalfOpen)
    );
    let events = support::EventLog::transitions(&b);
    // Its 200 head decides: the only probe succeeded.
    drop(response);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        events.states(),
        [(CircuitState::HalfOpen, CircuitState::Closed)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_at_its_end_with_the_head_is_recorded_at_once() {
    let b = breaker();
    let mut svc = b
        .layer()
        .end_of_stream()
        .layer(service_fn(|_: Request<()>| async {
            let response = Response::builder()
                .status(204)
                .body(http_body_util::Empty::<bytes::Bytes>::new());
            Ok::<_, Infallible>(response.unwrap())
        }));
    let response = send(&mut svc, Request::new(())).await.unwrap();
    // Nobody needs to read an empty body for the call to count.
    assert_eq!(b.metrics().successful_calls, 1);
    drop(response);
    assert_eq!(b.metrics().successful_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn the_last_data_frame_records_for_readers_that_stop_at_the_end() {
    use http_body::Body;
    let b = breaker();
    let mut svc = b
        .layer_with(HttpClassifier::new())
        .end_of_stream()
        .layer(answering(vec![Step::Data("only")]));
    let response = send(&mut svc, Request::new(())).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
    assert!(frame.is_some_and(|f| f.is_ok()));
    // A reader such as hyper sees `is_end_stream` and never polls again.
    assert!(body.is_end_stream());
    assert_eq!(b.metrics().successful_calls, 1);
}

fn grpc_status(code: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("grpc-status", code.parse().unwrap());
    map
}

#[tokio::test(start_paused = true)]
async fn grpc_statuses_in_the_trailers_decide() {
    let b = breaker();
    let with = |code: &str| {
        answering(vec![
            Step::Data("message"),
            Step::Trailers(grpc_status(code)),
        ])
    };
    let mut ignored = b.grpc_layer().layer(with("3"));
    for _ in 0..5 {
        let response = send(&mut ignored, Request::new(())).await.unwrap();
        read(response.into_body()).await.unwrap();
    }
    // INVALID_ARGUMENT: the caller's business.
    assert_eq!(b.metrics().buffered_calls, 0);
    let mut unavailable = b.grpc_layer().layer(with("14"));
    for _ in 0..2 {
        let response = send(&mut unavailable, Request::new(())).await.unwrap();
        read(response.into_body()).await.unwrap();
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_grpc_response_without_a_status_is_a_failure() {
    let b = breaker();
    let mut svc = b.grpc_layer().layer(answering(vec![Step::Data("message")]));
    for _ in 0..2 {
        let response = send(&mut svc, Request::new(())).await.unwrap();
        read(response.into_body()).await.unwrap();
    }
    assert_eq!(b.metrics().failed_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_at_the_head_counts_even_if_its_body_is_dropped() {
    let b = breaker();
    let mut svc = b
        .layer()
        .end_of_stream()
        .layer(service_fn(|_: Request<()>| async {
            let body = Scripted::new(vec![Step::Data("oops"), Step::Stall]);
            Ok::<_, Infallible>(Response::builder().status(503).body(body).unwrap())
        }));
    for _ in 0..2 {
        let response = send(&mut svc, Request::new(())).await.unwrap();
        // A client that checks the status and drops the body.
        assert_eq!(response.status(), 503);
        drop(response);
    }
    assert_eq!(b.metrics().failed_calls, 2);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_trailers_only_grpc_ok_is_a_success() {
    let b = breaker();
    let mut svc = b.grpc_layer().layer(service_fn(|_: Request<()>| async {
        let response = Response::builder()
            .header("grpc-status", "0")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        Ok::<_, Infallible>(response)
    }));
    for _ in 0..3 {
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
    }
    let m = b.metrics();
    assert_eq!((m.successful_calls, m.failed_calls), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_call_is_recorded_once_whatever_its_body_does_after_the_end() {
    use http_body::Body;
    let b = breaker();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&log);
    b.on_event(move |e| sink.lock().unwrap().push(e.kind().clone()));
    // Trailers (a success), then an error: the trailers decided, the error changes nothing.
    let mut svc = b.grpc_layer().layer(answering(vec![
        Step::Data("m"),
        Step::Trailers(grpc_status("0")),
        Step::Error("late"),
    ]));
    let response = send(&mut svc, Request::new(())).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let mut frames = 0;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        frames += 1;
        if frame.is_err() {
            break;
        }
    }
    assert_eq!(frames, 3);
    // Polled again after its end.
    assert!(
        std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))
            .await
            .is_none()
    );
    let recorded: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|k| {
            matches!(
                k,
                breakwater::circuit_breaker::EventKind::Success { .. }
                    | breakwater::circuit_breaker::EventKind::Failure { .. }
            )
        })
        .cloned()
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(b.metrics().successful_calls, 1);
}

/// A body read to its end in a spawned task (a `Send` future): what every hyper or axum
/// caller does. The recording body's `Data` must be provably `Send` there, whatever the
/// error type's lifetimes.
#[tokio::test]
async fn a_recording_body_is_read_in_a_spawned_task() {
    use http_body_util::{BodyExt, Full};

    let breaker = breaker();
    let mut service = breaker
        .layer()
        .end_of_stream()
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, breakwater::BoxError>(Response::new(Full::new(bytes::Bytes::from("ok"))))
        }));
    let read = tokio::spawn(async move {
        let response = service.ready().await?.call(Request::new(())).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, breakwater::BoxError>(body)
    });
    assert_eq!(read.await.unwrap().unwrap(), "ok");
    assert_eq!(breaker.metrics().buffered_calls, 1);
}
