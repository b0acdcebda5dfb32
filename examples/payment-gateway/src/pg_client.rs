//! The PG client: a hyper-util client behind a [`TimeoutLayer`] and the breaker of the
//! configuration file's `beeceptor-payment` instance.
//!
//! ```text
//! CircuitBreakerLayer   records each call when its body ends: 5xx, timeouts, I/O errors and
//!                       unusable answers fail, 4xx is ignored (the file's ignore-exceptions)
//! CheckAnswers          a body over max_body, or a 2xx that is not a payment, fails the body
//!                       (see `pg_answer`): memory stays bounded, and the breaker counts it
//! TimeoutLayer          the read timeout, covering headers and body (3 s)
//! ChaosLayer            the file's `pg-client` chaos, off unless enabled: a 500 the PG never
//!                       saw, a response lost after the PG did the work, a latency spike
//! hyper-util Client     the connect timeout (3 s)
//! ```
//!
//! Every outcome other than success is one [`PgError`], logged as the seed logs it: a
//! rejection (a 4xx) and an open breaker at `warn` (nothing for the on-call engineer to do),
//! a failure of the PG at `error`.

use std::fmt;
use std::time::Duration;

use breakwater::chaos::{Chaos, FaultKind, Injected, InjectedFault};
use breakwater::circuit_breaker::{AtEndOfStream, CircuitBreakerService, WithError};
use breakwater::classify::http::HttpClassifier;
use breakwater::timeout::{CoveringBody, Timeout};
use breakwater::{BoxError, CircuitBreaker, CircuitOpen, Elapsed, Registry, TimeoutLayer};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::pg_answer::{AnswerError, CheckAnswers};
use crate::{PG_BREAKER, PG_CHAOS};

/// The reason every refund of a charge not recorded gives the PG: one text, so that the
/// flow's, the reconciler's and the scheduler's cancels of one payment are one request under
/// one idempotency key.
pub const REFUND_REASON: &str = "charge not recorded";

/// Where the PG is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// The PG's base URL, `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// How long to wait for a connection (the seed's 3 s).
    pub connect_timeout: Duration,
    /// How long to wait for an answer, headers and body (the seed's 3 s).
    pub read_timeout: Duration,
    /// The largest answer read, in bytes; a longer one is an error (a failure of the PG,
    /// counted by the breaker), found before more than this is held.
    pub max_body: usize,
}

impl PgSettings {
    /// The seed's settings (3 s to connect, 3 s to read) for the PG at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(3),
            max_body: 64 * 1024,
        }
    }
}

/// What the merchant asks the PG to confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmCommand {
    /// The key the PG gave when the customer authorised the payment.
    pub payment_key: String,
    /// The merchant's order id.
    pub order_id: String,
    /// In won.
    pub amount: i64,
}

/// A payment as the PG answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgReceipt {
    /// The PG's key.
    pub payment_key: String,
    /// The merchant's order id.
    pub order_id: String,
    /// `IN_PROGRESS`, `DONE`, `CANCELED`, `PARTIAL_CANCELED`, `ABORTED` or `EXPIRED`.
    pub status: String,
    /// How the customer paid (empty until charged).
    #[serde(default)]
    pub method: String,
    /// The approval number (empty until charged).
    #[serde(default)]
    pub approve_no: String,
    /// Authorised or charged, in won.
    pub total_amount: i64,
    /// Still charged, in won.
    #[serde(default)]
    pub balance_amount: i64,
    /// The PG's message.
    pub message: String,
}

impl PgReceipt {
    /// Whether the PG holds the money (charged and not cancelled).
    pub fn is_charged(&self) -> bool {
        self.status == "DONE"
    }
}

/// A billing key, as the PG answers its issue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgBillingKey {
    /// The key to charge with.
    pub billing_key: String,
    /// The customer it belongs to.
    pub customer_key: String,
}

/// A charge with a billing key (`POST /v1/billing/{billingKey}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingCharge {
    /// The customer the key belongs to.
    pub customer_key: String,
    /// In won.
    pub amount: i64,
    /// A new order id for each charge.
    pub order_id: String,
    /// What is charged for.
    pub order_name: String,
}

/// How a cancel ended: cancelled now, or found cancelled already (a second cancel, which the
/// PG refuses with `ALREADY_CANCELED_PAYMENT`: the money is back either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Cancelled by this request (or its replay): the payment as the PG answered it.
    Now(PgReceipt),
    /// Cancelled before.
    Already,
}

