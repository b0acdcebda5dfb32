//! Seed 2's subscriptions: a billing key charged once per period. Each attempt to charge a
//! period is a row of `subscription_charges`, written before the charge is sent; saving the
//! period moves that row to `paid` and the subscription's `paid_periods` on, in one
//! transaction. See [`crate::billing`] for the flow.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use breakwater::chaos::{Chaos, ChaosService, Injected};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use tower::{Layer, Service};

use super::settle::{millis, prefix_len};
use super::{Backend, Store, StoreError};

/// A subscription, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Ours.
    pub subscription_id: String,
    /// The merchant's id of the customer.
    pub customer_key: String,
    /// The PG's billing key for the customer's card.
    pub billing_key: String,
    /// What is subscribed to.
    pub name: String,
    /// Charged each period, in won.
    pub amount: i64,
    /// How long a period lasts, in milliseconds.
    pub period_ms: i64,
    /// Periods charged and saved.
    pub paid_periods: i64,
    /// When the next period is due, Unix milliseconds (the database's clock).
    pub next_charge_at: i64,
    /// `active` or `cancelled`.
    pub state: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// Where an attempt to charge a period stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeState {
    /// Sent, or about to be: the outcome is not recorded yet.
    Charging,
    /// Charged and saved with its period.
    Paid,
    /// Charged, not saved: the refund is under way.
    RefundPending,
    /// Charged, not saved, given back.
    Refunded,
    /// Not charged.
    Failed,
    /// Someone must look.
    ManualReview,
}

impl ChargeState {
    /// Every state, in the order above.
    pub const ALL: [ChargeState; 6] = [
        ChargeState::Charging,
        ChargeState::Paid,
        ChargeState::RefundPending,
        ChargeState::Refunded,
        ChargeState::Failed,
        ChargeState::ManualReview,
    ];

    /// As the database spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeState::Charging => "charging",
            ChargeState::Paid => "paid",
            ChargeState::RefundPending => "refund_pending",
            ChargeState::Refunded => "refunded",
            ChargeState::Failed => "failed",
            ChargeState::ManualReview => "manual_review",
        }
    }
}

impl fmt::Display for ChargeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChargeState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ChargeState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "charge state `{s}` is not one of charging, paid, refund_pending, refunded, \
                     failed, manual_review"
                )
            })
    }
}

/// One attempt to charge one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionCharge {
    /// The PG's order id: `{subscriptionId}-p{period}-a{attempt}`, also the idempotency key's
    /// tail.
    pub order_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// Which period, from 1.
    pub period: i64,
    /// Which attempt at that period, from 1.
    pub attempt: i64,
    /// In won.
    pub amount: i64,
    /// Where it stands.
    pub state: ChargeState,
    /// The PG's key, once charged.
    pub payment_key: Option<String>,
    /// Why it failed or needs review.
    pub detail: Option<String>,
    /// Who settled it: `scheduler`, `compensation` or `reconciler`.
    pub settled_by: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

const SUBSCRIPTION_COLUMNS: &str = "subscription_id, customer_key, billing_key, name, amount, \
     period_ms, paid_periods, next_charge_at, state, created_at, updated_at";

const CHARGE_COLUMNS: &str = "order_id, subscription_id, period, attempt, amount, state, \
     payment_key, detail, settled_by, created_at, updated_at";

