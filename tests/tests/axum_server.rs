//! An axum app on loopback: a handler that calls a flaky downstream through the breaker stack,
//! and a route protected by a breaker in 503 mode.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use breakwater::{CircuitBreaker, CircuitOpen, CircuitState, TimeoutLayer};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use loopback::{Answer, FlakyServer};
use tower::{Service, ServiceBuilder, ServiceExt};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Clone)]
struct App {
    gateway: String,
    breaker: CircuitBreaker,
    client: HttpClient,
}

/// Calls the payment gateway through the breaker and a 2 s timeout; a rejected call becomes
/// `503`, any other failure `502`.
async fn checkout(State(app): State<App>) -> (StatusCode, String) {
    let mut stack = ServiceBuilder::new()
        .layer(app.breaker.layer())
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .service(app.client.clone());
    let request = Request::get(&app.gateway).body(Empty::new()).unwrap();
    let result = match stack.ready().await {
        Ok(ready) => ready.call(request).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(response) if response.status().is_success() => (StatusCode::OK, "paid".into()),
        Ok(response) => (
            StatusCode::BAD_GATEWAY,
            format!("gateway answered {}", response.status()),
        ),
        Err(error) if error.is::<CircuitOpen>() => {
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

async fn orders() -> &'static str {
    "orders"
}

/// Serves the app on 127.0.0.1 and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn get_status(client: &HttpClient, url: String) -> (u16, Option<String>, String) {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry_after,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn a_handler_fails_fast_once_its_downstream_breaker_opens() {
    let gateway = FlakyServer::start(Answer::Status(200)).await.unwrap();
    let breaker = CircuitBreaker::builder("payment-gateway")
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/checkout", get(checkout))
        .with_state(App {
            gateway: gateway.url("/confirm"),
            breaker: breaker.clone(),
            client: http_client(),
        });
    let base = serve(app).await;
    let client = http_client();
    assert_eq!(get_status(&client, format!("{base}/checkout")).await.0, 200);

    // With the success before them, three 500s are 75% of the window of four.
    gateway.set(Answer::Status(500));
    for _ in 0..3 {
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(get_status(&client, format!("{base}/checkout")).await.0, 502);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let hits = gateway.hits();
    let (status, _, body) = get_status(&client, format!("{base}/checkout")).await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("circuit breaker `payment-gateway` is open"),
        "{body}"
    );
    assert_eq!(gateway.hits(), hits);
}

#[tokio::test]
async fn a_route_in_503_mode_answers_for_itself_and_stays_infallible() {
    let breaker = CircuitBreaker::builder("orders")
        .wait_duration_in_open(Duration::from_secs(30))
        .build()
        .unwrap();
    // `route_layer` needs the layered route to keep axum's `Infallible` error: the 503 mode
    // does, with no `HandleErrorLayer`.
    let app = Router::new()
        .route("/orders", get(orders))
        .route_layer(breaker.layer().respond_503());
    let base = serve(app).await;
    let client = http_client();
    assert_eq!(
        get_status(&client, format!("{base}/orders")).await,
        (200, None, "orders".into())
    );
    breaker.transition_to(CircuitState::Open);
    let (status, retry_after, body) = get_status(&client, format!("{base}/orders")).await;
    assert_eq!(status, 503);
    // Rounded up to whole seconds: 30 unless a full second passed since the breaker opened.
    assert!(
        matches!(retry_after.as_deref(), Some("30" | "29")),
        "{retry_after:?}"
    );
    assert_eq!(body, "");
    assert_eq!(breaker.metrics().not_permitted_calls, 1);
}