/// The idempotency key of a cancel: the payment's key and a hash (FNV-1a, 32 bits) of the
/// reason, so that one cancel is one request and another reason never reuses its key.
fn cancel_key(payment_key: &str, reason: &str) -> String {
    let hash = reason.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("cancel-{payment_key}-{hash:08x}")
}

/// Whether `bytes` is an answer of the PG's API: a payment, or a billing key.
pub(crate) fn check_answer(bytes: &[u8]) -> Result<(), serde_json::Error> {
    match serde_json::from_slice::<PgReceipt>(bytes) {
        Ok(_) => Ok(()),
        Err(error) => serde_json::from_slice::<PgBillingKey>(bytes)
            .map(drop)
            .map_err(|_| error),
    }
}

/// Why a PG call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgError {
    /// The PG refused (a 4xx: insufficient balance, a duplicate, not found). Not a failure of
    /// the PG: the breaker does not count it.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The PG's code, `REJECT_CARD_PAYMENT` say.
        code: String,
        /// The PG's message.
        message: String,
    },
    /// The PG failed: a 5xx, a timeout, a broken connection, an answer that cannot be read.
    /// The breaker counts it.
    ExternalApiFailed {
        /// What went wrong.
        cause: FailureCause,
        /// The details, for the log.
        detail: String,
    },
    /// The PG is still processing a request with the same idempotency key (`409
    /// IDEMPOTENT_REQUEST_PROCESSING`): its outcome is not known yet. Not a failure of the PG.
    InProgress {
        /// The PG's message.
        detail: String,
    },
    /// The breaker is open: no request was made.
    Unavailable {
        /// When the breaker lets a probe through.
        retry_after: Option<Duration>,
    },
}

/// How a PG call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// It answered this 5xx status. It may have done the work all the same (a 500 after the
    /// card network approved, a 502 or 504 from its edge).
    ServerError(u16),
    /// No connection could be made: the request never left.
    Connect,
    /// No answer within the read timeout.
    Timeout,
    /// The connection failed or broke before the answer was complete.
    Transport,
    /// An answer that cannot be used: a 2xx that is not what the PG's API answers, or one
    /// longer than the size limit.
    Malformed,
}

impl PgError {
    /// Whether the PG may have done the work although the caller cannot tell: any failure
    /// after the request left (a 5xx, a timeout, a lost or unreadable answer), and a request
    /// still processed under the same idempotency key. Only a refusal (a 4xx), an open
    /// breaker and a connection that could not be made are known not to have charged. A
    /// payment whose outcome is unknown is settled by asking the PG.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            PgError::ExternalApiFailed { cause, .. } => *cause != FailureCause::Connect,
            PgError::InProgress { .. } => true,
            PgError::Rejected { .. } | PgError::Unavailable { .. } => false,
        }
    }

    /// The code the API answers with: `PAYMENT_REJECTED`, `PAYMENT_EXTERNAL_API_FAIL`,
    /// `PAYMENT_IN_PROGRESS` or `PAYMENT_EXTERNAL_API_UNAVAILABLE`.
    pub fn code(&self) -> &'static str {
        match self {
            PgError::Rejected { .. } => "PAYMENT_REJECTED",
            PgError::ExternalApiFailed { .. } => "PAYMENT_EXTERNAL_API_FAIL",
            PgError::InProgress { .. } => "PAYMENT_IN_PROGRESS",
            PgError::Unavailable { .. } => "PAYMENT_EXTERNAL_API_UNAVAILABLE",
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Rejected {
                status,
                code,
                message,
            } => write!(
                f,
                "the PG rejected the payment ({status} {code}: {message})"
            ),
            PgError::ExternalApiFailed { detail, .. } => write!(f, "the PG call failed: {detail}"),
            PgError::InProgress { detail } => {
                write!(f, "the PG is still processing the request: {detail}")
            }
            PgError::Unavailable {
                retry_after: Some(wait),
            } => write!(
                f,
                "the PG is unavailable (circuit open, retry in {} ms)",
                wait.as_millis()
            ),
            PgError::Unavailable { retry_after: None } => {
                f.write_str("the PG is unavailable (circuit open)")
            }
        }
    }
}

impl std::error::Error for PgError {}

