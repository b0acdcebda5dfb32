//! The demo's customer: a plain HTTP client of the service (no breaker of its own), timing
//! each confirmation.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::report::Outcome;

/// One confirmation, as the customer saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it started, since the demo started.
    pub(crate) at: Duration,
    pub(crate) latency: Duration,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone)]
pub(crate) struct Driver {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    start: Instant,
    next_order: u64,
    /// The order ids' prefix: drivers sharing a database need their own.
    prefix: String,
}

pub(crate) type DriverError = Box<dyn std::error::Error + Send + Sync>;

impl Driver {
    pub(crate) fn new(base: String, start: Instant) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            base,
            start,
            next_order: 0,
            prefix: "demo".to_owned(),
        }
    }

    /// Order ids start with `prefix` instead of `demo`.
    pub(crate) fn with_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), DriverError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Creates an order of `amount` and its payment; returns the order id.
    pub(crate) async fn create(&mut self, amount: i64) -> Result<String, DriverError> {
        self.next_order += 1;
        let order_id = format!("{}-{:05}", self.prefix, self.next_order);
        let body =
            serde_json::json!({ "orderId": order_id, "name": "fleece hoodie", "amount": amount });
        let (status, bytes) = self
            .send(Method::POST, "/v1/payments", Some(body.to_string()))
            .await?;
        if status != StatusCode::CREATED {
            return Err(format!(
                "creating {order_id} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )
            .into());
        }
        Ok(order_id)
    }

    /// The success callback for `order_id`, timed.
    pub(crate) async fn confirm(&self, order_id: &str, amount: i64) -> Result<Sample, DriverError> {
        let path = format!(
            "/v1/payments/callback/success?orderId={order_id}&paymentKey=pk-{order_id}&amount={amount}"
        );
        let at = self.start.elapsed();
        let began = Instant::now();
        let (status, bytes) = self.send(Method::POST, &path, None).await?;
        let latency = began.elapsed();
        let outcome = match status.as_u16() {
            200 => Outcome::Approved,
            400 => Outcome::Rejected,
            502 => Outcome::Failed,
            503 => Outcome::Unavailable,
            other => {
                return Err(format!(
                    "confirming {order_id} answered {other}: {}",
                    String::from_utf8_lossy(&bytes)
                )
                .into());
            }
        };
        Ok(Sample {
            at,
            latency,
            outcome,
        })
    }
}
