//! Run with: cargo run -p example-hyper-client
//!
//! A hyper-util client behind breakwater, against a flaky server on 127.0.0.1: the server
//! fails, the breaker opens and calls fail fast without reaching it; the server recovers, and
//! half-open probes close the breaker again. A server that sends headers and then stalls is
//! caught by the timeout, which covers the body; that one request carries a shorter deadline
//! of its own (`RequestTimeout`).

use std::time::{Duration, Instant};

use breakwater::timeout::RequestTimeout;
use breakwater::{BoxError, CircuitBreaker, CircuitState, TimeoutLayer};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use loopback::{Answer, FlakyServer};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FlakyServer::start(Answer::Status(200)).await?;
    let breaker = CircuitBreaker::builder("flaky-server")
        .count_window(5)
        .minimum_calls(5)
        .failure_rate_threshold(50.0)
        .wait_duration_in_open(Duration::from_secs(1))
        .permitted_calls_in_half_open(2)
        .build()?;
    breaker.on_state_transition(|event| println!("    -> {:?}", event.kind()));

    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    let mut client = ServiceBuilder::new()
        // Recorded when each body ends: a body that fails or stalls counts.
        .layer(breaker.layer().end_of_stream())
        // One deadline for headers and body; a request may carry a shorter one.
        .layer(TimeoutLayer::new(Duration::from_secs(3)).covering_body())
        .service(Client::builder(TokioExecutor::new()).build(connector));
    let url = server.url("/orders/42");

    println!("1. the server is healthy");
    for _ in 0..3 {
        report(&mut client, &url, None).await;
    }

    println!("2. the server answers 503");
    server.set(Answer::Status(503));
    for _ in 0..4 {
        report(&mut client, &url, None).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    println!("3. the breaker is open: calls fail fast, the server sees none of them");
    let hits = server.hits();
    let start = Instant::now();
    for _ in 0..1_000 {
        let _ = call(&mut client, &url, None).await;
    }
    println!(
        "    1000 calls rejected in {:?}; the server saw {} of them",
        start.elapsed(),
        server.hits() - hits
    );
    assert_eq!(server.hits(), hits);

    println!("4. the server recovers; after the 1 s wait, probes close the breaker");
    server.set(Answer::Status(200));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        report(&mut client, &url, None).await;
    }
    assert_eq!(breaker.state(), CircuitState::Closed);

    println!("5. the server sends its headers, then stalls; this request allows 300 ms");
    server.set(Answer::StallBody);
    report(&mut client, &url, Some(Duration::from_millis(300))).await;
    println!("    metrics: {:?}", breaker.metrics());
    Ok(())
}

/// One GET, body included: its status, or what went wrong. `deadline` overrides the
/// timeout layer's for this request.
async fn call<S, B>(client: &mut S, url: &str, deadline: Option<Duration>) -> Result<u16, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let mut request = Request::get(url).body(Empty::new())?;
    if let Some(deadline) = deadline {
        request.extensions_mut().insert(RequestTimeout(deadline));
    }
    let response = client.ready().await?.call(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

async fn report<S, B>(client: &mut S, url: &str, deadline: Option<Duration>)
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let start = Instant::now();
    match call(client, url, deadline).await {
        Ok(status) => println!("    {status} in {:?}", start.elapsed()),
        Err(error) => println!("    error in {:?}: {error}", start.elapsed()),
    }
}
