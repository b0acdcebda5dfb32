//! The confirm flow of the seed, with no database transaction open while the PG is called (a
//! slow PG must not hold a connection of the pool), bounded by a deadline (20 s by default,
//! shorter than the reconciler's grace: the reconciler never touches a flow still running):
//!
//! 0. **fail fast** if the PG's breaker is open: nothing is prepared for a call that will not
//!    be made, and the payment stays `ready`;
//! 1. **prepare**, one transaction: the amount is the order's, the payment `ready` →
//!    `in_progress`. A retried callback for a payment already `done` with the same key and
//!    amount answers that payment (nothing is called again); one for a payment being confirmed
//!    is refused, so concurrent duplicates make one PG call;
//! 2. **the PG call**, no transaction, with the idempotency key `confirm-{paymentKey}`;
//! 3. **complete**, one transaction: `done` (and the order paid) if the PG approved, `failed`
//!    if it refused (a 4xx: nothing charged), `ready` again if the breaker is open (the PG was
//!    not called, the customer may retry), and `unknown` for every other outcome: after the
//!    request left, a 5xx, a timeout, a lost answer or a request still in progress may have
//!    charged, and only the PG can say (the [reconciler](crate::reconcile) asks it);
//! 4. **compensation**, when step 3 cannot record a charge: the payment is read again (a
//!    commit reported failed may have succeeded: then it is `done`, and that is the answer);
//!    if it is still `in_progress`, the intent is written (`cancel_pending`) before the cancel
//!    is sent (idempotency key `cancel-{paymentKey}`, retried with backoff; "already
//!    cancelled" counts as cancelled), and the cancel recorded (`cancelled`). Whatever fails
//!    is left to the reconciler, which retries the cancel until the PG confirms it.
//!
//! # One policy for a charge not recorded
//!
//! **A charge the flow could not record as `done` is refunded**, on every path: by the flow's
//! compensation, by the reconciler for a payment a crash left `in_progress` or `unknown`, and
//! by the reconciler's retries of a `cancel_pending`. The customer's callback did not answer
//! "paid", so the money goes back and the order is cancelled (the customer orders again). Only
//! the flow, having
//! heard the PG's approval, writes `done`; the reconciler checks every `done` against the PG
//! and follows the PG's record if it was cancelled there.
//!
//! Every write goes through [`Writes`]: the store behind the configuration's `database` chaos,
//! which a chaos run turns on (failed writes, and commits reported failed). A chaos run also
//! injects [`Crashes`]: the flow stops at a step boundary and leaves the rest to the
//! reconciler.

use std::fmt;
use std::time::{Duration, Instant};

use crate::crash::{Crashes, Step};

use breakwater::chaos::Chaos;
use tower::ServiceExt;

use metrics::{Counter, Histogram};

use crate::pg_client::{Cancelled, ConfirmCommand, PgClient, PgError, REFUND_REASON};
use crate::store::{Completion, Payment, PaymentState, Settler, Store, StoreError, Write, Writes};

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
    /// The flow stopped at this step, as a crashed process would (an injected crash): what
    /// it committed stays, the reconciler finishes the rest.
    Crashed {
        /// Where it stopped.
        step: Step,
    },
    /// The flow ran past its deadline and was dropped where it stood: the reconciler
    /// finishes it.
    Deadline {
        /// The deadline.
        after: Duration,
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
            ConfirmError::Crashed { step } => write!(
                f,
                "the confirmation stopped {step} (an injected crash): the reconciler will \
                 settle the payment"
            ),
            ConfirmError::Deadline { after } => write!(
                f,
                "the confirmation took longer than its deadline of {} ms: the reconciler will \
                 settle the payment",
                after.as_millis()
            ),
        }
    }
}

impl std::error::Error for ConfirmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfirmError::Store(e) => Some(e),
            ConfirmError::Pg { error, .. } => Some(error),
            ConfirmError::NotRecorded { error, .. } => Some(error),
            ConfirmError::Crashed { .. } | ConfirmError::Deadline { .. } => None,
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
    stopped: Counter,
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
            stopped: counter("stopped"),
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
            Err(ConfirmError::Crashed { .. } | ConfirmError::Deadline { .. }) => &self.stopped,
            Err(ConfirmError::Pg { error, .. }) => match error {
                PgError::Rejected { .. } => &self.rejected,
                PgError::Unavailable { .. } => &self.unavailable,
                e if e.outcome_unknown() => &self.unknown,
                PgError::ExternalApiFailed { .. } | PgError::InProgress { .. } => &self.failed,
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
    crashes: Crashes,
    deadline: Duration,
}

