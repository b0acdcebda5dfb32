//! A hyper-util client behind the breaker and the timeout, against a real server on loopback.

use std::time::{Duration, Instant};

use breakwater::{CircuitBreaker, CircuitOpen, CircuitState, Elapsed, TimeoutLayer};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use loopback::{Answer, FlakyServer};
use tower::{Service, ServiceBuilder, ServiceExt};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("gateway")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration_in_open(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The stack the issue describes: a hyper-util client with a connect timeout, a timeout that
/// covers the body, and the breaker recording at the end of each body.
fn client(
    breaker: &CircuitBreaker,
    timeout: Duration,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = http::Response<impl http_body::Body<Data = Bytes, Error = breakwater::BoxError>>,
    Error = breakwater::BoxError,
    Future: Send,
> + Clone {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    let hyper = Client::builder(TokioExecutor::new()).build(connector);
    ServiceBuilder::new()
        .layer(breaker.layer().end_of_stream())
        .layer(TimeoutLayer::new(timeout).covering_body())
        .service(hyper)
}

async fn get<S, B>(
    client: &mut S,
    url: &str,
) -> Result<(u16, Result<Bytes, breakwater::BoxError>), breakwater::BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<B>, Error = breakwater::BoxError>,
    B: http_body::Body<Data = Bytes, Error = breakwater::BoxError>,
{
    let request = Request::get(url).body(Empty::new()).unwrap();
    let response = client.ready().await?.call(request).await?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes);
    Ok((status, body))
}

#[tokio::test]
async fn client_errors_are_ignored() {
    let server = FlakyServer::start(Answer::Status(404)).await.unwrap();
    let b = breaker();
    let mut c = client(&b, Duration::from_secs(5));
    for _ in 0..20 {
        assert_eq!(get(&mut c, &server.url("/orders/7")).await.unwrap().0, 404);
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().buffered_calls, 0);
    assert_eq!(server.hits(), 20);
}

#[tokio::test]
async fn server_errors_open_the_breaker_and_then_no_call_reaches_the_server() {
    let server = FlakyServer::start(Answer::Status(503)).await.unwrap();
    let b = breaker();
    let mut c = client(&b, Duration::from_secs(5));
    for _ in 0..4 {
        assert_eq!(get(&mut c, &server.url("/pay")).await.unwrap().0, 503);
    }
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(server.hits(), 4);

    let start = Instant::now();
    for _ in 0..100 {
        let error = get(&mut c, &server.url("/pay")).await.unwrap_err();
        assert!(error.is::<CircuitOpen>(), "{error}");
    }
    let took = start.elapsed();
    assert_eq!(server.hits(), 4, "a rejected call reached the server");
    assert!(
        took < Duration::from_millis(100),
        "100 rejections took {took:?}"
    );
    assert_eq!(b.metrics().not_permitted_calls, 100);
}

#[tokio::test]
async fn timeouts_open_the_breaker() {
    let server = FlakyServer::start(Answer::After(Duration::from_secs(30)))
        .await
        .unwrap();
    let b = breaker();
    let mut c = client(&b, Duration::from_millis(200));
    for _ in 0..4 {
        let error = get(&mut c, &server.url("/slow")).await.unwrap_err();
        assert_eq!(
            error.downcast_ref::<Elapsed>().map(Elapsed::timeout),
            Some(Duration::from_millis(200))
        );
    }
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().failed_calls, 4);
}

#[tokio::test]
async fn a_body_that_stalls_after_the_headers_is_caught_and_counted() {
    let server = FlakyServer::start(Answer::StallBody).await.unwrap();
    let b = breaker();
    // Generous enough that the headers always arrive in time on a loaded machine.
    let mut c = client(&b, Duration::from_secs(1));
    for calls in 1..=4u64 {
        let started = Instant::now();
        let (status, body) = get(&mut c, &server.url("/statement")).await.unwrap();
        assert_eq!(status, 200);
        let error = body.unwrap_err();
        assert!(breakwater::classify::is_timeout(&*error), "{error}");
        // Caught at the call's deadline, not left hanging.
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(b.metrics().failed_calls, calls);
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test]
async fn a_refused_connection_is_a_failure() {
    // Bind and drop a listener: nothing listens on that port now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let b = breaker();
    let mut c = client(&b, Duration::from_secs(5));
    for _ in 0..4 {
        assert!(get(&mut c, &format!("http://{addr}/")).await.is_err());
    }
    assert_eq!(b.metrics().failed_calls, 4);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test]
async fn a_keyed_layer_cuts_off_the_failing_server_only() {
    let failing = FlakyServer::start(Answer::Status(503)).await.unwrap();
    let healthy = FlakyServer::start(Answer::Status(200)).await.unwrap();
    let per_host = CircuitBreaker::builder("partners")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration_in_open(Duration::from_secs(60))
        .keyed()
        .max_keys(8)
        .build()
        .unwrap();
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    let mut c = ServiceBuilder::new()
        .layer(per_host.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(5)).covering_body())
        .service(Client::builder(TokioExecutor::new()).build(connector));
    for _ in 0..4 {
        assert_eq!(get(&mut c, &failing.url("/hook")).await.unwrap().0, 503);
        assert_eq!(get(&mut c, &healthy.url("/hook")).await.unwrap().0, 200);
    }
    for _ in 0..100 {
        let error = get(&mut c, &failing.url("/hook")).await.unwrap_err();
        let open = error.downcast_ref::<CircuitOpen>().unwrap();
        assert_eq!(open.key().unwrap(), format!("http://{}", failing.addr()));
    }
    assert_eq!(failing.hits(), 4);
    for _ in 0..10 {
        assert_eq!(get(&mut c, &healthy.url("/hook")).await.unwrap().0, 200);
    }
    assert_eq!(healthy.hits(), 14);
    assert_eq!(per_host.len(), 2);
}
