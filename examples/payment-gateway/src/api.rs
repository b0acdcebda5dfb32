//! The payment service's HTTP API (axum), in the seed's shape. Every answer is JSON
//! `{"result": "SUCCESS" | "ERROR", "data": ..., "error": {"code", "message"}}`, but
//! `/metrics` (Prometheus text).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/payments` `{"orderId", "name", "amount"}` | `201` the payment, `ready`; `409 ORDER_EXISTS`; `400 INVALID_REQUEST` |
//! | `GET /v1/payments/{orderId}` | `200` the payment; `404 PAYMENT_NOT_FOUND` |
//! | `POST /v1/payments/callback/success?orderId=&paymentKey=&amount=` | `200` the payment, `done` (a retried callback for a payment done with that key answers it again, and calls nothing); `400 PAYMENT_REJECTED` (the PG refused: `failed`); `502 PAYMENT_EXTERNAL_API_FAIL` (`unknown`: the request left, so the PG may have charged; the reconciler settles it; `failed` only when no connection could be made); `409 PAYMENT_IN_PROGRESS` (the PG is still processing this payment's confirm, or another callback for it is under way: `unknown` or `in_progress`); `503 PAYMENT_EXTERNAL_API_UNAVAILABLE` with `Retry-After` (breaker open, PG not called: `ready` again); `500 PAYMENT_NOT_RECORDED` (charged, not recorded: refunded, or being refunded); `504 PAYMENT_UNSETTLED` (the flow passed its deadline: the reconciler settles it); `400 INVALID_AMOUNT`; `404 PAYMENT_NOT_FOUND`; `409 PAYMENT_NOT_READY` |
//! | `POST /v1/payments/callback/fail?orderId=&code=&message=` | `200` the payment, `failed`; `404`; `409 PAYMENT_NOT_READY` |
//! | `POST /v1/subscriptions` `{"subscriptionId", "customerKey", "authKey", "name", "amount", "periodDays"}` | `201` the subscription, its first period due now (the PG issues the billing key); `400 INVALID_REQUEST`; `409 SUBSCRIPTION_EXISTS`; `502`/`503` as the PG answered |
//! | `GET /v1/subscriptions/{subscriptionId}` | `200` `{"subscription", "charges"}` (every attempt at every period); `404 SUBSCRIPTION_NOT_FOUND` |
//! | `GET /health/live` | `200` `{"status": "up"}` while the process serves (liveness: restart it when this fails) |
//! | `GET /health/ready` | `200` `{"status": "up", "database": {"status": "up"}, "breakerStatus", "breakers": [...]}`; `503` with `"status": "down"` and the database's error when the database does not answer `SELECT 1` within 500 ms (readiness). An open breaker shows in `breakerStatus` (`up`, `degraded`, `down`) and `breakers` (each breaker's state and window) but does not make it `503`: every instance shares the PG, so pulling them all would turn a PG outage into a full one |
//! | `GET /health` | as `/health/ready` |
//! | `GET /metrics` | `200` Prometheus text: breakwater's breaker metrics and `payment_confirmations_total{outcome}` |

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use breakwater::Registry;
use serde::Deserialize;
use serde_json::json;

use crate::billing::{Billing, SubscribeError};
use crate::confirm::{ConfirmError, PaymentConfirm};
use crate::pg_client::PgError;
use crate::store::{Payment, PaymentState, StoreError};
use crate::telemetry;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    confirm: PaymentConfirm,
    billing: Billing,
    registry: Arc<Registry>,
}

impl AppState {
    /// The confirm flow, the subscriptions' billing, and the registry whose breakers
    /// `/health` reports.
    pub fn new(confirm: PaymentConfirm, billing: Billing, registry: Registry) -> Self {
        Self {
            confirm,
            billing,
            registry: Arc::new(registry),
        }
    }
}

/// The service's routes.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/v1/payments", post(create))
        .route("/v1/payments/{order_id}", get(payment))
        .route("/v1/payments/callback/success", post(success))
        .route("/v1/payments/callback/fail", post(fail))
        .route("/v1/subscriptions", post(subscribe))
        .route("/v1/subscriptions/{subscription_id}", get(subscription))
        .route("/health", get(ready))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn ok(status: StatusCode, payment: &Payment) -> Response {
    (
        status,
        Json(json!({ "result": "SUCCESS", "data": payment })),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str, data: Option<&Payment>) -> Response {
    let body = json!({
        "result": "ERROR",
        "data": data,
        "error": { "code": code, "message": message },
    });
    (status, Json(body)).into_response()
}

/// `400 INVALID_REQUEST`: what the request must look like, and what axum found wrong.
fn invalid(shape: &str, problem: &str) -> Response {
    let message = format!("{shape}: {problem}");
    error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &message, None)
}

