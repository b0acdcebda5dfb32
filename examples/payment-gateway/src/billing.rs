//! Seed 2: subscriptions paid with a billing key, charged once per period by a scheduler
//! through the same PG client (breaker, timeout), then saved.
//!
//! The customer registers a card ([`Billing::subscribe`]: the PG issues a billing key); each
//! period the scheduler ([`Billing::run_due`]) claims the due subscriptions and, for each:
//!
//! 1. **opens an attempt**, one row `charging` (order id `{subscriptionId}-p{period}-a{attempt}`),
//!    written before the charge is sent, under the subscription's claim;
//! 2. **charges** with the billing key, idempotency key `billing-{orderId}`: a retry of an
//!    attempt can never charge twice, and a period is charged by one attempt at a time;
//! 3. **saves the period**, one transaction: the attempt `paid`, the subscription's
//!    `paid_periods` on and its next charge a period later;
//! 4. if the save fails, **auto-refund** (on by default): the attempt is read again (a commit
//!    reported failed may have happened), the intent written (`refund_pending`), the charge
//!    cancelled and the attempt recorded `refunded`. The subscription stays due: the next
//!    round tries the period again with a new attempt.
//!
//! A charge whose outcome is unknown (a 5xx, a timeout, a lost answer) leaves its attempt
//! `charging`; [`Billing::reconcile_once`] settles open attempts by asking the PG, with the
//! payments' policy: a charge not saved is refunded.
//!
//! **Auto-refund off** is the seed's "before", kept to show the damage: no attempt is written
//! before the charge, a failed save is logged and left (the customer charged, not
//! subscribed), and there is nothing for a reconciler to find.

use std::time::Duration;

use breakwater::chaos::Chaos;
use serde::Serialize;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::confirm::Backoff;
use crate::crash::{Crashes, Step};
use crate::pg_client::{BillingCharge, Cancelled, PgClient, PgError, REFUND_REASON};
use crate::reconcile::Pass;
use crate::store::{
    BillingWrite, BillingWrites, ChargeSettlement, ChargeState, Store, StoreError, Subscription,
    SubscriptionCharge,
};

/// How one period's charge ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeOutcome {
    /// Charged and saved.
    Paid,
    /// Charged, not saved, refunded.
    Refunded,
    /// Charged, not saved; the refund is left to the reconciler.
    RefundLeft,
    /// Charged, not saved, and nothing more (auto-refund off): the damage.
    NotSaved,
    /// Not charged (refused, breaker open, or the attempt could not be opened).
    NotCharged,
    /// The outcome is unknown: the attempt is left `charging` for the reconciler.
    Unknown,
    /// An injected crash stopped it.
    Crashed,
}

impl ChargeOutcome {
    /// How the chaos run's table names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeOutcome::Paid => "paid",
            ChargeOutcome::Refunded => "refunded",
            ChargeOutcome::RefundLeft => "refund left to the reconciler",
            ChargeOutcome::NotSaved => "charged, not saved",
            ChargeOutcome::NotCharged => "not charged",
            ChargeOutcome::Unknown => "no answer",
            ChargeOutcome::Crashed => "crashed",
        }
    }
}

/// Why a subscription could not be made.
#[derive(Debug)]
pub enum SubscribeError {
    /// The PG did not issue a billing key.
    Pg(PgError),
    /// The store refused (a duplicate id) or failed.
    Store(StoreError),
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Pg(e) => write!(f, "cannot register the card: {e}"),
            SubscribeError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SubscribeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubscribeError::Pg(e) => Some(e),
            SubscribeError::Store(e) => Some(e),
        }
    }
}

/// The subscription scheduler and its reconciler; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Billing {
    store: Store,
    writes: BillingWrites,
    pg: PgClient,
    claimant: String,
    scope: String,
    auto_refund: bool,
    crashes: Crashes,
    backoff: Backoff,
    lease: Duration,
    grace: Duration,
    batch: u32,
    deadline: Duration,
}

