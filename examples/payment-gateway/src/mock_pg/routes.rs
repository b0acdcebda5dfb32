//! The mock PG's HTTP API and its control endpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::ledger::{Ledger, Refusal};
use super::{CARD_LIMIT, Fault, PgPayment, Shared};

/// Marks a response the server must not send: it drops the connection instead.
#[derive(Debug, Clone, Copy)]
pub(super) struct DropConnection;

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/mock/authorize", post(authorize))
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/{payment_key}", get(by_key))
        .route("/v1/payments/{payment_key}/cancel", post(cancel))
        .route("/v1/payments/orders/{order_id}", get(by_order))
        .route("/v1/billing/authorizations/issue", post(issue_billing_key))
        .route("/v1/billing/{billing_key}", post(charge_billing))
        .route("/mock/fault", put(set_fault).get(fault))
        .route("/mock/ledger", get(ledger))
        .route("/mock/hits", get(hits))
        .with_state(shared)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmRequest {
    payment_key: String,
    order_id: String,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizeRequest {
    order_id: String,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueRequest {
    customer_key: String,
    auth_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BillingRequest {
    customer_key: String,
    amount: i64,
    order_id: String,
    #[serde(default)]
    order_name: String,
}

/// An answer, before the network does anything to it.
type Answer = (StatusCode, serde_json::Value);

fn error_body(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, json!({ "code": code, "message": message }))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    respond(error_body(status, code, message))
}

fn respond((status, body): Answer) -> Response {
    (status, Json(body)).into_response()
}

fn payment_body(payment: &PgPayment) -> Answer {
    match serde_json::to_value(payment) {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            &e.to_string(),
        ),
    }
}

fn lost() -> Response {
    let mut response = StatusCode::OK.into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

/// What the fault does before the PG does its work: an answer in its place, or nothing.
async fn before(shared: &Shared) -> Option<Response> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    match shared.fault() {
        Fault::ServerError => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "internal error, try again later",
        )),
        Fault::Hang => std::future::pending().await,
        _ => None,
    }
}

/// What the network does to the answer once the work is done: for a request that did work,
/// the seeded 5xx of [`MockPg::set_error_after_work`](super::MockPg::set_error_after_work);
/// then the fault's delay or lost response.
async fn deliver(shared: &Shared, answer: Answer, did_work: bool) -> Response {
    if let Some(status) = did_work.then(|| shared.error_after_work()).flatten() {
        let (code, message) = match status {
            502 => ("BAD_GATEWAY", "the PG's edge lost the answer"),
            504 => ("GATEWAY_TIMEOUT", "the PG's edge timed out"),
            _ => (
                "FAILED_INTERNAL_SYSTEM_PROCESSING",
                "internal error after processing",
            ),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, code, message);
    }
    match shared.fault() {
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            respond(answer)
        }
        Fault::LostResponse => lost(),
        _ => respond(answer),
    }
}

/// What the PG keeps of a request with an `Idempotency-Key`: the request, and its answer once
/// the work is done (`None` while it is processed).
#[derive(Debug, Clone)]
pub(super) struct Kept {
    fingerprint: Vec<u8>,
    answer: Option<(StatusCode, Bytes)>,
}

/// Keeps the answer of a request under its key when the handler ends, however it ends (a
/// client that goes away during a slow answer drops the handler): with no answer yet, the key
/// is released.
struct KeepGuard {
    shared: Arc<Shared>,
    key: String,
    answer: Option<(StatusCode, Bytes)>,
}

impl Drop for KeepGuard {
    fn drop(&mut self) {
        let mut kept = Shared::lock(&self.shared.idempotency);
        match self.answer.take() {
            Some(answer) => {
                if let Some(entry) = kept.get_mut(&self.key) {
                    entry.answer = Some(answer);
                }
            }
            None => {
                kept.remove(&self.key);
            }
        }
    }
}

/// What the keeper says of a request with an idempotency key.
enum Begin {
    /// A new key: do the work.
    Fresh,
    /// Done before: this answer again.
    Answered(Answer),
    /// Reused with another request, or still being processed.
    Refused(Response),
}

fn begin(shared: &Shared, key: &str, fingerprint: Vec<u8>) -> Begin {
    let mut kept = Shared::lock(&shared.idempotency);
    match kept.get(key) {
        Some(entry) if entry.fingerprint != fingerprint => Begin::Refused(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_IDEMPOTENCY_KEY",
            "the Idempotency-Key was used with another request",
        )),
        Some(Kept { answer: None, .. }) => Begin::Refused(error(
            StatusCode::CONFLICT,
            "IDEMPOTENT_REQUEST_PROCESSING",
            "a request with this Idempotency-Key is being processed",
        )),
        Some(Kept {
            answer: Some((status, bytes)),
            ..
        }) => {
            let body = serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null);
            Begin::Answered((*status, body))
        }
        None => {
            kept.insert(
                key.to_owned(),
                Kept {
                    fingerprint,
                    answer: None,
                },
            );
            Begin::Fresh
        }
    }
}