/// The confirm flow's deadline by default: the PG client's read timeout (3 s), the
/// compensation's cancels (4 tries and 0.7 s of waits) and the writes' own timeouts fit well
/// within it, and the reconciler's grace (60 s) is three times longer.
pub const FLOW_DEADLINE: Duration = Duration::from_secs(20);

/// How long the flows and the reconcilers give each other for a PG client with this read
/// timeout: every time here grows with it, so that a longer read timeout (Toss recommends 60
/// s) never lets a reconciler touch a flow still running.
///
/// ```
/// use std::time::Duration;
/// use payment_gateway::confirm::Timing;
///
/// let seed = Timing::for_read_timeout(Duration::from_secs(3));
/// assert_eq!(seed.deadline, Duration::from_secs(20));
/// assert_eq!(seed.grace, Duration::from_secs(60));
/// assert_eq!(seed.lease, Duration::from_secs(30));
/// let toss = Timing::for_read_timeout(Duration::from_secs(60));
/// assert_eq!(toss.deadline, Duration::from_secs(362));
/// assert!(toss.grace > toss.deadline && toss.lease > 2 * Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A confirmation's (and a period's charge's) deadline: its PG call and, with margin, the
    /// refund's cancels and the waits between them; [`FLOW_DEADLINE`] at least.
    pub deadline: Duration,
    /// The reconciler's grace: three deadlines, 60 s at least.
    pub grace: Duration,
    /// A claim's lease: a batch settles each payment in a look-up and a cancel at once, so
    /// two read timeouts and the writes' own; 30 s at least.
    pub lease: Duration,
}

