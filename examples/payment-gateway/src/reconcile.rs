//! The reconciler: settles what the confirm flow left unsettled (a lost answer, a 5xx, a
//! failed write, a compensation that failed, a crash, a flow past its deadline) by asking the
//! PG by order id, retries refunds until the PG confirms them, and checks every `done`
//! payment against the PG once.
//!
//! A pass claims the payments unchanged for the grace period (longer than the confirm flow's
//! deadline, so that no confirmation of theirs is still under way), a batch at a time, each
//! claim for a lease; asks the PG, with no transaction open; and settles each claimed
//! payment as the PG says, following the flow's policy (see [`crate::confirm`]): **a charge
//! not recorded as `done` is refunded**.
//!
//! | the payment | the PG says | the payment becomes |
//! |---|---|---|
//! | `in_progress`, `unknown`, `cancel_pending` | charged (`DONE`) | `cancel_pending` (the intent, under the claim, so that a late completion cannot record it), refunded, then `cancelled` |
//! | `in_progress`, `unknown`, `cancel_pending` | `CANCELED` | `cancelled` |
//! | `in_progress`, `unknown` | `EXPIRED`, `ABORTED` | `failed` (`EXPIRED`, `ABORTED`) |
//! | `in_progress`, `unknown` | `IN_PROGRESS` | unchanged: the confirm window is open, a confirm may still arrive |
//! | `in_progress`, `unknown` | no payment | `failed` (`NOT_CHARGED`) once the confirm window has passed since the confirm was sent (the database's clock); unchanged before |
//! | `done` | `DONE`, the same amount | `done`, verified |
//! | `done` | `CANCELED` | `cancelled`: the PG's record wins (logged `REFUNDED_BUT_DONE`) |
//! | any | `PARTIAL_CANCELED`, another amount or payment key, anything else | `manual_review` |
//!
//! A payment the PG cannot be asked about (an error, an open breaker), or whose settlement
//! cannot be written, is released for the next pass (or, if the release fails too, keeps its
//! claim until the lease runs out). A batch's payments are settled at once, each in at most two PG calls (a look-up and
//! a cancel), so a batch finishes within its lease when the lease is longer than two read
//! timeouts and the writes' own: [`Reconciler::new`]'s 30 s lease against the 3 s read
//! timeout. Several reconcilers may run at once, in one process or many: a payment has one
//! claimant at a time (see [`Store::claim`]), and a settlement is written only under its
//! claim.

use std::time::Duration;

use breakwater::chaos::Chaos;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::mock_pg::CONFIRM_WINDOW;
use crate::pg_client::{Cancelled, PgClient, PgReceipt, REFUND_REASON};
use crate::store::{Payment, PaymentState, Settlement, Store, StoreError, Write, Writes};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Payments claimed.
    pub claimed: usize,
    /// Refunded by this reconciler (charged, not recorded): `cancelled`.
    pub refunded: usize,
    /// Found cancelled at the PG: `cancelled`.
    pub cancelled: usize,
    /// Settled `failed`: the PG did not charge.
    pub not_charged: usize,
    /// `done` payments found charged at the PG.
    pub verified: usize,
    /// Set aside for someone to look at.
    pub manual_review: usize,
    /// Claimed but not settled (the PG or the write failed, or the confirm window is still
    /// open): for a later pass.
    pub left: usize,
}

impl Pass {
    /// Payments settled (verified included).
    pub fn settled(&self) -> usize {
        self.refunded + self.cancelled + self.not_charged + self.verified + self.manual_review
    }

    pub(crate) fn add(&mut self, other: Pass) {
        self.claimed += other.claimed;
        self.refunded += other.refunded;
        self.cancelled += other.cancelled;
        self.not_charged += other.not_charged;
        self.verified += other.verified;
        self.manual_review += other.manual_review;
        self.left += other.left;
    }
}

/// Settles unsettled payments by asking the PG; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Reconciler {
    store: Store,
    writes: Writes,
    pg: PgClient,
    claimant: String,
    scope: String,
    grace: Duration,
    lease: Duration,
    batch: u32,
    window: Duration,
}

