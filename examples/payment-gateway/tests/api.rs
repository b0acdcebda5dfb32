//! The service's HTTP API answers as documented (see `payment_gateway::api`).

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use payment_gateway::mock_pg::{Fault, MockPg};
use payment_gateway::{App, PG_BREAKER, PgSettings, Store};
use serde_json::{Value, json};
use support::TempDb;

struct Api {
    app: App,
    pg: MockPg,
    _db: TempDb,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    async fn start() -> Self {
        let pg = MockPg::start().await.unwrap();
        let db = TempDb::new();
        let store = Store::sqlite_file(db.path()).await.unwrap();
        let app = App::start(
            "127.0.0.1:0".parse().unwrap(),
            support::registry(),
            store,
            PgSettings::new(pg.url()),
        )
        .await
        .unwrap();
        Self {
            app,
            pg,
            _db: db,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.app.url()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    async fn json(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send(method, path, body).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn create(&self, order_id: &str, amount: i64) -> (StatusCode, Value) {
        let body = json!({ "orderId": order_id, "name": "hoodie", "amount": amount });
        self.json(Method::POST, "/v1/payments", &body.to_string())
            .await
    }

    async fn success(&self, order_id: &str, amount: i64) -> (StatusCode, Value) {
        let path = format!(
            "/v1/payments/callback/success?orderId={order_id}&paymentKey=pk-{order_id}&amount={amount}"
        );
        self.json(Method::POST, &path, "").await
    }
}

#[tokio::test]
async fn create_then_confirm_answers_the_payment() {
    let api = Api::start().await;
    let (status, body) = api.create("o-1", 25_000).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["result"], "SUCCESS");
    assert_eq!(body["data"]["state"], "ready");
    assert_eq!(body["data"]["amount"], 25_000);

    let (status, body) = api.success("o-1", 25_000).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["state"], "done");
    assert_eq!(body["data"]["approveNo"], "00000001");

    let (status, body) = api.json(Method::GET, "/v1/payments/o-1", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["state"], "done");
}

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let api = Api::start().await;
    api.create("o-1", 25_000).await;
    let cases: [((StatusCode, Value), StatusCode, &str); 4] = [
        (
            api.create("o-1", 25_000).await,
            StatusCode::CONFLICT,
            "ORDER_EXISTS",
        ),
        (
            api.create("o 2", 25_000).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            api.create("o-3", 0).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            api.success("o-1", 1).await,
            StatusCode::BAD_REQUEST,
            "INVALID_AMOUNT",
        ),
    ];
    for ((status, body), expected, code) in &cases {
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["result"], "ERROR");
        assert_eq!(body["error"]["code"], *code, "{body}");
    }
    assert_eq!(
        cases[1].0.1["error"]["message"],
        "orderId `o 2` is not allowed: it must be 1 to 64 letters, digits, - or _"
    );
    let (status, body) = api.create("sub-1-p1-a1", 25_000).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "orderId `sub-1-p1-a1` is not allowed: ids ending in -p<digits>-a<digits> are the \
         subscriptions' charges"
    );
    assert_eq!(
        api.create("sub-1-p1-ax", 25_000).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        cases[2].0.1["error"]["message"],
        "amount 0 is not allowed: it must be above 0"
    );
    assert_eq!(
        cases[3].0.1["error"]["message"],
        "amount 1 is not the order's: it must be 25000"
    );

    let (status, body) = api.success("o-404", 1).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("PAYMENT_NOT_FOUND"))
    );
    let (status, body) = api
        .json(
            Method::POST,
            "/v1/payments/callback/success?orderId=o-1",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "INVALID_REQUEST");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("paymentKey"),
        "{body}"
    );
    let (status, body) = api.json(Method::POST, "/v1/payments", "{not json").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("INVALID_REQUEST"))
    );
}

#[tokio::test]
async fn the_callbacks_answer_each_outcome_with_its_status() {
    let api = Api::start().await;
    for order in ["o-4xx", "o-5xx", "o-open", "o-fail"] {
        api.create(order, 25_000).await;
    }
    api.pg.set_fault(Fault::Reject);
    let (status, body) = api.success("o-4xx", 25_000).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "PAYMENT_REJECTED");
    assert_eq!(body["data"]["state"], "failed");

    api.pg.set_fault(Fault::ServerError);
    let (status, body) = api.success("o-5xx", 25_000).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], "PAYMENT_EXTERNAL_API_FAIL");
    // A 5xx after the request left may have charged: the reconciler asks the PG.
    assert_eq!(body["data"]["state"], "unknown");

    api.app.registry().circuit_breaker(PG_BREAKER).force_open();
    let (status, headers, bytes) = api
        .send(
            Method::POST,
            "/v1/payments/callback/success?orderId=o-open&paymentKey=pk&amount=25000",
            "",
        )
        .await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "PAYMENT_EXTERNAL_API_UNAVAILABLE");
    assert_eq!(body["data"], Value::Null);
    // Forced open: no time to wait out, so no Retry-After.
    assert_eq!(headers.get("retry-after"), None);
    let (_, body) = api.json(Method::GET, "/v1/payments/o-open", "").await;
    assert_eq!(body["data"]["state"], "ready");

    let (status, body) = api
        .json(
            Method::POST,
            "/v1/payments/callback/fail?orderId=o-fail&code=PAY_PROCESS_CANCELED&message=cancelled",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["state"], "failed");
    assert_eq!(body["data"]["failCode"], "PAY_PROCESS_CANCELED");
    let (status, body) = api
        .json(
            Method::POST,
            "/v1/payments/callback/fail?orderId=o-fail&code=X&message=y",
            "",
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("PAYMENT_NOT_READY"))
    );
}