fn subscription_of(row: &AnyRow) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        subscription_id: row.try_get("subscription_id")?,
        customer_key: row.try_get("customer_key")?,
        billing_key: row.try_get("billing_key")?,
        name: row.try_get("name")?,
        amount: row.try_get("amount")?,
        period_ms: row.try_get("period_ms")?,
        paid_periods: row.try_get("paid_periods")?,
        next_charge_at: row.try_get("next_charge_at")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn charge_of(row: &AnyRow) -> Result<SubscriptionCharge, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(SubscriptionCharge {
        order_id: row.try_get("order_id")?,
        subscription_id: row.try_get("subscription_id")?,
        period: row.try_get("period")?,
        attempt: row.try_get("attempt")?,
        amount: row.try_get("amount")?,
        state: state
            .parse()
            .map_err(|e: String| StoreError::Database(sqlx::Error::Decode(e.into())))?,
        payment_key: row.try_get("payment_key")?,
        detail: row.try_get("detail")?,
        settled_by: row.try_get("settled_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// How the reconciler settles an attempt it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeSettlement {
    /// The PG gave the money back: `refunded`.
    Refunded,
    /// The PG has no charge for it: `failed` with this code.
    NotCharged {
        /// Why.
        code: String,
    },
    /// No rule settles it: `manual_review`.
    ManualReview {
        /// What someone must look at.
        reason: String,
    },
}

impl Store {
    /// Creates a subscription, `active`, its first period due now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if the id exists, or the database's error.
    pub async fn create_subscription(
        &self,
        subscription_id: &str,
        customer_key: &str,
        billing_key: &str,
        name: &str,
        amount: i64,
        period: Duration,
    ) -> Result<Subscription, StoreError> {
        let now = self.now();
        let inserted = sqlx::query(&format!(
            "INSERT INTO subscriptions (subscription_id, customer_key, billing_key, name, amount, \
             period_ms, paid_periods, next_charge_at, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, {now}, 'active', {now}, {now}) \
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(subscription_id)
        .bind(customer_key)
        .bind(billing_key)
        .bind(name)
        .bind(amount)
        .bind(millis(period).max(1))
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => subscription_of(&row),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Duplicate {
                    order_id: subscription_id.to_owned(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The subscription `subscription_id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], or the database's error.
    pub async fn subscription(&self, subscription_id: &str) -> Result<Subscription, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE subscription_id = $1"
        ))
        .bind(subscription_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => subscription_of(&row),
            None => Err(StoreError::NotFound {
                order_id: subscription_id.to_owned(),
            }),
        }
    }

    /// Every subscription whose id starts with `scope`, by id.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn subscriptions(&self, scope: &str) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
             WHERE substr(subscription_id, 1, CAST($1 AS INTEGER)) = $2 ORDER BY subscription_id"
        ))
        .bind(prefix_len(scope))
        .bind(scope)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription_of).collect()
    }

    /// Every attempt of the subscriptions whose id starts with `scope`, by order id.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn subscription_charges(
        &self,
        scope: &str,
    ) -> Result<Vec<SubscriptionCharge>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges \
             WHERE substr(subscription_id, 1, CAST($1 AS INTEGER)) = $2 ORDER BY order_id"
        ))
        .bind(prefix_len(scope))
        .bind(scope)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(charge_of).collect()
    }

    /// The attempt of `order_id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], or the database's error.
    pub async fn subscription_charge(
        &self,
        order_id: &str,
    ) -> Result<SubscriptionCharge, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => charge_of(&row),
            None => Err(StoreError::NotFound {
                order_id: order_id.to_owned(),
            }),
        }
    }

    /// Claims for `claimant`, until `lease` from now, up to `limit` active subscriptions
    /// whose next period is due, not claimed by another whose lease runs, with no attempt at
    /// that period still open (`charging` or `refund_pending`: the reconciler's) or under
    /// review.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn claim_due_subscriptions(
        &self,
        claimant: &str,
        scope: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let now = self.now();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let due = format!(
            "state = 'active' AND next_charge_at <= {now} AND claimed_until < {now} \
             AND NOT EXISTS (SELECT 1 FROM subscription_charges c \
                 WHERE c.subscription_id = subscriptions.subscription_id \
                 AND c.period = subscriptions.paid_periods + 1 \
                 AND c.state IN ('charging', 'refund_pending', 'manual_review'))"
        );
        let sql = format!(
            "UPDATE subscriptions SET claimed_by = $1, claimed_until = {now} + $2 \
             WHERE {due} AND subscription_id IN \
             (SELECT subscription_id FROM subscriptions WHERE {due} \
              AND substr(subscription_id, 1, CAST($4 AS INTEGER)) = $5 \
              ORDER BY next_charge_at, subscription_id LIMIT $3{lock}) \
             RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(claimant)
            .bind(millis(lease))
            .bind(i64::from(limit))
            .bind(prefix_len(scope))
            .bind(scope)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(subscription_of)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
        Ok(claimed)
    }

    /// Ends `claimant`'s claim on a subscription.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn release_subscription(
        &self,
        subscription_id: &str,
        claimant: &str,
    ) -> Result<(), StoreError> {
        self.release_claim(
            "subscriptions",
            "subscription_id",
            subscription_id,
            claimant,
        )
        .await
    }

    /// Ends `claimant`'s claim on the attempt `order_id` without settling it.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn release_charge(&self, order_id: &str, claimant: &str) -> Result<(), StoreError> {
        self.release_claim("subscription_charges", "order_id", order_id, claimant)
            .await
    }

    async fn begin_charge(
        &self,
        subscription_id: &str,
        period: i64,
        claimant: &str,
    ) -> Result<SubscriptionCharge, StoreError> {
        let now = self.now();
        // One statement: the attempt's number, the claim and period checked on the
        // subscription itself, and no other attempt at the period open or paid. Two
        // schedulers at once cannot both open one: the second sees the first's row, or
        // computes the same attempt number and hits the unique key.
        let sql = format!(
            "INSERT INTO subscription_charges (order_id, subscription_id, period, attempt, \
             amount, state, created_at, updated_at) \
             SELECT s.subscription_id || '-p' || CAST($2 AS TEXT) || '-a' || CAST(n.next AS TEXT), \
                 s.subscription_id, $2, n.next, s.amount, 'charging', {now}, {now} \
             FROM subscriptions s, \
                 (SELECT COALESCE(MAX(attempt), 0) + 1 AS next FROM subscription_charges \
                  WHERE subscription_id = $1 AND period = $2) n \
             WHERE s.subscription_id = $1 AND s.claimed_by = $3 AND s.claimed_until >= {now} \
             AND s.paid_periods + 1 = $2 \
             AND NOT EXISTS (SELECT 1 FROM subscription_charges c WHERE c.subscription_id = $1 \
                 AND c.period = $2 AND c.state IN ('charging', 'refund_pending', 'paid', \
                 'manual_review')) \
             RETURNING {CHARGE_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(subscription_id)
            .bind(period)
            .bind(claimant)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => charge_of(&row),
            None => Err(StoreError::NotDue {
                subscription_id: subscription_id.to_owned(),
                expected: "active, due for this period with no attempt open or paid, and \
                           claimed by this scheduler",
            }),
        }
    }

    /// Saves a charged period: the attempt `paid`, the subscription's period moved on, its
    /// claim ended, in one transaction.
    async fn save_period(
        &self,
        order_id: &str,
        payment_key: &str,
    ) -> Result<SubscriptionCharge, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(&format!(
            "UPDATE subscription_charges SET state = 'paid', payment_key = $1, \
             settled_by = 'scheduler', updated_at = {now} \
             WHERE order_id = $2 AND state = 'charging'"
        ))
        .bind(payment_key)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        let charge = self.charge_in(&mut tx, order_id).await?;
        if moved.rows_affected() != 1 {
            return Err(wrong_charge_state(&charge, "charging"));
        }
        advance(&mut tx, &charge, now).await?;
        tx.commit().await?;
        Ok(charge)
    }

    /// The seed's "before": saves a charged period with no attempt written first (inserts it
    /// `paid`), in one transaction.
    async fn save_unprotected(
        &self,
        subscription_id: &str,
        period: i64,
        order_id: &str,
        payment_key: &str,
    ) -> Result<SubscriptionCharge, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO subscription_charges (order_id, subscription_id, period, attempt, \
             amount, state, payment_key, settled_by, created_at, updated_at) \
             SELECT $1, subscription_id, $2, 1, amount, 'paid', $3, 'scheduler', {now}, {now} \
             FROM subscriptions WHERE subscription_id = $4"
        ))
        .bind(order_id)
        .bind(period)
        .bind(payment_key)
        .bind(subscription_id)
        .execute(&mut *tx)
        .await?;
        let charge = self.charge_in(&mut tx, order_id).await?;
        advance(&mut tx, &charge, now).await?;
        tx.commit().await?;
        Ok(charge)
    }

    async fn move_charge(
        &self,
        order_id: &str,
        step: Move<'_>,
    ) -> Result<SubscriptionCharge, StoreError> {
        let Move {
            to,
            from,
            expected,
            detail,
            by,
            claimant,
            keep_claim,
        } = step;
        let now = self.now();
        // An intent keeps the claim, and `updated_at` (the grace passed already: a cancel
        // that fails is retried by the next pass, not a grace later).
        let (touch, release) = if keep_claim {
            (String::new(), "")
        } else {
            (format!(", updated_at = {now}"), ", claimed_by = NULL")
        };
        let claim = if claimant.is_some() {
            format!(" AND claimed_by = $5 AND claimed_until >= {now}")
        } else {
            " AND $5 IS NULL".to_owned()
        };
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(&format!(
            "UPDATE subscription_charges SET state = $1, detail = COALESCE($2, detail), \
             settled_by = COALESCE($3, settled_by){touch}{release} \
             WHERE order_id = $4 AND state IN {from}{claim}"
        ))
        .bind(to.as_str())
        .bind(detail)
        .bind(by)
        .bind(order_id)
        .bind(claimant)
        .execute(&mut *tx)
        .await?;
        let charge = self.charge_in(&mut tx, order_id).await?;
        if moved.rows_affected() != 1 {
            return Err(wrong_charge_state(&charge, expected));
        }
        tx.commit().await?;
        Ok(charge)
    }

    /// Claims for `claimant` up to `limit` attempts left `charging` or `refund_pending` for
    /// `grace` at least (the scheduler's flow is over), of subscriptions whose id starts with
    /// `scope`.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn claim_charges(
        &self,
        claimant: &str,
        scope: &str,
        grace: Duration,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<SubscriptionCharge>, StoreError> {
        let now = self.now();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let open = format!("state IN ('charging', 'refund_pending') AND claimed_until < {now}");
        let sql = format!(
            "UPDATE subscription_charges SET claimed_by = $1, claimed_until = {now} + $2 \
             WHERE {open} AND order_id IN \
             (SELECT order_id FROM subscription_charges WHERE {open} \
              AND updated_at <= {now} - $3 \
              AND substr(subscription_id, 1, CAST($5 AS INTEGER)) = $6 \
              ORDER BY updated_at, order_id LIMIT $4{lock}) \
             RETURNING {CHARGE_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(claimant)
            .bind(millis(lease))
            .bind(millis(grace))
            .bind(i64::from(limit))
            .bind(prefix_len(scope))
            .bind(scope)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = rows.iter().map(charge_of).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(claimed)
    }

    async fn charge_in(
        &self,
        connection: &mut sqlx::AnyConnection,
        order_id: &str,
    ) -> Result<SubscriptionCharge, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&mut *connection)
        .await?;
        match row {
            Some(row) => charge_of(&row),
            None => Err(StoreError::NotFound {
                order_id: order_id.to_owned(),
            }),
        }
    }
}