/// Runs `work` once per `Idempotency-Key` (see the [module docs](super)), then delivers its
/// answer through the network's faults.
async fn idempotent(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    path: &str,
    body: &Bytes,
    work: impl FnOnce(&Shared) -> Answer,
) -> Response {
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= 300 => Some(key.to_owned()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_IDEMPOTENCY_KEY",
                "the Idempotency-Key header must be 1 to 300 visible ASCII characters",
            );
        }
    };
    let fingerprint = [path.as_bytes(), b"\n", body].concat();
    let mut guard = None;
    if let Some(key) = key {
        match begin(shared, &key, fingerprint) {
            Begin::Fresh => {
                guard = Some(KeepGuard {
                    shared: Arc::clone(shared),
                    key,
                    answer: None,
                });
            }
            Begin::Answered(answer) => return deliver(shared, answer, false).await,
            Begin::Refused(response) => return response,
        }
    }
    let answer = work(shared);
    if let Some(guard) = guard.as_mut() {
        let bytes = Bytes::from(answer.1.to_string());
        guard.answer = Some((answer.0, bytes));
    }
    let response = deliver(shared, answer, true).await;
    drop(guard);
    response
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes, shape: &str) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| {
        error_body(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            &format!("the body must be {shape}: {e}"),
        )
    })
}

fn check_amount(amount: i64, ids: &[&str]) -> Result<(), Answer> {
    if amount <= 0 || ids.iter().any(|id| id.is_empty()) {
        return Err(error_body(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "keys and ids must not be empty, and amount must be above 0",
        ));
    }
    if amount > CARD_LIMIT {
        return Err(error_body(
            StatusCode::BAD_REQUEST,
            "EXCEED_MAX_CARD_LIMIT",
            "the amount is over the card's limit",
        ));
    }
    Ok(())
}

async fn authorize(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: AuthorizeRequest = match parse(&body, "{\"orderId\", \"amount\"}") {
        Ok(request) => request,
        Err(answer) => return respond(answer),
    };
    if let Err(response) = check_amount(request.amount, &[&request.order_id]) {
        return respond(response);
    }
    let result = shared
        .ledger()
        .authorize(&request.order_id, request.amount, Instant::now());
    respond(match result {
        Ok(payment) => payment_body(&payment),
        Err(refusal) => refused(&refusal),
    })
}

async fn confirm(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = before(&shared).await {
        return response;
    }
    let request: ConfirmRequest = match parse(&body, "{\"paymentKey\", \"orderId\", \"amount\"}") {
        Ok(request) => request,
        Err(answer) => return respond(answer),
    };
    if let Err(response) = check_amount(request.amount, &[&request.payment_key, &request.order_id])
    {
        return respond(response);
    }
    idempotent(&shared, &headers, "confirm", &body, |shared| {
        let (now, window) = (Instant::now(), shared.window());
        let mut ledger = shared.ledger();
        let (key, order, amount) = (&request.payment_key, &request.order_id, request.amount);
        let result = if shared.fault() == Fault::Reject {
            ledger
                .abort(key, order, amount, now)
                .and(Err(Refusal::Aborted))
        } else {
            ledger.confirm(key, order, amount, now, window)
        };
        match result {
            Ok(payment) => payment_body(&payment),
            Err(refusal) => refused(&refusal),
        }
    })
    .await
}