/// The hyper-util client behind the chaos layer, its body and error boxed: the chaos layer
/// has to make responses and errors of the client's types.
type Transport = BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<BoxBody<Bytes, TransportError>>,
    TransportError,
>;

/// The transport's error, of the response and of its body: the client's, or the chaos layer's
/// lost response. (A concrete type: with `BoxError` in these places, rustc cannot prove the
/// handlers' futures `Send`: "implementation of `From` is not general enough".)
#[derive(Debug)]
pub struct TransportError(BoxError);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

type Stack = CircuitBreakerService<
    CheckAnswers<Timeout<Transport, CoveringBody>>,
    HttpClassifier,
    WithError,
    AtEndOfStream,
>;

/// The PG client. Cheap to clone: clones share the connection pool and the breaker.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use payment_gateway::pg_client::{ConfirmCommand, PgClient, PgSettings};
///
/// let registry = breakwater::Registry::from_path(payment_gateway::CONFIG_FILE)?;
/// let pg = PgClient::new(&registry, PgSettings::new("http://127.0.0.1:9090"));
/// let receipt = pg
///     .confirm(&ConfirmCommand {
///         payment_key: "pk-1".into(),
///         order_id: "order-1".into(),
///         amount: 25_000,
///     })
///     .await?;
/// println!("approved: {}", receipt.approve_no);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgClient {
    stack: Stack,
    breaker: CircuitBreaker,
    chaos: Chaos,
    base_url: String,
}

