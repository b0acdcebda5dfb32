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
//!    `ready` again (the breaker is open: the PG was not called, the customer may retry);
//! 4. **compensation**, when step 3 cannot record a charge: the charge is cancelled at the PG
//!    (by payment key: idempotent, retried with backoff), and the cancel recorded. A cancel
//!    that fails, or a record that fails, leaves the payment `in_progress` for the
//!    [reconciler](crate::reconcile), which asks the PG and settles it.
//!
//! Every write goes through [`Writes`]: the store behind the
//! configuration's `database` chaos, which a chaos run turns on.

use std::fmt;
use std::time::{Duration, Instant};

use breakwater::chaos::Chaos;
use tower::ServiceExt;

use metrics::{Counter, Histogram};

use crate::pg_client::{ConfirmCommand, PgClient, PgError};
use crate::store::{Completion, Payment, Settler, Store, StoreError, Write, Writes};

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
    /// The PG charged, the charge could not be recorded, and it was compensated (or left for
    /// the reconciler): the customer was not charged in the end, or will learn later.
    NotRecorded {
        /// Why the charge could not be recorded.
        error: StoreError,
        /// What the compensation achieved.
        compensation: Compensation,
    },
}

/// How a compensation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    /// Cancelled at the PG and recorded `cancelled`.
    Cancelled,
    /// Cancelled at the PG; the record failed, the reconciler will find the cancel.
    CancelledNotRecorded,
    /// The cancel failed: the reconciler will ask the PG and settle the payment.
    LeftToReconciler,
}

impl Compensation {
    /// Whether the money went back to the customer.
    pub fn refunded(self) -> bool {
        self != Compensation::LeftToReconciler
    }
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
            ConfirmError::NotRecorded {
                error,
                compensation,
            } => {
                let what = match compensation {
                    Compensation::Cancelled | Compensation::CancelledNotRecorded => {
                        "the charge was cancelled"
                    }
                    Compensation::LeftToReconciler => {
                        "the charge could not be cancelled yet: the reconciler will settle it"
                    }
                };
                write!(
                    f,
                    "the PG charged but the payment could not be recorded ({error}): {what}"
                )
            }
        }
    }
}

impl std::error::Error for ConfirmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfirmError::Store(e) => Some(e),
            ConfirmError::Pg { error, .. } => Some(error),
            ConfirmError::NotRecorded { error, .. } => Some(error),
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
    compensated: Counter,
    not_recorded: Counter,
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
            compensated: counter("compensated"),
            not_recorded: counter("not_recorded"),
            duration: metrics::histogram!("payment_confirm_duration_seconds"),
        }
    }

    fn count(&self, result: &Result<Payment, ConfirmError>) {
        let counter = match result {
            Ok(_) => &self.approved,
            Err(ConfirmError::Store(_)) => &self.refused,
            Err(ConfirmError::NotRecorded { compensation, .. }) if compensation.refunded() => {
                &self.compensated
            }
            Err(ConfirmError::NotRecorded { .. }) => &self.not_recorded,
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

/// How a compensation retries its cancel: attempts and the first wait, doubled each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Cancels tried in all.
    pub attempts: u32,
    /// The wait after the first failure; each next wait doubles.
    pub first_wait: Duration,
}

impl Default for Backoff {
    /// 4 attempts, waiting 100, 200 and 400 ms between them.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_wait: Duration::from_millis(100),
        }
    }
}

/// Confirms payments: the store, its writes, the PG client and the counters.
#[derive(Debug, Clone)]
pub struct PaymentConfirm {
    store: Store,
    writes: Writes,
    pg: PgClient,
    backoff: Backoff,
    outcomes: Outcomes,
}

impl PaymentConfirm {
    /// A confirm flow over `store` and `pg`, its writes without chaos.
    pub fn new(store: Store, pg: PgClient) -> Self {
        Self {
            writes: store.writes(&Chaos::disabled()),
            store,
            pg,
            backoff: Backoff::default(),
            outcomes: Outcomes::new(),
        }
    }

