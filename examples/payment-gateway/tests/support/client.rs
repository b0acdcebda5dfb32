//! A client of the service's API, every request bounded by a timeout.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long any request of a test may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    /// A client of the service at `base`, `http://127.0.0.1:PORT`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// Sends a request; `Err` if no answer came (the connection failed or closed).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<(StatusCode, Bytes), String> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((parts.status, bytes))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("no answer to {path} within {REQUEST_TIMEOUT:?}"))
    }

    /// Sends a request whose answer is JSON.
    pub async fn json(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, bytes) = self.send(method, path, body).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// `GET path`, as text.
    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let (status, bytes) = self.send(Method::GET, path, "").await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Creates the payment of `order_id`.
    pub async fn create(&self, order_id: &str, amount: i64) -> (StatusCode, Value) {
        let body = json!({ "orderId": order_id, "name": "hoodie", "amount": amount });
        self.json(Method::POST, "/v1/payments", &body.to_string())
            .await
    }

    /// The path of the success callback of `order_id`.
    pub fn success_path(order_id: &str, amount: i64) -> String {
        format!(
            "/v1/payments/callback/success?orderId={order_id}&paymentKey=pk-{order_id}&amount={amount}"
        )
    }

    /// Confirms the payment of `order_id` with the success callback.
    pub async fn success(&self, order_id: &str, amount: i64) -> (StatusCode, Value) {
        self.json(Method::POST, &Self::success_path(order_id, amount), "")
            .await
    }
}

/// Waits until `condition` holds, checking every 10 ms, for at most `limit`.
pub async fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