impl Timing {
    /// The times for a PG client with `read_timeout`.
    pub fn for_read_timeout(read_timeout: Duration) -> Self {
        let deadline = FLOW_DEADLINE.max(
            read_timeout
                .saturating_mul(6)
                .saturating_add(Duration::from_secs(2)),
        );
        Self {
            deadline,
            grace: Duration::from_secs(60).max(deadline.saturating_mul(3)),
            lease: Duration::from_secs(30).max(
                read_timeout
                    .saturating_mul(2)
                    .saturating_add(Duration::from_secs(10)),
            ),
        }
    }
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
            crashes: Crashes::none(),
            deadline: FLOW_DEADLINE,
        }
    }

    /// Crashes injected into the flow (a chaos run's).
    #[must_use]
    pub fn with_crashes(mut self, crashes: Crashes) -> Self {
        self.crashes = crashes;
        self
    }

    /// The deadline of one confirmation ([`FLOW_DEADLINE`] by default): keep it shorter than
    /// the reconciler's grace.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The deadline of one confirmation.
    pub fn deadline(&self) -> Duration {
        self.deadline
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
        let result = tokio::time::timeout(self.deadline, self.run(order_id, payment_key, amount))
            .await
            .unwrap_or_else(|_| {
                tracing::error!(order_id, "[PAYMENT_DEADLINE] the confirmation was dropped");
                Err(ConfirmError::Deadline {
                    after: self.deadline,
                })
            });
        self.outcomes.duration.record(start.elapsed().as_secs_f64());
        self.outcomes.count(&result);
        result
    }

    /// Stops here if this payment's injected crash is at `step`.
    fn crash(&self, order_id: &str, step: Step) -> Result<(), ConfirmError> {
        const STEPS: [Step; 5] = [
            Step::AfterPrepare,
            Step::AfterPgCall,
            Step::AfterComplete,
            Step::AfterIntent,
            Step::AfterCancel,
        ];
        if self.crashes.at(order_id, &STEPS) == Some(step) {
            tracing::warn!(order_id, %step, "[CRASH] injected: the flow stops here");
            return Err(ConfirmError::Crashed { step });
        }
        Ok(())
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
        let prepared = match self
            .write(Write::Prepare {
                order_id: order_id.to_owned(),
                payment_key: payment_key.to_owned(),
                amount,
            })
            .await
        {
            Ok(prepared) => prepared,
            // A retried callback for a payment confirmed with this key: its answer again.
            Err(StoreError::WrongState {
                state: PaymentState::Done,
                ..
            }) => {
                let payment = self.store.payment(order_id).await?;
                if payment.payment_key.as_deref() == Some(payment_key) && payment.amount == amount {
                    return Ok(payment);
                }
                return Err(ConfirmError::Store(StoreError::WrongState {
                    order_id: order_id.to_owned(),
                    state: payment.state,
                    expected: "ready",
                }));
            }
            Err(error) => return Err(error.into()),
        };
        self.crash(order_id, Step::AfterPrepare)?;
        // 2. No transaction open.
        let command = ConfirmCommand {
            payment_key: payment_key.to_owned(),
            order_id: order_id.to_owned(),
            amount: prepared.amount,
        };
        let answer = self.pg.confirm(&command).await;
        self.crash(order_id, Step::AfterPgCall)?;
        // 3. One transaction.
        let completion = match &answer {
            Ok(receipt) => Completion::Approved {
                method: receipt.method.clone(),
                approve_no: receipt.approve_no.clone(),
            },
            Err(PgError::Unavailable { .. }) => Completion::NotCalled,
            Err(PgError::Rejected { code, message, .. }) => Completion::Failed {
                code: code.clone(),
                message: message.clone(),
            },
            Err(error) if error.outcome_unknown() => Completion::Unknown {
                detail: error.to_string(),
            },
            // The connection could not be made: the request never left.
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
        self.crash(order_id, Step::AfterComplete)?;
        match (answer, completed) {
            (Ok(_), Ok(payment)) => Ok(payment),
            (Err(error), Ok(payment)) => Err(ConfirmError::Pg {
                error,
                payment: Some(Box::new(payment)),
            }),
            // 4. Charged, and the completion failed: read what the database holds.
            (Ok(receipt), Err(error)) => {
                self.charged_not_recorded(order_id, &receipt.payment_key, error)
                    .await
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

    /// The PG charged and the completion reported a failure: the commit may have happened
    /// (then the payment is `done`: the answer), or not (then the charge is refunded, the
    /// intent written first).
    async fn charged_not_recorded(
        &self,
        order_id: &str,
        payment_key: &str,
        error: StoreError,
    ) -> Result<Payment, ConfirmError> {
        match self.store.payment(order_id).await {
            Ok(payment) if payment.state == PaymentState::Done => {
                tracing::warn!(
                    order_id,
                    "[PAYMENT_RECORDED] the completion reported `{error}` but committed"
                );
                return Ok(payment);
            }
            Ok(payment) if payment.state != PaymentState::InProgress => {
                // Settled meanwhile by someone else (the reconciler, after a flow that
                // outlived its grace): it follows the PG; nothing to undo here.
                tracing::error!(
                    order_id,
                    state = %payment.state,
                    "[PAYMENT_SETTLED_ELSEWHERE] charged, but the payment was settled \
                     meanwhile: {error}"
                );
                return Err(ConfirmError::Store(error));
            }
            // `in_progress`, or unreadable: compensate (the intent's write is conditional).
            Ok(_) | Err(_) => {}
        }
        tracing::error!(
            order_id,
            "[PAYMENT_NOT_RECORDED] charged but cannot complete the payment: {error}; refunding"
        );
        let compensation = self.compensate(order_id, payment_key).await?;
        Err(ConfirmError::NotRecorded {
            error,
            compensation,
        })
    }

    /// Refunds a charge the flow could not record: the intent first (`cancel_pending`), then
    /// the cancel, retried with backoff, then its record. Whatever fails is left to the
    /// reconciler, which finds `cancel_pending` (or `in_progress`) and refunds it.
    async fn compensate(
        &self,
        order_id: &str,
        payment_key: &str,
    ) -> Result<Compensation, ConfirmError> {
        let intent = self
            .write(Write::CancelPending {
                order_id: order_id.to_owned(),
            })
            .await;
        if let Err(error) = intent {
            // A commit reported failed may have happened: read it.
            let state = self.store.payment(order_id).await.map(|p| p.state);
            if state.as_ref().ok() != Some(&PaymentState::CancelPending) {
                tracing::error!(
                    order_id,
                    "[COMPENSATION_NOT_RECORDED] cannot record the refund's intent: {error}; \
                     left to the reconciler"
                );
                return Ok(Compensation::LeftToReconciler);
            }
        }
        self.crash(order_id, Step::AfterIntent)?;
        let mut wait = self.backoff.first_wait;
        for attempt in 1..=self.backoff.attempts.max(1) {
            match self.pg.cancel(payment_key, REFUND_REASON).await {
                Ok(Cancelled::Now(_) | Cancelled::Already) => {
                    self.crash(order_id, Step::AfterCancel)?;
                    let recorded = self
                        .write(Write::Cancelled {
                            order_id: order_id.to_owned(),
                            by: Settler::Compensation,
                        })
                        .await;
                    return Ok(match recorded {
                        Ok(_) => Compensation::Cancelled,
                        Err(error) => {
                            tracing::error!(
                                order_id,
                                "[COMPENSATION_NOT_RECORDED] cancelled at the PG, cannot \
                                 record it: {error}; left to the reconciler"
                            );
                            Compensation::CancelledNotRecorded
                        }
                    });
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
        Ok(Compensation::LeftToReconciler)
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
