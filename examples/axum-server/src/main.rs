//! Run with: cargo run -p example-axum-server
//!
//! An axum app on 127.0.0.1 with two routes:
//!
//! - `GET /checkout` calls a payment gateway (a flaky server, also on 127.0.0.1) through a
//!   breaker and a timeout; when the gateway fails, the breaker opens and the handler answers
//!   `503` at once, without calling it.
//! - `GET /orders` is itself protected by a breaker in 503 mode: while that breaker is open,
//!   the route answers `503 Service Unavailable` with `Retry-After`, and stays `Infallible`
//!   (no `HandleErrorLayer`).
//!
//! The example serves the app, calls it, prints what happens, and exits.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use breakwater::{BoxError, BreakwaterExt, CircuitBreaker, CircuitOpen, CircuitState};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use loopback::{Answer, FlakyServer};
use tower::{Service, ServiceBuilder, ServiceExt};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

#[derive(Clone)]
struct Checkout {
    gateway_url: String,
    gateway: CircuitBreaker,
    client: HttpClient,
}

/// Calls the gateway through its breaker and a 2 s timeout.
async fn checkout(State(app): State<Checkout>) -> (StatusCode, String) {
    let mut gateway = ServiceBuilder::new()
        .circuit_breaker(&app.gateway)
        .deadline(Duration::from_secs(2))
        .service(app.client.clone());
    let request = Request::get(&app.gateway_url).body(Empty::new());
    let result: Result<_, BoxError> = async {
        let request = request?;
        gateway.ready().await?.call(request).await
    }
    .await;
    match result {
        Ok(response) if response.status().is_success() => (StatusCode::OK, "paid".into()),
        Ok(response) => (
            StatusCode::BAD_GATEWAY,
            format!("the gateway answered {}", response.status()),
        ),
        Err(error) if error.is::<CircuitOpen>() => {
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

async fn orders() -> &'static str {
    "[order 41, order 42]"
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let gateway = FlakyServer::start(Answer::Status(200)).await?;
    let gateway_breaker = CircuitBreaker::builder("payment-gateway")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration_in_open(Duration::from_secs(30))
        .build()?;
    let orders_breaker = CircuitBreaker::builder("orders")
        .wait_duration_in_open(Duration::from_secs(10))
        .build()?;

    let app = Router::new()
        .route("/checkout", get(checkout))
        .with_state(Checkout {
            gateway_url: gateway.url("/confirm"),
            gateway: gateway_breaker.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
        .merge(
            Router::new()
                .route("/orders", get(orders))
                .route_layer(orders_breaker.layer().respond_503()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on {base}");

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    println!("1. the gateway is healthy");
    show(&client, &base, "/checkout").await?;
    println!("2. the gateway fails: the breaker opens, then checkout fails fast");
    gateway.set(Answer::Status(500));
    for _ in 0..4 {
        show(&client, &base, "/checkout").await?;
    }
    assert_eq!(gateway_breaker.state(), CircuitState::Open);
    println!("    the gateway was called {} times in all", gateway.hits());

    println!("3. /orders, while its own breaker is open, answers for itself");
    show(&client, &base, "/orders").await?;
    orders_breaker.transition_to(CircuitState::Open);
    show(&client, &base, "/orders").await?;
    Ok(())
}

async fn show(client: &HttpClient, base: &str, path: &str) -> Result<(), BoxError> {
    let response = client.get(format!("{base}{path}").parse()?).await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| format!(" (Retry-After: {})", v.to_str().unwrap_or("?")))
        .unwrap_or_default();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "    GET {path} -> {status}{retry_after} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}
