//! The confirm flow of the seed, in three steps, with no database transaction open while the
//! PG is called (a slow PG must not hold a connection of the pool):
//!
//! 0. **fail fast** if the PG's breaker is open: nothing is prepared for a call that will not
//!    be made, and the payment stays `ready`;
//! 1. **prepare**, one transaction: the amount is the order's, the payment `ready` →
//!    `in_progress`;
//! 2. **the PG call**, no transaction;
//! 3. **complete**, one transaction: `done` (and the order paid), `failed` (rejected, or the
//!    PG answered 5xx: nothing charged), `unknown` (no answer: it may have charged), or
//!    `ready` again (the breaker is open: the PG was not called, the customer may retry).

use std::fmt;
use std::time::Instant;

use metrics::{Counter, Histogram};

use crate::pg_client::{ConfirmCommand, PgClient, PgError};
use crate::store::{Completion, Payment, Store, StoreError};

/// Why a confirmation did not end with a charge.
#[derive(Debug)]
pub enum ConfirmError {
    /// The store refused (unknown order, wrong amount, not `ready`) or failed.
    Store(StoreError),
    /// The PG did not charge, or may have: the payment as it is left.
    Pg {
        /// What the PG client said.
        error: PgError,
        /// The payment after step 3; `None` if the breaker was open before step 1 (nothing
        /// was touched).
        payment: Option<Box<Payment>>,
    },
}

impl fmt::Display for ConfirmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfirmError::Store(e) => e.fmt(f),
            ConfirmError::Pg {
                error,
                payment: Some(payment),
            } => write!(
                f,
                "{error} (payment {} is {})",
                payment.order_id, payment.state
            ),
            ConfirmError::Pg {
                error,
                payment: None,
            } => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfirmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfirmError::Store(e) => Some(e),
            ConfirmError::Pg { error, .. } => Some(error),
        }
    }
}

impl From<StoreError> for ConfirmError {
    fn from(e: StoreError) -> Self {
        ConfirmError::Store(e)
    }
}

/// How confirmations ended, counted through the `metrics` facade as
/// `payment_confirmations_total{outcome}` (handles made once, here).
#[derive(Debug, Clone)]
struct Outcomes {
    approved: Counter,
    rejected: Counter,
    failed: Counter,
    unknown: Counter,
    unavailable: Counter,
    refused: Counter,
    duration: Histogram,
}

impl Outcomes {
    fn new() -> Self {
        let counter = |outcome: &'static str| metrics::counter!("payment_confirmations_total", "outcome" => outcome);
        Self {
            approved: counter("approved"),
            rejected: counter("rejected"),
            failed: counter("failed"),
            unknown: counter("unknown"),
            unavailable: counter("unavailable"),
            refused: counter("refused"),
            duration: metrics::histogram!("payment_confirm_duration_seconds"),
        }
    }

    fn count(&self, result: &Result<Payment, ConfirmError>) {
        let counter = match result {
            Ok(_) => &self.approved,
            Err(ConfirmError::Store(_)) => &self.refused,
            Err(ConfirmError::Pg { error, .. }) => match error {
                PgError::Rejected { .. } => &self.rejected,
                PgError::Unavailable { .. } => &self.unavailable,
                e if e.outcome_unknown() => &self.unknown,
                PgError::ExternalApiFailed { .. } => &self.failed,
            },
        };
        counter.increment(1);
    }
}

/// Confirms payments: the store, the PG client and the counters.
#[derive(Debug, Clone)]
pub struct PaymentConfirm {
    store: Store,
    pg: PgClient,
    outcomes: Outcomes,
}

impl PaymentConfirm {
    /// A confirm flow over `store` and `pg`.
    pub fn new(store: Store, pg: PgClient) -> Self {
        Self {
            store,
            pg,
            outcomes: Outcomes::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The PG client.
    pub fn pg(&self) -> &PgClient {
        &self.pg
    }

    /// The success callback: confirms the payment of `order_id` at the PG.
    ///
    /// # Errors
    ///
    /// A [`ConfirmError`]: the payment cannot be confirmed (store), or the PG did not charge
    /// (the payment as left).
    pub async fn confirm(
        &self,
        order_id: &str,
        payment_key: &str,
        amount: i64,
    ) -> Result<Payment, ConfirmError> {
        let start = Instant::now();
        let result = self.run(order_id, payment_key, amount).await;
        self.outcomes.duration.record(start.elapsed().as_secs_f64());
        self.outcomes.count(&result);
        result
    }

    async fn run(
        &self,
        order_id: &str,
        payment_key: &str,
        amount: i64,
    ) -> Result<Payment, ConfirmError> {
        // 0. The breaker is open: the PG will not be called, so there is nothing to prepare.
        if let Err(error) = self.pg.check_available() {
            return Err(ConfirmError::Pg {
                error,
                payment: None,
            });
        }
        // 1. One transaction, closed before the PG is called.
        let prepared = self.store.prepare(order_id, payment_key, amount).await?;
        // 2. No transaction open.
        let command = ConfirmCommand {
            payment_key: payment_key.to_owned(),
            order_id: order_id.to_owned(),
            amount: prepared.amount,
        };
        let answer = self.pg.confirm(&command).await;
        // 3. One transaction.
        let completion = match &answer {
            Ok(receipt) => Completion::Approved {
                method: receipt.method.clone(),
                approve_no: receipt.approve_no.clone(),
            },
            Err(PgError::Unavailable { .. }) => Completion::NotCalled,
            Err(error) if error.outcome_unknown() => Completion::Unknown {
                detail: error.to_string(),
            },
            Err(PgError::Rejected { code, message, .. }) => Completion::Failed {
                code: code.clone(),
                message: message.clone(),
            },
            Err(error) => Completion::Failed {
                code: error.code().to_owned(),
                message: error.to_string(),
            },
        };
        let completed = self.store.complete(order_id, completion).await;
        match (answer, completed) {
            (Ok(_), Ok(payment)) => Ok(payment),
            (Err(error), Ok(payment)) => Err(ConfirmError::Pg {
                error,
                payment: Some(Box::new(payment)),
            }),
            (answer, Err(store)) => {
                // The PG's answer is not recorded: the payment stays `in_progress`, for the
                // reconciler to settle by asking the PG.
                tracing::error!(
                    order_id,
                    charged = answer.is_ok(),
                    "[PAYMENT_NOT_RECORDED] cannot complete the payment: {store}"
                );
                Err(ConfirmError::Store(store))
            }
        }
    }

    /// The fail callback: the customer's authorisation failed at the PG.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]: not found, or not `ready`.
    pub async fn fail(
        &self,
        order_id: &str,
        code: &str,
        message: &str,
    ) -> Result<Payment, StoreError> {
        self.store.fail(order_id, code, message).await
    }
}