async fn cancel(
    State(shared): State<Arc<Shared>>,
    Path(payment_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = before(&shared).await {
        return response;
    }
    let path = format!("cancel {payment_key}");
    idempotent(&shared, &headers, &path, &body, |shared| {
        let result = shared
            .ledger()
            .cancel(&payment_key, Instant::now(), shared.window());
        match result {
            Ok(payment) => payment_body(&payment),
            Err(refusal) => refused(&refusal),
        }
    })
    .await
}

async fn by_key(State(shared): State<Arc<Shared>>, Path(payment_key): Path<String>) -> Response {
    look_up(&shared, |ledger, now, window| {
        ledger.by_key(&payment_key, now, window)
    })
    .await
}

async fn by_order(State(shared): State<Arc<Shared>>, Path(order_id): Path<String>) -> Response {
    look_up(&shared, |ledger, now, window| {
        ledger.by_order(&order_id, now, window)
    })
    .await
}

/// A look-up: the payment `find` finds, its status as of now, or `404 NOT_FOUND_PAYMENT`.
async fn look_up(
    shared: &Shared,
    find: impl FnOnce(&Ledger, Instant, std::time::Duration) -> Option<PgPayment>,
) -> Response {
    if let Some(response) = before(shared).await {
        return response;
    }
    let found = find(&shared.ledger(), Instant::now(), shared.window());
    let answer = match found {
        Some(payment) => payment_body(&payment),
        None => refused(&Refusal::NotFound),
    };
    deliver(shared, answer, false).await
}

async fn issue_billing_key(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = before(&shared).await {
        return response;
    }
    let request: IssueRequest = match parse(&body, "{\"customerKey\", \"authKey\"}") {
        Ok(request) => request,
        Err(answer) => return respond(answer),
    };
    if request.customer_key.is_empty() || request.auth_key.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "customerKey and authKey must not be empty",
        );
    }
    idempotent(&shared, &headers, "issue", &body, |shared| {
        let key = shared.ledger().issue_billing_key(&request.customer_key);
        match serde_json::to_value(key) {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "FAILED_INTERNAL_SYSTEM_PROCESSING",
                &e.to_string(),
            ),
        }
    })
    .await
}

async fn charge_billing(
    State(shared): State<Arc<Shared>>,
    Path(billing_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = before(&shared).await {
        return response;
    }
    let request: BillingRequest = match parse(
        &body,
        "{\"customerKey\", \"amount\", \"orderId\", \"orderName\"}",
    ) {
        Ok(request) => request,
        Err(answer) => return respond(answer),
    };
    if let Err(response) = check_amount(request.amount, &[&request.customer_key, &request.order_id])
    {
        return respond(response);
    }
    let _ = &request.order_name;
    let path = format!("billing {billing_key}");
    idempotent(&shared, &headers, &path, &body, |shared| {
        let result = if shared.fault() == Fault::Reject {
            Err(Refusal::Aborted)
        } else {
            shared.ledger().charge_billing(
                &billing_key,
                &request.customer_key,
                &request.order_id,
                request.amount,
                Instant::now(),
            )
        };
        match result {
            Ok(payment) => payment_body(&payment),
            Err(refusal) => refused(&refusal),
        }
    })
    .await
}

fn refused(refusal: &Refusal) -> Answer {
    match refusal {
        Refusal::Duplicated => error_body(
            StatusCode::CONFLICT,
            "DUPLICATED_ORDER_ID",
            "the order was paid under another payment key or amount",
        ),
        Refusal::AlreadyCanceled => error_body(
            StatusCode::BAD_REQUEST,
            "ALREADY_CANCELED_PAYMENT",
            "the payment was cancelled already",
        ),
        Refusal::NotFound => error_body(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_PAYMENT",
            "no payment under that key or order id",
        ),
        Refusal::Expired => error_body(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_PAYMENT_SESSION",
            "the confirm window passed: the payment key expired",
        ),
        Refusal::Aborted => error_body(
            StatusCode::BAD_REQUEST,
            "REJECT_CARD_PAYMENT",
            "insufficient balance",
        ),
        Refusal::NotCancelable => error_body(
            StatusCode::BAD_REQUEST,
            "NOT_CANCELABLE_PAYMENT",
            "only a charged payment can be cancelled",
        ),
        Refusal::NotFoundBillingKey => error_body(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_BILLING_KEY",
            "no such billing key for that customer",
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultRequest {
    fault: String,
    delay_ms: Option<u64>,
}

async fn set_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                &format!("the body must be {{\"fault\": NAME, \"delayMs\": N}}: {e}"),
            );
        }
    };
    match Fault::parse(&request.fault, request.delay_ms) {
        Ok(fault) => {
            shared.set_fault(fault);
            describe(fault)
        }
        Err(message) => error(StatusCode::BAD_REQUEST, "INVALID_FAULT", &message),
    }
}

async fn fault(State(shared): State<Arc<Shared>>) -> Response {
    describe(shared.fault())
}

fn describe(fault: Fault) -> Response {
    let delay_ms = match fault {
        Fault::Slow(delay) => Some(delay.as_millis()),
        _ => None,
    };
    Json(json!({ "fault": fault.name(), "delayMs": delay_ms })).into_response()
}

async fn ledger(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "entries": shared.ledger().entries() })).into_response()
}

async fn hits(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "hits": shared.hits.load(Ordering::SeqCst) })).into_response()
}
