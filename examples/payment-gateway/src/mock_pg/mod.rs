//! A mock PG (payment gateway) on loopback, in the shape of a real PG's API (Toss Payments'):
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/payments/confirm` `{"paymentKey", "orderId", "amount"}` | `200` the payment (`paymentKey`, `orderId`, `status`, `method`, `approveNo`, `totalAmount`, `message`), or `4xx` `{"code", "message"}` |
//! | `POST /v1/payments/{paymentKey}/cancel` `{"cancelReason"}` | `200` the cancelled payment, `404` if unknown |
//! | `GET /v1/payments/orders/{orderId}` | `200` the payment, `404` if none |
//!
//! A confirm is idempotent per order id: confirming again with the same key and amount
//! answers the payment made the first time and charges nothing; another key or amount for
//! the same order is refused (`409 DUPLICATED_ORDER_ID`). An amount over
//! [`CARD_LIMIT`] is refused as a card over its limit would be (`400 EXCEED_MAX_CARD_LIMIT`).
//!
//! [`Fault`]s switch at run time, from code ([`MockPg::set_fault`]) or over HTTP
//! (`PUT /mock/fault` `{"fault": "slow", "delayMs": 4000}`); `GET /mock/ledger` shows the
//! charges and cancellations, `GET /mock/hits` how many PG requests arrived.
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
use tower::ServiceExt;

pub use ledger::{EntryKind, LedgerEntry, PgPayment, PgStatus};

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

#[derive(Debug, Default)]
struct Shared {
    fault: Mutex<Fault>,
    hits: AtomicU64,
    ledger: Mutex<ledger::Ledger>,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    fn ledger(&self) -> MutexGuard<'_, ledger::Ledger> {
        // Every change to the ledger is complete before the guard drops; a panic cannot leave
        // half of one behind.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
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
        *self
            .shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
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

    /// The payment of `order_id`, if it has one.
    pub fn payment(&self, order_id: &str) -> Option<PgPayment> {
        self.shared.ledger().by_order(order_id)
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

/// The "error" that makes hyper drop a connection without answering.
#[derive(Debug)]
struct ResponseLost;

impl fmt::Display for ResponseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response dropped on purpose (lost-response fault)")
    }
}

impl Error for ResponseLost {}
