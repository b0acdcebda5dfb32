//! A mock PG (payment gateway) on loopback, in the shape of a real PG's API (Toss Payments'):
//!
//! | request | answer |
//! |---|---|
//! | `POST /mock/authorize` `{"orderId", "amount"}` | `200` the payment, `IN_PROGRESS`, with its new `paymentKey` (the customer's step at the checkout) |
//! | `POST /v1/payments/confirm` `{"paymentKey", "orderId", "amount"}` | `200` the payment (`paymentKey`, `orderId`, `status`, `method`, `approveNo`, `totalAmount`, `balanceAmount`, `message`), or `4xx` `{"code", "message"}` |
//! | `POST /v1/payments/{paymentKey}/cancel` `{"cancelReason"}` | `200` the cancelled payment; `400 ALREADY_CANCELED_PAYMENT` the second time; `400 NOT_CANCELABLE_PAYMENT` if never charged; `404` if unknown |
//! | `GET /v1/payments/{paymentKey}`, `GET /v1/payments/orders/{orderId}` | `200` the payment, `404` if none |
//! | `POST /v1/billing/authorizations/issue` `{"customerKey", "authKey"}` | `200` `{"billingKey", "customerKey", "method"}` |
//! | `POST /v1/billing/{billingKey}` `{"customerKey", "amount", "orderId", "orderName"}` | `200` the payment, charged at once; `409 DUPLICATED_ORDER_ID` for an order id charged before |
//!
//! **Statuses.** A payment key is `IN_PROGRESS` from the customer's authorisation until the
//! merchant confirms it (`DONE`), the card is refused (`ABORTED`), or the confirm window
//! ([`MockPg::set_confirm_window`], Toss's 10 minutes by default) passes (`EXPIRED`: a confirm
//! after it is refused `404 NOT_FOUND_PAYMENT_SESSION`). A charge can be cancelled whole
//! (`CANCELED`) or in part (`PARTIAL_CANCELED`). A confirm for a key the mock never issued
//! is taken as authorised when it arrives (tests that skip the checkout).
//!
//! **Idempotency**, as Toss and Stripe do it: a `POST` with an `Idempotency-Key` header is
//! done once; the same key with the same request answers the first answer again and charges
//! nothing; the same key with another request is `422 INVALID_IDEMPOTENCY_KEY`; a request whose
//! key is still being processed is `409 IDEMPOTENT_REQUEST_PROCESSING`. An answer of the PG's
//! own work is kept whatever the network did to it afterwards (a retry of a confirm whose
//! answer became a 502 answers the payment).
//!
//! A confirm is also idempotent per key: confirming again with the same key and amount
//! answers the payment made the first time and charges nothing; another key or amount for
//! the same order is refused (`409 DUPLICATED_ORDER_ID`). An amount over [`CARD_LIMIT`] is
//! refused as a card over its limit would be (`400 EXCEED_MAX_CARD_LIMIT`).
//!
//! [`Fault`]s switch at run time, from code ([`MockPg::set_fault`]) or over HTTP
//! (`PUT /mock/fault` `{"fault": "slow", "delayMs": 4000}`). Besides, a seeded share of the
//! requests that do work (confirms, cancels, billing charges) can answer `500`, `502` or `504`
//! after the work is done ([`MockPg::set_error_after_work`]): the PG charged, its edge lost
//! the answer. `GET /mock/ledger` shows the charges and cancellations, `GET /mock/hits` how many
//! PG requests arrived.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use payment_gateway::mock_pg::{Fault, MockPg};
//!
//! let pg = MockPg::start().await?;
//! pg.set_fault(Fault::ServerError);          // every PG request answers 500 now
//! println!("{} requests so far", pg.hits());
//! # Ok(()) }
//! ```

mod ledger;
mod routes;

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::ServiceExt;

pub use ledger::{BillingKey, EntryKind, LedgerEntry, PgPayment, PgStatus};

/// The largest amount the mock PG's cards allow, in won.
pub const CARD_LIMIT: i64 = 10_000_000;

/// How the mock PG misbehaves. [`Fault::Reject`] touches confirmations only; the others
/// every PG request (confirm, cancel, look-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// It answers as a healthy PG would.
    #[default]
    None,
    /// Confirmations are refused: `400 REJECT_CARD_PAYMENT`, "insufficient balance".
    Reject,
    /// `500 FAILED_INTERNAL_SYSTEM_PROCESSING`; nothing is charged.
    ServerError,
    /// It does the work at once, then answers this much later.
    Slow(Duration),
    /// It never answers, and does nothing, until the client goes away.
    Hang,
    /// It does the work (charges, cancels), then drops the connection without an answer.
    LostResponse,
}