/// Moves the subscription of `charge` past its period: `paid_periods` to the period, the next
/// one due a period later, its claim ended.
async fn advance(
    connection: &mut sqlx::AnyConnection,
    charge: &SubscriptionCharge,
    now: &str,
) -> Result<(), StoreError> {
    let moved = sqlx::query(&format!(
        "UPDATE subscriptions SET paid_periods = $1, next_charge_at = next_charge_at + period_ms, \
         claimed_by = NULL, claimed_until = 0, updated_at = {now} \
         WHERE subscription_id = $2 AND paid_periods = $1 - 1"
    ))
    .bind(charge.period)
    .bind(&charge.subscription_id)
    .execute(&mut *connection)
    .await?;
    if moved.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotDue {
            subscription_id: charge.subscription_id.clone(),
            expected: "due for the period charged",
        })
    }
}

/// A conditional move of an attempt's state.
struct Move<'a> {
    to: ChargeState,
    from: &'static str,
    expected: &'static str,
    detail: Option<String>,
    by: Option<&'a str>,
    claimant: Option<&'a str>,
    /// Whether the claim stays (an intent) or ends (a settlement).
    keep_claim: bool,
}

fn wrong_charge_state(charge: &SubscriptionCharge, expected: &'static str) -> StoreError {
    StoreError::WrongCharge {
        order_id: charge.order_id.clone(),
        state: charge.state,
        expected,
    }
}