fn store_error(e: &StoreError) -> Response {
    let message = e.to_string();
    let (status, code) = match e {
        StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "PAYMENT_NOT_FOUND"),
        StoreError::Duplicate { .. } => (StatusCode::CONFLICT, "ORDER_EXISTS"),
        StoreError::AmountMismatch { .. } => (StatusCode::BAD_REQUEST, "INVALID_AMOUNT"),
        StoreError::WrongState {
            state: PaymentState::InProgress | PaymentState::Unknown | PaymentState::CancelPending,
            ..
        } => (StatusCode::CONFLICT, "PAYMENT_IN_PROGRESS"),
        StoreError::WrongState { .. }
        | StoreError::WrongCharge { .. }
        | StoreError::NotDue { .. } => (StatusCode::CONFLICT, "PAYMENT_NOT_READY"),
        StoreError::UnsupportedUrl(_)
        | StoreError::Database(_)
        | StoreError::Migration(_)
        | StoreError::Injected(_)
        | StoreError::Ambiguous(_) => {
            tracing::error!("[STORE] {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
        }
    };
    error(status, code, &message, None)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePayment {
    order_id: String,
    name: String,
    amount: i64,
}

async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreatePayment>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return invalid(
                "the body must be {\"orderId\", \"name\", \"amount\"}",
                &rejection.body_text(),
            );
        }
    };
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &message, None);
    }
    match state
        .confirm
        .store()
        .create_payment(&request.order_id, &request.name, request.amount)
        .await
    {
        Ok(payment) => ok(StatusCode::CREATED, &payment),
        Err(e) => store_error(&e),
    }
}

fn validate(request: &CreatePayment) -> Result<(), String> {
    let id = &request.order_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "orderId `{id}` is not allowed: it must be 1 to 64 letters, digits, - or _"
        ));
    }
    if request.amount <= 0 {
        return Err(format!(
            "amount {} is not allowed: it must be above 0",
            request.amount
        ));
    }
    if charge_shaped(id) {
        return Err(format!(
            "orderId `{id}` is not allowed: ids ending in -p<digits>-a<digits> are the \
             subscriptions' charges"
        ));
    }
    Ok(())
}

/// Whether `id` ends like a subscription's charge (`{subscriptionId}-p{period}-a{attempt}`):
/// such order ids are the scheduler's, so a payment cannot share one with a charge.
fn charge_shaped(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = id.rsplitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(attempt), Some(period), Some(_)) => {
            attempt.strip_prefix('a').is_some_and(digits)
                && period.strip_prefix('p').is_some_and(digits)
        }
        _ => false,
    }
}