impl Billing {
    /// A scheduler named `claimant` (unique among those running), auto-refund on, 30 s
    /// leases, a 60 s grace for the reconciler, batches of 100; its writes without chaos.
    pub fn new(store: Store, pg: PgClient, claimant: impl Into<String>) -> Self {
        Self {
            writes: store.billing_writes(&Chaos::disabled()),
            store,
            pg,
            claimant: claimant.into(),
            scope: String::new(),
            auto_refund: true,
            crashes: Crashes::none(),
            backoff: Backoff::default(),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(60),
            batch: 100,
            deadline: crate::confirm::FLOW_DEADLINE,
        }
    }

    /// The deadline of one period's charge (the confirm flow's, 20 s, by default): keep it
    /// shorter than the grace.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Its writes behind `chaos`.
    #[must_use]
    pub fn with_db_chaos(mut self, chaos: &Chaos) -> Self {
        self.writes = self.store.billing_writes(chaos);
        self
    }

    /// Auto-refund on (the default) or off (the seed's "before").
    #[must_use]
    pub fn with_auto_refund(mut self, on: bool) -> Self {
        self.auto_refund = on;
        self
    }

    /// Crashes injected into the scheduler's flow.
    #[must_use]
    pub fn with_crashes(mut self, crashes: Crashes) -> Self {
        self.crashes = crashes;
        self
    }

    /// The refund's retries.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Only subscriptions whose id starts with `prefix`.
    #[must_use]
    pub fn scope(mut self, prefix: impl Into<String>) -> Self {
        self.scope = prefix.into();
        self
    }

    /// How long the reconciler leaves an attempt before settling it.
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

    /// How many subscriptions (or attempts) one claim takes.
    #[must_use]
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Registers the customer's card with the PG (a billing key, once per `auth_key`) and
    /// stores the subscription, its first period due now.
    ///
    /// # Errors
    ///
    /// A [`SubscribeError`].
    pub async fn subscribe(
        &self,
        subscription_id: &str,
        customer_key: &str,
        auth_key: &str,
        name: &str,
        amount: i64,
        period: Duration,
    ) -> Result<Subscription, SubscribeError> {
        let key = self
            .pg
            .issue_billing_key(customer_key, auth_key)
            .await
            .map_err(SubscribeError::Pg)?;
        self.store
            .create_subscription(
                subscription_id,
                customer_key,
                &key.billing_key,
                name,
                amount,
                period,
            )
            .await
            .map_err(SubscribeError::Store)
    }

    /// One round: claims the due subscriptions a batch at a time and charges each one's
    /// period (a batch at once), until none is due. Each subscription is tried once a round:
    /// one whose charge did not end paid (a refused card, an open breaker, a refunded save)
    /// stays claimed until the round ends, then is released, due for the next round. Returns
    /// how each charge ended.
    ///
    /// The claims last the lease, and at least a charge's deadline and 10 s: a claim never
    /// runs out while its charge may still run.
    ///
    /// # Errors
    ///
    /// A claim failed (the database is down): what was done before stays done, and the
    /// claims of the round run out with their lease.
    pub async fn run_due(&self) -> Result<Vec<(String, ChargeOutcome)>, StoreError> {
        let mut outcomes = Vec::new();
        let lease = self
            .lease
            .max(self.deadline.saturating_add(Duration::from_secs(10)));
        let claimed = loop {
            let due = match self
                .store
                .claim_due_subscriptions(&self.claimant, &self.scope, lease, self.batch)
                .await
            {
                Ok(due) if due.is_empty() => break Ok(()),
                Ok(due) => due,
                Err(error) => break Err(error),
            };
            let mut charging = JoinSet::new();
            for subscription in due {
                let billing = self.clone();
                charging.spawn(async move {
                    let outcome = billing.charge_period(&subscription).await;
                    (subscription.subscription_id, outcome)
                });
            }
            while let Some(done) = charging.join_next().await {
                if let Ok(done) = done {
                    outcomes.push(done);
                }
            }
        };
        // The round is over: what did not end paid is due again (a save that ended paid
        // ended its claim itself; a crashed one's claim runs out with its lease).
        for (subscription_id, outcome) in &outcomes {
            if !matches!(outcome, ChargeOutcome::Paid | ChargeOutcome::Crashed) {
                if let Err(error) = self
                    .store
                    .release_subscription(subscription_id, &self.claimant)
                    .await
                {
                    tracing::warn!(
                        subscription_id,
                        "[BILLING] cannot release: {error}; the lease will run out"
                    );
                }
            }
        }
        claimed.map(|()| outcomes)
    }