impl PgClient {
    /// A client of the PG at `settings.base_url`, behind `registry`'s `beeceptor-payment`
    /// breaker (see [`PG_BREAKER`]) and its `pg-client` chaos (see [`PG_CHAOS`]).
    pub fn new(registry: &Registry, settings: PgSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let transport: Transport = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(registry.chaos(PG_CHAOS).layer(pg_fault as PgFault))
                .map_err(transport_error as fn(_) -> _)
                .map_response(boxed_body as fn(_) -> _)
                .service(client),
        );
        let timeout = TimeoutLayer::new(settings.read_timeout).covering_body();
        let stack = registry
            .layer(PG_BREAKER)
            .end_of_stream()
            .layer(CheckAnswers::new(
                timeout.layer(transport),
                settings.max_body,
            ));
        let mut base_url = settings.base_url;
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Self {
            stack,
            breaker: registry.circuit_breaker(PG_BREAKER),
            chaos: registry.chaos(PG_CHAOS),
            base_url,
        }
    }

    /// The breaker in front of the PG.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The chaos between the timeout and the connection (the registry's `pg-client`).
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    /// Fails fast if the breaker would reject a call now ([`PgError::Unavailable`], logged
    /// and counted by the breaker as a rejected call), so that a caller does no work for a
    /// call that will not be made. A probe permit taken to check is given back.
    ///
    /// # Errors
    ///
    /// [`PgError::Unavailable`].
    pub fn check_available(&self) -> Result<(), PgError> {
        match self.breaker.try_acquire() {
            Ok(_permit) => Ok(()),
            Err(open) => {
                let error = PgError::Unavailable {
                    retry_after: open.retry_after(),
                };
                log::<()>("check", self.breaker.name(), &Err(error.clone()));
                Err(error)
            }
        }
    }

    /// Asks the PG to charge a payment the customer authorised (`POST /v1/payments/confirm`),
    /// with the idempotency key `confirm-{paymentKey}`: a repeat is answered, never charged
    /// again.
    ///
    /// # Errors
    ///
    /// A [`PgError`]: rejected, failed, in progress or unavailable.
    pub async fn confirm(&self, command: &ConfirmCommand) -> Result<PgReceipt, PgError> {
        let body = serde_json::to_vec(command).map_err(|e| malformed(&e))?;
        let key = format!("confirm-{}", command.payment_key);
        let receipt = self
            .send(Method::POST, "/v1/payments/confirm", Some(body), Some(&key))
            .await
            .and_then(|bytes| receipt(&bytes));
        log("confirm", &command.order_id, &receipt);
        receipt
    }

    /// Asks the PG to cancel (refund) a payment (`POST /v1/payments/{paymentKey}/cancel`),
    /// with the idempotency key `cancel-{paymentKey}-{hash of the reason}`: the same cancel
    /// again is answered again, and a cancel for another reason is a request of its own. A
    /// payment cancelled before (the PG answers `400 ALREADY_CANCELED_PAYMENT`) is
    /// [`Cancelled::Already`]: the money is back.
    ///
    /// # Errors
    ///
    /// A [`PgError`]; `Rejected` with status 404 if the PG has no such payment, 400
    /// `NOT_CANCELABLE_PAYMENT` if it never charged it.
    pub async fn cancel(&self, payment_key: &str, reason: &str) -> Result<Cancelled, PgError> {
        let body = serde_json::to_vec(&serde_json::json!({ "cancelReason": reason }))
            .map_err(|e| malformed(&e))?;
        let path = format!("/v1/payments/{payment_key}/cancel");
        let key = cancel_key(payment_key, reason);
        let cancelled = match self.send(Method::POST, &path, Some(body), Some(&key)).await {
            Ok(bytes) => receipt(&bytes).map(Cancelled::Now),
            Err(PgError::Rejected { code, .. }) if code == "ALREADY_CANCELED_PAYMENT" => {
                Ok(Cancelled::Already)
            }
            Err(other) => Err(other),
        };
        log("cancel", payment_key, &cancelled);
        cancelled
    }

    /// Registers the customer's card for automatic charges
    /// (`POST /v1/billing/authorizations/issue`), once per `auth_key`.
    ///
    /// # Errors
    ///
    /// A [`PgError`].
    pub async fn issue_billing_key(
        &self,
        customer_key: &str,
        auth_key: &str,
    ) -> Result<PgBillingKey, PgError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "customerKey": customer_key,
            "authKey": auth_key,
        }))
        .map_err(|e| malformed(&e))?;
        let key = format!("issue-{auth_key}");
        let issued = self
            .send(
                Method::POST,
                "/v1/billing/authorizations/issue",
                Some(body),
                Some(&key),
            )
            .await
            .and_then(|bytes| {
                serde_json::from_slice::<PgBillingKey>(&bytes).map_err(|e| malformed(&e))
            });
        log("issue billing key", customer_key, &issued);
        issued
    }

    /// Charges with a billing key (`POST /v1/billing/{billingKey}`) under `idempotency_key`:
    /// the same key never charges twice.
    ///
    /// # Errors
    ///
    /// A [`PgError`].
    pub async fn charge_billing(
        &self,
        billing_key: &str,
        charge: &BillingCharge,
        idempotency_key: &str,
    ) -> Result<PgReceipt, PgError> {
        let body = serde_json::to_vec(charge).map_err(|e| malformed(&e))?;
        let path = format!("/v1/billing/{billing_key}");
        let receipt = self
            .send(Method::POST, &path, Some(body), Some(idempotency_key))
            .await
            .and_then(|bytes| receipt(&bytes));
        log("billing charge", &charge.order_id, &receipt);
        receipt
    }

    /// Asks the PG for the payment of an order (`GET /v1/payments/orders/{orderId}`):
    /// `None` if it has none.
    ///
    /// # Errors
    ///
    /// A [`PgError`] if the PG could not say.
    pub async fn payment_of(&self, order_id: &str) -> Result<Option<PgReceipt>, PgError> {
        let path = format!("/v1/payments/orders/{order_id}");
        let found = match self.send(Method::GET, &path, None, None).await {
            Ok(bytes) => receipt(&bytes).map(Some),
            // Only the PG's own "no such payment": a 404 from a proxy or a wrong path is an
            // error, never "not charged".
            Err(PgError::Rejected {
                status: 404, code, ..
            }) if code == "NOT_FOUND_PAYMENT" => Ok(None),
            Err(other) => Err(other),
        };
        log("look-up", order_id, &found);
        found
    }

    /// One request through the stack, its body read whole: the body of a 2xx, or the error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Bytes, PgError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| PgError::ExternalApiFailed {
                cause: FailureCause::Transport,
                detail: format!("cannot build the request to {path}: {e}"),
            })?;
        let mut stack = self.stack.clone();
        let answer = async {
            let response = stack.ready().await?.call(request).await?;
            let (parts, body) = response.into_parts();
            // Bounded and checked by `CheckAnswers`.
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, BoxError>((parts.status, bytes))
        }
        .await;
        match answer {
            Ok((status, bytes)) if status.is_success() => Ok(bytes),
            Ok((status, bytes)) if status.is_client_error() => match rejected(status, &bytes) {
                PgError::Rejected { code, message, .. }
                    if code == "IDEMPOTENT_REQUEST_PROCESSING" =>
                {
                    Err(PgError::InProgress { detail: message })
                }
                other => Err(other),
            },
            Ok((status, bytes)) => Err(PgError::ExternalApiFailed {
                cause: FailureCause::ServerError(status.as_u16()),
                detail: format!(
                    "{path} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            }),
            Err(error) => Err(failed(path, &error)),
        }
    }
}

impl fmt::Debug for PgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgClient")
            .field("base_url", &self.base_url)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

fn transport_error(error: hyper_util::client::legacy::Error) -> TransportError {
    TransportError(Box::new(error))
}

fn boxed_body(
    response: http::Response<hyper::body::Incoming>,
) -> http::Response<BoxBody<Bytes, TransportError>> {
    response.map(|body| body.map_err(|e| TransportError(Box::new(e))).boxed())
}

/// What the chaos layer answers for the PG.
type PgFault =
    fn(Injected) -> Result<http::Response<BoxBody<Bytes, TransportError>>, TransportError>;

/// A call the chaos layer fails is a `500` the PG never saw, in the PG's error shape; a lost
/// response is a broken connection after the PG did the work.
fn pg_fault(
    injected: Injected,
) -> Result<http::Response<BoxBody<Bytes, TransportError>>, TransportError> {
    match injected.kind {
        FaultKind::ResponseLost => Err(TransportError(Box::new(InjectedFault::new(injected)))),
        _ => {
            let body = serde_json::json!({
                "code": "CHAOS_INJECTED",
                "message": InjectedFault::new(injected).to_string(),
            });
            let body = Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed();
            let mut response = http::Response::new(body);
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.extensions_mut().insert(injected);
            Ok(response)
        }
    }
}

#[derive(Deserialize)]
struct PgErrorBody {
    code: String,
    message: String,
}

fn rejected(status: StatusCode, body: &[u8]) -> PgError {
    let (code, message) = match serde_json::from_slice::<PgErrorBody>(body) {
        Ok(error) => (error.code, error.message),
        Err(_) => (
            status.as_u16().to_string(),
            String::from_utf8_lossy(body).into_owned(),
        ),
    };
    PgError::Rejected {
        status: status.as_u16(),
        code,
        message,
    }
}

fn failed(path: &str, error: &BoxError) -> PgError {
    if let Some(open) = error.downcast_ref::<CircuitOpen>() {
        return PgError::Unavailable {
            retry_after: open.retry_after(),
        };
    }
    // One walk down the source chain: the details for the log, and whether a timeout is in it.
    let mut cause = FailureCause::Transport;
    let mut detail = path.to_owned();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = next {
        if e.is::<Elapsed>() {
            cause = FailureCause::Timeout;
        } else if e.is::<AnswerError>() {
            cause = FailureCause::Malformed;
        } else if e
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            cause = FailureCause::Connect;
        }
        detail.push_str(&format!(": {e}"));
        next = e.source();
    }
    PgError::ExternalApiFailed { cause, detail }
}

