//! The mock PG's HTTP API and its control endpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::ledger::Refusal;
use super::{CARD_LIMIT, Fault, PgPayment, Shared};

/// Marks a response the server must not send: it drops the connection instead.
#[derive(Debug, Clone, Copy)]
pub(super) struct DropConnection;

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/{payment_key}/cancel", post(cancel))
        .route("/v1/payments/orders/{order_id}", get(by_order))
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

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn answer(payment: PgPayment) -> Response {
    Json(payment).into_response()
}

fn lost() -> Response {
    let mut response = StatusCode::OK.into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

/// What the fault does before the PG does its work: an answer in its place, or nothing.
async fn before(shared: &Shared, confirming: bool) -> Option<Response> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    match shared.fault() {
        Fault::Reject if confirming => Some(error(
            StatusCode::BAD_REQUEST,
            "REJECT_CARD_PAYMENT",
            "insufficient balance",
        )),
        Fault::ServerError => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "internal error, try again later",
        )),
        Fault::Hang => std::future::pending().await,
        _ => None,
    }
}

/// What the fault does to the answer once the work is done.
async fn after(shared: &Shared, response: Response) -> Response {
    match shared.fault() {
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            response
        }
        Fault::LostResponse => lost(),
        _ => response,
    }
}

async fn confirm(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(response) = before(&shared, true).await {
        return response;
    }
    let request: ConfirmRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                &format!("the body must be {{\"paymentKey\", \"orderId\", \"amount\"}}: {e}"),
            );
        }
    };
    if request.amount <= 0 || request.payment_key.is_empty() || request.order_id.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "paymentKey and orderId must not be empty, and amount must be above 0",
        );
    }
    if request.amount > CARD_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            "EXCEED_MAX_CARD_LIMIT",
            "the amount is over the card's limit",
        );
    }
    let result = shared
        .ledger()
        .confirm(&request.payment_key, &request.order_id, request.amount);
    let response = match result {
        Ok(payment) => answer(payment),
        Err(refusal) => refused(&refusal),
    };
    after(&shared, response).await
}

async fn cancel(State(shared): State<Arc<Shared>>, Path(payment_key): Path<String>) -> Response {
    if let Some(response) = before(&shared, false).await {
        return response;
    }
    let result = shared.ledger().cancel(&payment_key);
    let response = match result {
        Ok(payment) => answer(payment),
        Err(refusal) => refused(&refusal),
    };
    after(&shared, response).await
}

async fn by_order(State(shared): State<Arc<Shared>>, Path(order_id): Path<String>) -> Response {
    if let Some(response) = before(&shared, false).await {
        return response;
    }
    let found = shared.ledger().by_order(&order_id);
    let response = match found {
        Some(payment) => answer(payment),
        None => refused(&Refusal::NotFound),
    };
    after(&shared, response).await
}

fn refused(refusal: &Refusal) -> Response {
    match refusal {
        Refusal::Duplicated => error(
            StatusCode::CONFLICT,
            "DUPLICATED_ORDER_ID",
            "the order was paid under another payment key or amount",
        ),
        Refusal::AlreadyCanceled => error(
            StatusCode::BAD_REQUEST,
            "ALREADY_CANCELED_PAYMENT",
            "the payment was cancelled",
        ),
        Refusal::NotFound => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_PAYMENT",
            "no payment under that key or order id",
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