impl Reconciler {
    /// A reconciler named `claimant` (unique among those running: a host and process id,
    /// say), with a 60 s grace period, 30 s leases, batches of 100 and the PG's 10-minute
    /// confirm window; its writes without chaos.
    pub fn new(store: Store, pg: PgClient, claimant: impl Into<String>) -> Self {
        Self {
            writes: store.writes(&Chaos::disabled()),
            store,
            pg,
            claimant: claimant.into(),
            scope: String::new(),
            grace: Duration::from_secs(60),
            lease: Duration::from_secs(30),
            batch: 100,
            window: CONFIRM_WINDOW,
        }
    }

    /// The PG's confirm window: a payment the PG has no record of is "not charged" only once
    /// this has passed since its confirm was sent.
    #[must_use]
    pub fn confirm_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Its writes behind `chaos`.
    #[must_use]
    pub fn with_db_chaos(mut self, chaos: &Chaos) -> Self {
        self.writes = self.store.writes(chaos);
        self
    }

    /// Settles only orders whose id starts with `prefix` (a chaos run's own, say).
    #[must_use]
    pub fn scope(mut self, prefix: impl Into<String>) -> Self {
        self.scope = prefix.into();
        self
    }

    /// How long a payment must be unchanged before it is settled: longer than the confirm
    /// flow's deadline.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a claim holds.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How many payments one claim takes.
    #[must_use]
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// One pass: claims batches until none is left to claim, settling each.
    ///
    /// # Errors
    ///
    /// A claim failed (the database is down): what was settled before stays settled.
    pub async fn run_once(&self) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        let mut left = Vec::new();
        loop {
            let claimed = self
                .store
                .claim(
                    &self.claimant,
                    &self.scope,
                    self.grace,
                    self.lease,
                    self.batch,
                )
                .await?;
            if claimed.is_empty() {
                break;
            }
            // The database's clock, for the confirm window.
            let now = self.store.clock().await?;
            let mut settling = JoinSet::new();
            for payment in claimed {
                let reconciler = self.clone();
                settling.spawn(async move {
                    let settled = reconciler.settle(&payment, now).await;
                    (payment.order_id, settled)
                });
            }
            while let Some(settled) = settling.join_next().await {
                match settled {
                    Ok((order_id, settled)) => {
                        if settled.left > 0 {
                            left.push(order_id);
                        }
                        pass.add(settled);
                    }
                    Err(_) => pass.add(Pass {
                        claimed: 1,
                        left: 1,
                        ..Pass::default()
                    }),
                }
            }
        }
        // What is left is released at the end of the pass (claimed until then, so this pass
        // does not take it again): the next pass tries it at once, not after the lease. If
        // a release fails, the lease runs out.
        for order_id in left {
            let _ = self.store.release(&order_id, &self.claimant).await;
        }
        Ok(pass)
    }

    /// Runs passes every `every` until `stop` resolves; a pass that fails is logged.
    pub async fn run_until(&self, every: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            match self.run_once().await {
                Ok(pass) if pass.claimed > 0 => tracing::info!(
                    claimed = pass.claimed,
                    settled = pass.settled(),
                    left = pass.left,
                    "[RECONCILE] pass done"
                ),
                Ok(_) => {}
                Err(error) => tracing::error!("[RECONCILE] cannot claim payments: {error}"),
            }
        }
    }

    async fn settle(&self, payment: &Payment, now: i64) -> Pass {
        let left = Pass {
            claimed: 1,
            left: 1,
            ..Pass::default()
        };
        let order_id = payment.order_id.as_str();
        let at_pg = match self.pg.payment_of(order_id).await {
            Ok(at_pg) => at_pg,
            Err(error) => {
                tracing::warn!(order_id, "[RECONCILE] cannot ask the PG: {error}; later");
                return left;
            }
        };
        let (settlement, counted) = match self.decide(payment, at_pg.as_ref(), now) {
            Decision::Settle(settlement, counted) => (settlement, counted),
            Decision::Refund(payment_key) => {
                // The intent first, under the claim: a late completion can no longer record
                // a charge this refunds.
                if payment.state != PaymentState::CancelPending {
                    let intent = Write::RefundIntent {
                        order_id: order_id.to_owned(),
                        claimant: self.claimant.clone(),
                    };
                    if let Err(error) = self.writes.clone().oneshot(intent).await {
                        tracing::warn!(
                            order_id,
                            "[RECONCILE] cannot record the refund's intent: {error}; later"
                        );
                        return left;
                    }
                }
                match self.pg.cancel(&payment_key, REFUND_REASON).await {
                    Ok(Cancelled::Now(_) | Cancelled::Already) => (
                        Settlement::Cancelled,
                        Pass {
                            refunded: 1,
                            ..Pass::default()
                        },
                    ),
                    Err(error) => {
                        tracing::warn!(order_id, "[RECONCILE] cannot refund: {error}; later");
                        return left;
                    }
                }
            }
            Decision::Wait => return left,
        };
        if let Settlement::ManualReview { reason } = &settlement {
            tracing::error!(order_id, "[MANUAL_REVIEW] {reason}");
        }
        let write = Write::Settle {
            order_id: order_id.to_owned(),
            claimant: self.claimant.clone(),
            settlement,
        };
        match self.writes.clone().oneshot(write).await {
            Ok(_) => Pass {
                claimed: 1,
                ..counted
            },
            Err(error) => {
                tracing::warn!(order_id, "[RECONCILE] cannot settle: {error}; later");
                left
            }
        }
    }

    /// What the PG's record means for `payment`, `now` by the database's clock.
    fn decide(&self, payment: &Payment, at_pg: Option<&PgReceipt>, now: i64) -> Decision {
        let review = |reason: String| {
            Decision::Settle(
                Settlement::ManualReview { reason },
                Pass {
                    manual_review: 1,
                    ..Pass::default()
                },
            )
        };
        let cancelled = || {
            Decision::Settle(
                Settlement::Cancelled,
                Pass {
                    cancelled: 1,
                    ..Pass::default()
                },
            )
        };
        let not_charged = |code: &str| {
            Decision::Settle(
                Settlement::NotCharged {
                    code: code.to_owned(),
                },
                Pass {
                    not_charged: 1,
                    ..Pass::default()
                },
            )
        };
        let Some(receipt) = at_pg else {
            return match payment.state {
                PaymentState::InProgress | PaymentState::Unknown => {
                    let sent = payment.prepared_at.unwrap_or(payment.updated_at);
                    let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
                    if now.saturating_sub(sent) > window {
                        not_charged("NOT_CHARGED")
                    } else {
                        Decision::Wait
                    }
                }
                state => review(format!(
                    "the payment is {state} but the PG has no payment for the order"
                )),
            };
        };
        if payment.payment_key.as_deref() != Some(receipt.payment_key.as_str()) {
            return review(format!(
                "the PG's payment for the order has the key {}, the payment {}",
                receipt.payment_key,
                payment.payment_key.as_deref().unwrap_or("none")
            ));
        }
        if receipt.total_amount != payment.amount {
            return review(format!(
                "the PG's amount {} is not the payment's {}",
                receipt.total_amount, payment.amount
            ));
        }
        match (payment.state, receipt.status.as_str()) {
            (PaymentState::Done, "DONE") => Decision::Settle(
                Settlement::Verified,
                Pass {
                    verified: 1,
                    ..Pass::default()
                },
            ),
            (PaymentState::Done, "CANCELED") => {
                tracing::error!(
                    order_id = payment.order_id,
                    "[REFUNDED_BUT_DONE] the PG cancelled a payment recorded done: recorded \
                     cancelled"
                );
                cancelled()
            }
            (_, "DONE") => Decision::Refund(receipt.payment_key.clone()),
            (_, "CANCELED") => cancelled(),
            (PaymentState::InProgress | PaymentState::Unknown, "IN_PROGRESS") => Decision::Wait,
            (
                PaymentState::InProgress | PaymentState::Unknown,
                status @ ("EXPIRED" | "ABORTED"),
            ) => not_charged(status),
            (state, status) => review(format!("the payment is {state}, the PG says {status}")),
        }
    }
}

/// What to do with a claimed payment.
enum Decision {
    /// Write this settlement, counted so.
    Settle(Settlement, Pass),
    /// Charged, not recorded: cancel this payment key, then record it `cancelled`.
    Refund(String),
    /// Not yet: the confirm window is open.
    Wait,
}