    /// Runs rounds and reconciler passes every `every` until `stop` resolves.
    pub async fn run_until(&self, every: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            match self.run_due().await {
                Ok(outcomes) if !outcomes.is_empty() => {
                    tracing::info!(charged = outcomes.len(), "[BILLING] round done");
                }
                Ok(_) => {}
                Err(error) => tracing::error!("[BILLING] cannot claim subscriptions: {error}"),
            }
            if let Err(error) = self.reconcile_once().await {
                tracing::error!("[BILLING] cannot claim open charges: {error}");
            }
        }
    }

    fn crashed(&self, subscription: &Subscription, step: Step) -> bool {
        const STEPS: [Step; 5] = [
            Step::AfterPrepare,
            Step::AfterPgCall,
            Step::AfterComplete,
            Step::AfterIntent,
            Step::AfterCancel,
        ];
        let subject = format!(
            "{}-p{}",
            subscription.subscription_id,
            subscription.paid_periods + 1
        );
        let crashed = self.crashes.at(&subject, &STEPS) == Some(step);
        if crashed {
            tracing::warn!(subject, %step, "[CRASH] injected: the billing flow stops here");
        }
        crashed
    }

    /// Charges the next period of `subscription`, claimed by this scheduler, within the
    /// deadline (see [`with_deadline`](Self::with_deadline)): past it, the flow is dropped
    /// where it stands and its attempt left to the reconciler, whose grace is longer. The
    /// claim stays: [`run_due`](Self::run_due) releases it at the end of its round.
    pub async fn charge_period(&self, subscription: &Subscription) -> ChargeOutcome {
        let charge = async {
            if self.auto_refund {
                self.charge_protected(subscription).await
            } else {
                self.charge_unprotected(subscription).await
            }
        };
        let Ok(outcome) = tokio::time::timeout(self.deadline, charge).await else {
            tracing::error!(
                subscription = subscription.subscription_id,
                "[BILLING_DEADLINE] the charge was dropped; left to the reconciler"
            );
            return ChargeOutcome::Unknown;
        };
        outcome
    }

    async fn write(&self, write: BillingWrite) -> Result<SubscriptionCharge, StoreError> {
        self.writes.clone().oneshot(write).await
    }

    fn charge_of(subscription: &Subscription, order_id: &str) -> BillingCharge {
        BillingCharge {
            customer_key: subscription.customer_key.clone(),
            amount: subscription.amount,
            order_id: order_id.to_owned(),
            order_name: subscription.name.clone(),
        }
    }

    async fn charge_protected(&self, subscription: &Subscription) -> ChargeOutcome {
        let id = subscription.subscription_id.as_str();
        let attempt = match self
            .write(BillingWrite::Begin {
                subscription_id: id.to_owned(),
                period: subscription.paid_periods + 1,
                claimant: self.claimant.clone(),
            })
            .await
        {
            Ok(attempt) => attempt,
            Err(error) => {
                tracing::warn!(id, "[BILLING] cannot open the attempt: {error}; next round");
                return ChargeOutcome::NotCharged;
            }
        };
        if self.crashed(subscription, Step::AfterPrepare) {
            return ChargeOutcome::Crashed;
        }
        let order_id = attempt.order_id.as_str();
        let answer = self
            .pg
            .charge_billing(
                &subscription.billing_key,
                &Self::charge_of(subscription, order_id),
                &format!("billing-{order_id}"),
            )
            .await;
        if self.crashed(subscription, Step::AfterPgCall) {
            return ChargeOutcome::Crashed;
        }
        let receipt = match answer {
            Ok(receipt) => receipt,
            Err(error) if error.outcome_unknown() => return ChargeOutcome::Unknown,
            Err(error) => {
                let _ = self
                    .write(BillingWrite::Failed {
                        order_id: order_id.to_owned(),
                        detail: error.to_string(),
                    })
                    .await;
                return ChargeOutcome::NotCharged;
            }
        };
        let saved = self
            .write(BillingWrite::Save {
                order_id: order_id.to_owned(),
                payment_key: receipt.payment_key.clone(),
            })
            .await;
        if self.crashed(subscription, Step::AfterComplete) {
            return ChargeOutcome::Crashed;
        }
        let Err(error) = saved else {
            return ChargeOutcome::Paid;
        };
        // The save reported a failure: it may have committed.
        match self.store.subscription_charge(order_id).await {
            Ok(charge) if charge.state == ChargeState::Paid => return ChargeOutcome::Paid,
            Ok(charge) if charge.state != ChargeState::Charging => return ChargeOutcome::Unknown,
            _ => {}
        }
        tracing::error!(
            order_id,
            "[SUBSCRIPTION_NOT_SAVED] charged but cannot save the period: {error}; refunding"
        );
        self.refund(subscription, order_id, &receipt.payment_key)
            .await
    }

    async fn refund(
        &self,
        subscription: &Subscription,
        order_id: &str,
        payment_key: &str,
    ) -> ChargeOutcome {
        let intent = self
            .write(BillingWrite::RefundPending {
                order_id: order_id.to_owned(),
            })
            .await;
        if intent.is_err()
            && self
                .store
                .subscription_charge(order_id)
                .await
                .map(|c| c.state)
                .ok()
                != Some(ChargeState::RefundPending)
        {
            // Still `charging` (or unreadable): the reconciler refunds it.
            return ChargeOutcome::RefundLeft;
        }
        if self.crashed(subscription, Step::AfterIntent) {
            return ChargeOutcome::Crashed;
        }
        let mut wait = self.backoff.first_wait;
        for attempt in 1..=self.backoff.attempts.max(1) {
            match self.pg.cancel(payment_key, REFUND_REASON).await {
                Ok(Cancelled::Now(_) | Cancelled::Already) => {
                    if self.crashed(subscription, Step::AfterCancel) {
                        return ChargeOutcome::Crashed;
                    }
                    let _ = self
                        .write(BillingWrite::Refunded {
                            order_id: order_id.to_owned(),
                            by: "compensation",
                        })
                        .await;
                    return ChargeOutcome::Refunded;
                }
                Err(PgError::Rejected { .. }) => break,
                Err(_) if attempt < self.backoff.attempts => {
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
                Err(_) => {}
            }
        }
        ChargeOutcome::RefundLeft
    }

    /// The seed's "before": charge, then save; a failed save is logged, nothing more.
    async fn charge_unprotected(&self, subscription: &Subscription) -> ChargeOutcome {
        let period = subscription.paid_periods + 1;
        let order_id = format!("{}-p{period}-a1", subscription.subscription_id);
        let answer = self
            .pg
            .charge_billing(
                &subscription.billing_key,
                &Self::charge_of(subscription, &order_id),
                &format!("billing-{order_id}"),
            )
            .await;
        if self.crashed(subscription, Step::AfterPgCall) {
            return ChargeOutcome::Crashed;
        }
        let receipt = match answer {
            Ok(receipt) => receipt,
            Err(error) if error.outcome_unknown() => return ChargeOutcome::Unknown,
            Err(_) => return ChargeOutcome::NotCharged,
        };
        let saved = self
            .write(BillingWrite::SaveUnprotected {
                subscription_id: subscription.subscription_id.clone(),
                period,
                order_id: order_id.clone(),
                payment_key: receipt.payment_key,
            })
            .await;
        match saved {
            Ok(_) => ChargeOutcome::Paid,
            Err(error) => {
                tracing::error!(
                    order_id,
                    "[SUBSCRIPTION_NOT_SAVED] charged but cannot save the period: {error} \
                     (auto-refund is off)"
                );
                ChargeOutcome::NotSaved
            }
        }
    }

    /// One reconciler pass over the attempts left open (`charging`, `refund_pending`) for
    /// the grace period: a batch at a time, each settled as the PG says. Charged and not
    /// saved: refunded. No charge at the PG: `failed` (a billing charge is made at once,
    /// and no attempt's request outlives the grace). Anything else: `manual_review`.
    ///
    /// # Errors
    ///
    /// A claim failed.
    pub async fn reconcile_once(&self) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        let mut left = Vec::new();
        loop {
            let claimed = self
                .store
                .claim_charges(
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
            let mut settling = JoinSet::new();
            for charge in claimed {
                let billing = self.clone();
                settling.spawn(async move {
                    let settled = billing.settle(&charge).await;
                    (charge.order_id, settled)
                });
            }
            while let Some(settled) = settling.join_next().await {
                let settled = match settled {
                    Ok((order_id, settled)) => {
                        if settled.left > 0 {
                            left.push(order_id);
                        }
                        settled
                    }
                    Err(_) => Pass {
                        claimed: 1,
                        left: 1,
                        ..Pass::default()
                    },
                };
                pass.add(settled);
            }
        }
        // Left for the next pass at once (claimed until now, so this pass did not take them
        // again); a failed release lets the lease run out.
        for order_id in left {
            let _ = self.store.release_charge(&order_id, &self.claimant).await;
        }
        Ok(pass)
    }

    async fn settle(&self, charge: &SubscriptionCharge) -> Pass {
        let left = Pass {
            claimed: 1,
            left: 1,
            ..Pass::default()
        };
        let order_id = charge.order_id.as_str();
        let at_pg = match self.pg.payment_of(order_id).await {
            Ok(at_pg) => at_pg,
            Err(error) => {
                tracing::warn!(order_id, "[RECONCILE] cannot ask the PG: {error}; later");
                return left;
            }
        };
        let (settlement, counted) = match (&at_pg, charge.state) {
            (None, ChargeState::Charging) => (
                ChargeSettlement::NotCharged {
                    code: "NOT_CHARGED".to_owned(),
                },
                Pass {
                    not_charged: 1,
                    ..Pass::default()
                },
            ),
            (Some(receipt), _) if receipt.total_amount != charge.amount => (
                ChargeSettlement::ManualReview {
                    reason: format!(
                        "the PG's amount {} is not the charge's {}",
                        receipt.total_amount, charge.amount
                    ),
                },
                Pass {
                    manual_review: 1,
                    ..Pass::default()
                },
            ),
            (Some(receipt), _) if receipt.status == "DONE" => {
                // The intent first, under the claim: a save that lands late can no longer
                // record a period this refunds.
                if charge.state == ChargeState::Charging {
                    let intent = BillingWrite::RefundIntent {
                        order_id: order_id.to_owned(),
                        claimant: self.claimant.clone(),
                    };
                    if let Err(error) = self.write(intent).await {
                        tracing::warn!(
                            order_id,
                            "[RECONCILE] cannot record the refund's intent: {error}; later"
                        );
                        return left;
                    }
                }
                match self.pg.cancel(&receipt.payment_key, REFUND_REASON).await {
                    Ok(_) => (
                        ChargeSettlement::Refunded,
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
            (Some(receipt), _) if receipt.status == "CANCELED" => (
                ChargeSettlement::Refunded,
                Pass {
                    refunded: 1,
                    ..Pass::default()
                },
            ),
            (at_pg, state) => (
                ChargeSettlement::ManualReview {
                    reason: format!(
                        "the charge is {state}, the PG says {}",
                        at_pg.as_ref().map_or("nothing", |r| r.status.as_str())
                    ),
                },
                Pass {
                    manual_review: 1,
                    ..Pass::default()
                },
            ),
        };
        let write = BillingWrite::Settle {
            order_id: order_id.to_owned(),
            claimant: self.claimant.clone(),
            settlement,
        };
        match self.write(write).await {
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
}