    /// Its writes behind `chaos` (the configuration's `database` chaos, say).
    #[must_use]
    pub fn with_db_chaos(mut self, chaos: &Chaos) -> Self {
        self.writes = self.store.writes(chaos);
        self
    }

    /// The compensation's retries.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The writes, behind their chaos.
    pub fn writes(&self) -> &Writes {
        &self.writes
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
        let prepared = self
            .write(Write::Prepare {
                order_id: order_id.to_owned(),
                payment_key: payment_key.to_owned(),
                amount,
            })
            .await?;
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
        let completed = self
            .write(Write::Complete {
                order_id: order_id.to_owned(),
                completion,
            })
            .await;
        match (answer, completed) {
            (Ok(_), Ok(payment)) => Ok(payment),
            (Err(error), Ok(payment)) => Err(ConfirmError::Pg {
                error,
                payment: Some(Box::new(payment)),
            }),
            // Settled meanwhile by someone else (the reconciler, after a very slow PG): it
            // holds the PG's answer; cancelling now would undo a recorded charge.
            (Ok(_), Err(error @ StoreError::WrongState { .. })) => {
                tracing::error!(
                    order_id,
                    "[PAYMENT_SETTLED_ELSEWHERE] charged, but the payment was settled \
                     meanwhile: {error}"
                );
                Err(ConfirmError::Store(error))
            }
            // 4. Charged, not recorded: give the money back.
            (Ok(receipt), Err(error)) => {
                tracing::error!(
                    order_id,
                    "[PAYMENT_NOT_RECORDED] charged but cannot complete the payment: {error}; \
                     compensating"
                );
                let compensation = self.compensate(order_id, &receipt.payment_key).await;
                Err(ConfirmError::NotRecorded {
                    error,
                    compensation,
                })
            }
            (Err(answer), Err(store)) => {
                // Not charged, or unknown: nothing to give back now. The payment stays
                // `in_progress`, for the reconciler to settle by asking the PG.
                tracing::error!(
                    order_id,
                    "[PAYMENT_NOT_RECORDED] cannot record the PG's answer ({answer}): {store}"
                );
                Err(ConfirmError::Store(store))
            }
        }
    }

    /// Cancels a charge the flow could not record, retrying with backoff, then records the
    /// cancel. Whatever fails is left `in_progress` for the reconciler.
    async fn compensate(&self, order_id: &str, payment_key: &str) -> Compensation {
        let mut wait = self.backoff.first_wait;
        for attempt in 1..=self.backoff.attempts.max(1) {
            match self
                .pg
                .cancel(payment_key, "payment could not be recorded")
                .await
            {
                Ok(_) => {
                    let recorded = self
                        .write(Write::Cancelled {
                            order_id: order_id.to_owned(),
                            by: Settler::Compensation,
                        })
                        .await;
                    return match recorded {
                        Ok(_) => Compensation::Cancelled,
                        Err(error) => {
                            tracing::error!(
                                order_id,
                                "[COMPENSATION_NOT_RECORDED] cancelled at the PG, cannot \
                                 record it: {error}; left to the reconciler"
                            );
                            Compensation::CancelledNotRecorded
                        }
                    };
                }
                // A cancel the PG refuses will not succeed later.
                Err(error @ PgError::Rejected { .. }) => {
                    tracing::error!(order_id, "[COMPENSATION_FAILED] {error}");
                    break;
                }
                Err(error) if attempt < self.backoff.attempts => {
                    tracing::warn!(order_id, attempt, "[COMPENSATION_RETRY] {error}");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
                Err(error) => {
                    tracing::error!(order_id, attempt, "[COMPENSATION_FAILED] {error}");
                }
            }
        }
        Compensation::LeftToReconciler
    }

    async fn write(&self, write: Write) -> Result<Payment, StoreError> {
        self.writes.clone().oneshot(write).await
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