/// One write of the subscription flow, as a request to the store's `Service`, so that the
/// chaos layer can go around them as around the payment flow's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingWrite {
    /// Opens an attempt at `period`, `charging`, under the scheduler's claim.
    Begin {
        /// The subscription.
        subscription_id: String,
        /// The period, `paid_periods + 1`.
        period: i64,
        /// The scheduler holding the subscription's claim.
        claimant: String,
    },
    /// Saves the period: the attempt `paid`, the subscription moved on.
    Save {
        /// The attempt.
        order_id: String,
        /// The PG's key of the charge.
        payment_key: String,
    },
    /// The seed's "before": saves the period with no attempt written first.
    SaveUnprotected {
        /// The subscription.
        subscription_id: String,
        /// The period.
        period: i64,
        /// The PG's order id.
        order_id: String,
        /// The PG's key of the charge.
        payment_key: String,
    },
    /// The PG refused, or was not called: the attempt `failed`.
    Failed {
        /// The attempt.
        order_id: String,
        /// Why.
        detail: String,
    },
    /// The compensation's intent: `charging` → `refund_pending`.
    RefundPending {
        /// The attempt.
        order_id: String,
    },
    /// The reconciler's intent, under its claim: `charging` → `refund_pending`.
    RefundIntent {
        /// The attempt.
        order_id: String,
        /// The reconciler holding the claim.
        claimant: String,
    },
    /// The PG refunded it: `refunded`.
    Refunded {
        /// The attempt.
        order_id: String,
        /// `compensation`.
        by: &'static str,
    },
    /// The reconciler's settlement, under its claim.
    Settle {
        /// The attempt.
        order_id: String,
        /// The reconciler holding the claim.
        claimant: String,
        /// What the PG says.
        settlement: ChargeSettlement,
    },
}