#[tokio::test]
async fn an_open_breaker_answers_503_with_retry_after() {
    let api = Api::start().await;
    api.pg.set_fault(Fault::ServerError);
    for n in 0..10 {
        let order = format!("o-{n}");
        api.create(&order, 25_000).await;
        assert_eq!(api.success(&order, 25_000).await.0, StatusCode::BAD_GATEWAY);
    }
    api.create("o-10", 25_000).await;
    let (status, headers, _) = api
        .send(
            Method::POST,
            "/v1/payments/callback/success?orderId=o-10&paymentKey=pk&amount=25000",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The seed's 30 s, in whole seconds, rounded up.
    assert_eq!(headers.get("retry-after").unwrap(), "30");
    assert_eq!(api.pg.hits(), 10);
}

#[tokio::test]
async fn health_reports_an_open_breaker_and_stays_200() {
    let api = Api::start().await;
    let (status, body) = api.json(Method::GET, "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "up");
    assert_eq!(body["breakerStatus"], "up");
    assert_eq!(body["breakers"][0]["name"], PG_BREAKER);
    assert_eq!(body["breakers"][0]["state"], "closed");

    // Reported, not a reason to be pulled (readiness: see serve.rs).
    api.app.registry().circuit_breaker(PG_BREAKER).force_open();
    let (status, body) = api.json(Method::GET, "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "up");
    assert_eq!(body["breakerStatus"], "down");
    assert_eq!(body["breakers"][0]["state"], "forced_open");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_breaker_and_the_confirmations() {
    let api = Api::start().await;
    api.create("o-1", 25_000).await;
    api.success("o-1", 25_000).await;
    let (status, headers, bytes) = api.send(Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/plain; version=0.0.4"
    );
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        "# TYPE breakwater_circuit_breaker_calls_total counter",
        "breakwater_circuit_breaker_calls_total{breaker=\"beeceptor-payment\",outcome=\"success\"}",
        "breakwater_circuit_breaker_state{breaker=\"beeceptor-payment\",state=\"closed\"}",
        "payment_confirmations_total{outcome=\"approved\"}",
        "payment_confirm_duration_seconds",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
}

#[tokio::test]
async fn a_retried_success_callback_answers_the_payment_and_a_concurrent_one_is_in_progress() {
    let api = Api::start().await;
    api.create("o-1", 25_000).await;
    api.pg
        .set_fault(Fault::Slow(std::time::Duration::from_millis(300)));
    let (first, second) = tokio::join!(api.success("o-1", 25_000), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        api.success("o-1", 25_000).await
    });
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(second.0, StatusCode::CONFLICT, "{}", second.1);
    assert_eq!(second.1["error"]["code"], "PAYMENT_IN_PROGRESS");
    api.pg.set_fault(Fault::None);
    let (status, body) = api.success("o-1", 25_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], first.1["data"], "the same payment");
    assert_eq!(api.pg.ledger().len(), 1, "one charge");
}

#[tokio::test]
async fn a_subscription_is_made_charged_once_per_period_and_read() {
    let api = Api::start().await;
    let body = json!({
        "subscriptionId": "sub-1",
        "customerKey": "customer-1",
        "authKey": "auth-1",
        "name": "monthly plan",
        "amount": 9_900,
        "periodDays": 30,
    });
    let (status, created) = api
        .json(Method::POST, "/v1/subscriptions", &body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["paidPeriods"], 0);
    assert_eq!(created["data"]["state"], "active");
    let (status, again) = api
        .json(Method::POST, "/v1/subscriptions", &body.to_string())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "SUBSCRIPTION_EXISTS");

    // The scheduler's round charges the due period once; a second round finds nothing due.
    let charged = api.app.billing().run_due().await.unwrap();
    assert_eq!(charged.len(), 1);
    assert!(api.app.billing().run_due().await.unwrap().is_empty());
    let (status, read) = api.json(Method::GET, "/v1/subscriptions/sub-1", "").await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let subscription = &read["data"]["subscription"];
    assert_eq!(subscription["paidPeriods"], 1);
    assert_eq!(
        subscription["nextChargeAt"].as_i64().unwrap()
            - subscription["createdAt"].as_i64().unwrap(),
        30 * 24 * 3600 * 1000
    );
    let charges = read["data"]["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["orderId"], "sub-1-p1-a1");
    assert_eq!(charges[0]["state"], "paid");
    let ledger = api.pg.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].order_id, "sub-1-p1-a1");
    assert_eq!(ledger[0].amount, 9_900);

    let (status, missing) = api.json(Method::GET, "/v1/subscriptions/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "SUBSCRIPTION_NOT_FOUND");
    let mut bad = body.clone();
    bad["subscriptionId"] = json!("sub-2");
    bad["periodDays"] = json!(0);
    let (status, refused) = api
        .json(Method::POST, "/v1/subscriptions", &bad.to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused["error"]["message"],
        "periodDays 0 is not allowed: it must be from 1 to 366"
    );
}