impl Fault {
    /// Reads a fault as the control endpoint and the command line spell it: `none`,
    /// `reject`, `server-error`, `hang`, `lost-response`, or `slow` with `delay_ms`.
    ///
    /// # Errors
    ///
    /// A message naming the value and what is allowed.
    pub fn parse(name: &str, delay_ms: Option<u64>) -> Result<Self, String> {
        Ok(match (name, delay_ms) {
            ("none", _) => Fault::None,
            ("reject", _) => Fault::Reject,
            ("server-error", _) => Fault::ServerError,
            ("hang", _) => Fault::Hang,
            ("lost-response", _) => Fault::LostResponse,
            ("slow", Some(ms)) => Fault::Slow(Duration::from_millis(ms)),
            ("slow", None) => {
                return Err(
                    "fault `slow` needs `delayMs`: how long to wait, in milliseconds".into(),
                );
            }
            (other, _) => {
                return Err(format!(
                    "fault `{other}` is not allowed: it must be one of none, reject, \
                     server-error, slow, hang, lost-response"
                ));
            }
        })
    }

    /// The name [`parse`](Self::parse) reads.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Reject => "reject",
            Fault::ServerError => "server-error",
            Fault::Slow(_) => "slow",
            Fault::Hang => "hang",
            Fault::LostResponse => "lost-response",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Slow(delay) => write!(f, "slow ({} ms)", delay.as_millis()),
            other => f.write_str(other.name()),
        }
    }
}

/// Toss Payments' confirm window: a payment key not confirmed 10 minutes after the customer
/// authorised it expires.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Shared {
    fault: Mutex<Fault>,
    hits: AtomicU64,
    ledger: Mutex<ledger::Ledger>,
    idempotency: Mutex<HashMap<String, routes::Kept>>,
    window: Mutex<Duration>,
    after_work: Mutex<AfterWork>,
    /// Requests that did work, numbered for the after-work draws.
    work: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            fault: Mutex::default(),
            hits: AtomicU64::new(0),
            ledger: Mutex::default(),
            idempotency: Mutex::default(),
            window: Mutex::new(CONFIRM_WINDOW),
            after_work: Mutex::default(),
            work: AtomicU64::new(0),
        }
    }
}

/// The seeded errors answered after the work is done.
#[derive(Debug, Clone, Copy, Default)]
struct AfterWork {
    rate: f64,
    seed: u64,
}

/// splitmix64: a well-mixed 64-bit hash of a seed and a number.
pub(crate) fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw from 0 (inclusive) to 1 (exclusive) out of a hash.
pub(crate) fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

impl Shared {
    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        // Every change under these locks is complete before the guard drops; a panic cannot
        // leave half of one behind.
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn window(&self) -> Duration {
        *Self::lock(&self.window)
    }

    /// The status to answer in place of the work's own, for the next request that did work:
    /// `500`, `502` or `504` at the configured rate, `None` otherwise.
    fn error_after_work(&self) -> Option<u16> {
        let AfterWork { rate, seed } = *Self::lock(&self.after_work);
        if rate <= 0.0 {
            return None;
        }
        let n = self.work.fetch_add(1, Ordering::SeqCst);
        let hash = mix(seed, n);
        (unit(hash) < rate).then(|| [500, 502, 504][(hash % 3) as usize])
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    fn ledger(&self) -> MutexGuard<'_, ledger::Ledger> {
        Self::lock(&self.ledger)
    }
}

/// The mock PG, serving HTTP/1 on loopback until dropped (or [`stop`](Self::stop)ped).
pub struct MockPg {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl MockPg {
    /// Starts it on `127.0.0.1`, on a port the system picks.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts it on `addr`.
    ///
    /// # Errors
    ///
    /// If `addr` cannot be bound.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (shutdown, stopped) = watch::channel(false);
        let router = routes::router(Arc::clone(&shared));
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let router = router.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<Incoming>| {
                        let router = router.clone();
                        async move {
                            let response = match router.oneshot(request).await {
                                Ok(response) => response,
                                Err(infallible) => match infallible {},
                            };
                            // Failing the service makes hyper close the connection without
                            // writing anything: the client sees the connection drop.
                            if response
                                .extensions()
                                .get::<routes::DropConnection>()
                                .is_some()
                            {
                                return Err(ResponseLost);
                            }
                            Ok(response)
                        }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // A client that goes away, or a lost response, ends the connection: no
                    // concern of the server's. Hanging requests end when the server stops.
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.wait_for(|stopped| *stopped) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown,
            accept,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Misbehaves as `fault` says from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.set_fault(fault);
    }