impl Service<BillingWrite> for Store {
    type Response = SubscriptionCharge;
    type Error = StoreError;
    type Future = Pin<Box<dyn Future<Output = Result<SubscriptionCharge, StoreError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, write: BillingWrite) -> Self::Future {
        let store = self.clone();
        Box::pin(async move {
            match write {
                BillingWrite::Begin {
                    subscription_id,
                    period,
                    claimant,
                } => {
                    store
                        .begin_charge(&subscription_id, period, &claimant)
                        .await
                }
                BillingWrite::Save {
                    order_id,
                    payment_key,
                } => store.save_period(&order_id, &payment_key).await,
                BillingWrite::SaveUnprotected {
                    subscription_id,
                    period,
                    order_id,
                    payment_key,
                } => {
                    store
                        .save_unprotected(&subscription_id, period, &order_id, &payment_key)
                        .await
                }
                BillingWrite::Failed { order_id, detail } => {
                    store
                        .move_charge(
                            &order_id,
                            Move {
                                to: ChargeState::Failed,
                                from: "('charging')",
                                expected: "charging",
                                detail: Some(detail),
                                by: Some("scheduler"),
                                claimant: None,
                                keep_claim: false,
                            },
                        )
                        .await
                }
                BillingWrite::RefundPending { order_id } => {
                    store
                        .move_charge(
                            &order_id,
                            Move {
                                to: ChargeState::RefundPending,
                                from: "('charging')",
                                expected: "charging",
                                detail: None,
                                by: None,
                                claimant: None,
                                keep_claim: false,
                            },
                        )
                        .await
                }
                BillingWrite::RefundIntent { order_id, claimant } => {
                    store
                        .move_charge(
                            &order_id,
                            Move {
                                to: ChargeState::RefundPending,
                                from: "('charging')",
                                expected: "charging, claimed by this reconciler",
                                detail: None,
                                by: None,
                                claimant: Some(&claimant),
                                keep_claim: true,
                            },
                        )
                        .await
                }
                BillingWrite::Refunded { order_id, by } => {
                    store
                        .move_charge(
                            &order_id,
                            Move {
                                to: ChargeState::Refunded,
                                from: "('charging', 'refund_pending')",
                                expected: "charging or refund_pending",
                                detail: None,
                                by: Some(by),
                                claimant: None,
                                keep_claim: false,
                            },
                        )
                        .await
                }
                BillingWrite::Settle {
                    order_id,
                    claimant,
                    settlement,
                } => {
                    let (to, from, detail) = match settlement {
                        ChargeSettlement::Refunded => (
                            ChargeState::Refunded,
                            "('charging', 'refund_pending')",
                            None,
                        ),
                        ChargeSettlement::NotCharged { code } => {
                            (ChargeState::Failed, "('charging')", Some(code))
                        }
                        ChargeSettlement::ManualReview { reason } => (
                            ChargeState::ManualReview,
                            "('charging', 'refund_pending')",
                            Some(reason),
                        ),
                    };
                    store
                        .move_charge(
                            &order_id,
                            Move {
                                to,
                                from,
                                expected: "open, claimed by this reconciler",
                                detail,
                                by: Some("reconciler"),
                                claimant: Some(&claimant),
                                keep_claim: false,
                            },
                        )
                        .await
                }
            }
        })
    }
}

/// The fault of a subscription write under chaos, as [`DbFault`](super::DbFault)'s.
pub type BillingFault = fn(Injected) -> Result<SubscriptionCharge, StoreError>;

/// The subscription flow's writes: the store behind a chaos layer.
pub type BillingWrites = ChaosService<Store, BillingFault>;

impl Store {
    /// This store's subscription writes behind `chaos` (failures and ambiguous commits as
    /// [`writes`](Self::writes)).
    pub fn billing_writes(&self, chaos: &Chaos) -> BillingWrites {
        let fault: BillingFault = |injected| Err(super::write::db_fault(injected));
        chaos.layer(fault).layer(self.clone())
    }
}