async fn payment(State(state): State<AppState>, Path(order_id): Path<String>) -> Response {
    match state.confirm.store().payment(&order_id).await {
        Ok(payment) => ok(StatusCode::OK, &payment),
        Err(e) => store_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuccessParams {
    order_id: String,
    payment_key: String,
    amount: i64,
}

async fn success(
    State(state): State<AppState>,
    params: Result<Query<SuccessParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return invalid(
                "the query must be ?orderId=&paymentKey=&amount=",
                &rejection.body_text(),
            );
        }
    };
    let result = state
        .confirm
        .confirm(&params.order_id, &params.payment_key, params.amount)
        .await;
    match result {
        Ok(payment) => ok(StatusCode::OK, &payment),
        Err(ConfirmError::Store(e)) => store_error(&e),
        Err(e @ ConfirmError::NotRecorded { .. }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "PAYMENT_NOT_RECORDED",
            &e.to_string(),
            None,
        ),
        Err(e @ (ConfirmError::Crashed { .. } | ConfirmError::Deadline { .. })) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "PAYMENT_UNSETTLED",
            &e.to_string(),
            None,
        ),
        Err(ConfirmError::Pg { error: pg, payment }) => {
            let message = pg.to_string();
            let status = match &pg {
                PgError::Rejected { .. } => StatusCode::BAD_REQUEST,
                PgError::ExternalApiFailed { .. } => StatusCode::BAD_GATEWAY,
                PgError::InProgress { .. } => StatusCode::CONFLICT,
                PgError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut response = error(status, pg.code(), &message, payment.as_deref());
            if let PgError::Unavailable {
                retry_after: Some(wait),
            } = pg
            {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscribe {
    subscription_id: String,
    customer_key: String,
    auth_key: String,
    name: String,
    amount: i64,
    period_days: u32,
}

async fn subscribe(
    State(state): State<AppState>,
    body: Result<Json<Subscribe>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return invalid(
                "the body must be {\"subscriptionId\", \"customerKey\", \"authKey\", \"name\", \
                 \"amount\", \"periodDays\"}",
                &rejection.body_text(),
            );
        }
    };
    let check = validate(&CreatePayment {
        order_id: request.subscription_id.clone(),
        name: request.name.clone(),
        amount: request.amount,
    })
    .and_then(|()| {
        if (1..=366).contains(&request.period_days) {
            Ok(())
        } else {
            Err(format!(
                "periodDays {} is not allowed: it must be from 1 to 366",
                request.period_days
            ))
        }
    });
    if let Err(message) = check {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &message, None);
    }
    let subscribed = state
        .billing
        .subscribe(
            &request.subscription_id,
            &request.customer_key,
            &request.auth_key,
            &request.name,
            request.amount,
            Duration::from_secs(u64::from(request.period_days) * 24 * 3600),
        )
        .await;
    match subscribed {
        Ok(subscription) => (
            StatusCode::CREATED,
            Json(json!({ "result": "SUCCESS", "data": subscription })),
        )
            .into_response(),
        Err(SubscribeError::Store(StoreError::Duplicate { .. })) => error(
            StatusCode::CONFLICT,
            "SUBSCRIPTION_EXISTS",
            &format!("subscription `{}` exists already", request.subscription_id),
            None,
        ),
        Err(SubscribeError::Store(e)) => store_error(&e),
        Err(SubscribeError::Pg(pg)) => {
            let status = match &pg {
                PgError::Rejected { .. } => StatusCode::BAD_REQUEST,
                PgError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                PgError::InProgress { .. } => StatusCode::CONFLICT,
                PgError::ExternalApiFailed { .. } => StatusCode::BAD_GATEWAY,
            };
            error(status, pg.code(), &pg.to_string(), None)
        }
    }
}

async fn subscription(
    State(state): State<AppState>,
    Path(subscription_id): Path<String>,
) -> Response {
    let store = state.billing.store();
    match store.subscription(&subscription_id).await {
        Ok(subscription) => {
            let charges: Vec<_> = match store.subscription_charges(&subscription_id).await {
                Ok(charges) => charges
                    .into_iter()
                    .filter(|c| c.subscription_id == subscription_id)
                    .collect(),
                Err(e) => return store_error(&e),
            };
            (
                StatusCode::OK,
                Json(json!({
                    "result": "SUCCESS",
                    "data": { "subscription": subscription, "charges": charges },
                })),
            )
                .into_response()
        }
        Err(StoreError::NotFound { .. }) => error(
            StatusCode::NOT_FOUND,
            "SUBSCRIPTION_NOT_FOUND",
            &format!("no subscription `{subscription_id}`"),
            None,
        ),
        Err(e) => store_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailParams {
    order_id: String,
    code: String,
    message: String,
}

async fn fail(
    State(state): State<AppState>,
    params: Result<Query<FailParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return invalid(
                "the query must be ?orderId=&code=&message=",
                &rejection.body_text(),
            );
        }
    };
    match state
        .confirm
        .fail(&params.order_id, &params.code, &params.message)
        .await
    {
        Ok(payment) => ok(StatusCode::OK, &payment),
        Err(e) => store_error(&e),
    }
}

/// How long readiness waits for the database: under the 1 s a Kubernetes probe waits by
/// default, so that a slow database reads as not ready rather than as a probe timeout.
const READINESS_DATABASE_TIMEOUT: Duration = Duration::from_millis(500);

async fn live() -> Response {
    (StatusCode::OK, Json(json!({ "status": "up" }))).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let database =
        tokio::time::timeout(READINESS_DATABASE_TIMEOUT, state.confirm.store().ping()).await;
    let (ready, database) = match database {
        Ok(Ok(())) => (true, json!({ "status": "up" })),
        Ok(Err(e)) => (false, json!({ "status": "down", "error": e.to_string() })),
        Err(_) => (
            false,
            json!({
                "status": "down",
                "error": format!(
                    "no answer within {} ms",
                    READINESS_DATABASE_TIMEOUT.as_millis()
                ),
            }),
        ),
    };
    // Reported, never a reason to be pulled: see the module docs.
    let breakers = state.registry.health();
    let body = json!({
        "status": if ready { "up" } else { "down" },
        "database": database,
        "breakerStatus": breakers.status.as_str(),
        "breakers": serde_json::to_value(&breakers.breakers)
            .unwrap_or_else(|e| json!({ "error": e.to_string() })),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics() -> Response {
    match telemetry::prometheus() {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                )],
                handle.render(),
            )
                .into_response()
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "METRICS_UNAVAILABLE",
            "another metrics recorder was installed before this service's",
            None,
        ),
    }
}