    /// How it misbehaves now.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// How many PG requests (confirm, cancel, look-up) have reached it.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Every charge and cancellation, in order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.shared.ledger().entries()
    }

    /// The payment of `order_id`, if it has one, its status as of now.
    pub fn payment(&self, order_id: &str) -> Option<PgPayment> {
        self.shared
            .ledger()
            .by_order(order_id, Instant::now(), self.shared.window())
    }

    /// The customer authorises `amount` for `order_id` at the checkout: the PG issues a
    /// payment key, `IN_PROGRESS` until confirmed or expired. The same order and amount again
    /// answer the same key.
    ///
    /// # Errors
    ///
    /// A message if the order was authorised for another amount.
    pub fn authorize(&self, order_id: &str, amount: i64) -> Result<PgPayment, String> {
        self.checkout().authorize(order_id, amount)
    }

    /// A handle on the checkout of this PG, for tasks: [`Checkout::authorize`] as
    /// [`authorize`](Self::authorize). It keeps the books alive, not the server.
    pub fn checkout(&self) -> Checkout {
        Checkout(Arc::clone(&self.shared))
    }

    /// How long a payment key may wait for its confirm (Toss: 10 minutes, the default).
    pub fn set_confirm_window(&self, window: Duration) {
        *Shared::lock(&self.shared.window) = window;
    }

    /// From now on, a share `rate` of the requests that do work (confirms, cancels, billing
    /// charges) answer `500`, `502` or `504` after the work is done, drawn from `seed` (the
    /// same seed, the same requests, in arrival order).
    ///
    /// # Errors
    ///
    /// A message naming the rate if it is not a fraction from 0 to 1.
    pub fn set_error_after_work(&self, rate: f64, seed: u64) -> Result<(), String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!(
                "--pg-500-after-charge-rate {rate} is not allowed: it must be a fraction from 0 \
                 to 1 (0.1 is 10%)"
            ));
        }
        *Shared::lock(&self.shared.after_work) = AfterWork { rate, seed };
        self.shared.work.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Cancels `amount` of the charge of `order_id`, as a merchant's partial refund made
    /// outside the service would: the payment reads `PARTIAL_CANCELED`.
    ///
    /// # Errors
    ///
    /// A message if the order has no charge, or `amount` is not less than its balance.
    pub fn partial_cancel(&self, order_id: &str, amount: i64) -> Result<PgPayment, String> {
        let mut ledger = self.shared.ledger();
        let key = ledger
            .by_order(order_id, Instant::now(), self.shared.window())
            .map(|p| p.payment_key)
            .ok_or_else(|| format!("no payment for `{order_id}`"))?;
        ledger
            .partial_cancel(&key, amount)
            .map_err(|refusal| format!("cannot cancel part of `{order_id}`: {refusal:?}"))
    }

    /// Stops serving: the listener closes and every open connection (a hanging request's
    /// included) is dropped.
    pub fn stop(&self) {
        self.accept.abort();
        self.shutdown.send_replace(true);
    }
}

impl fmt::Debug for MockPg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockPg")
            .field("addr", &self.addr)
            .field("fault", &self.fault())
            .field("hits", &self.hits())
            .finish()
    }
}

impl Drop for MockPg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The customer's side of the PG's checkout, cheap to clone: see [`MockPg::checkout`].
#[derive(Clone)]
pub struct Checkout(Arc<Shared>);

impl Checkout {
    /// As [`MockPg::authorize`].
    ///
    /// # Errors
    ///
    /// A message if the order was authorised for another amount.
    pub fn authorize(&self, order_id: &str, amount: i64) -> Result<PgPayment, String> {
        self.0
            .ledger()
            .authorize(order_id, amount, Instant::now())
            .map_err(|refusal| format!("cannot authorise `{order_id}`: {refusal:?}"))
    }
}

impl fmt::Debug for Checkout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkout").finish_non_exhaustive()
    }
}

/// The "error" that makes hyper drop a connection without answering.
#[derive(Debug)]
struct ResponseLost;

impl fmt::Display for ResponseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response dropped on purpose (lost-response fault)")
    }
}

impl Error for ResponseLost {}