fn malformed(error: &dyn std::error::Error) -> PgError {
    PgError::ExternalApiFailed {
        cause: FailureCause::Malformed,
        detail: error.to_string(),
    }
}

fn receipt(bytes: &[u8]) -> Result<PgReceipt, PgError> {
    serde_json::from_slice(bytes).map_err(|e| PgError::ExternalApiFailed {
        cause: FailureCause::Malformed,
        detail: format!("the PG's answer is not a payment: {e}"),
    })
}

/// The seed's log lines: warn for what needs no one, error for what needs someone.
fn log<T>(operation: &str, subject: &str, result: &Result<T, PgError>) {
    match result {
        Ok(_) => tracing::debug!(operation, subject, "[PG] ok"),
        Err(error @ PgError::Rejected { .. }) => {
            tracing::warn!(operation, subject, "[PAYMENT_REJECTED] {error}");
        }
        Err(error @ PgError::Unavailable { .. }) => {
            tracing::warn!(operation, subject, "[CIRCUIT_OPEN] {error}");
        }
        Err(error @ PgError::InProgress { .. }) => {
            tracing::warn!(operation, subject, "[PAYMENT_IN_PROGRESS] {error}");
        }
        Err(error @ PgError::ExternalApiFailed { .. }) => {
            tracing::error!(operation, subject, "[PAYMENT_FAILED] {error}");
        }
    }
}
