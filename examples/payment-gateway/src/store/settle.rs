//! Settling payments after the confirm flow: the compensation's intent and its record of a
//! cancel, and the reconciler's claims and settlements.

use std::time::Duration;

use super::{
    Backend, PAYMENT_COLUMNS, Payment, PaymentState, Settlement, Settler, Store, StoreError, fetch,
    moved_from, payment_of, set_order_state,
};

/// The states the reconciler settles: the PG may have charged, and the store does not know,
/// or a refund is under way.
const UNSETTLED: &str = "('in_progress', 'unknown', 'cancel_pending')";

/// The length of a scope prefix, as the queries compare it (`substr(id, 1, len) = scope`).
pub(super) fn prefix_len(scope: &str) -> i64 {
    i64::try_from(scope.len()).unwrap_or(i64::MAX)
}

/// Milliseconds, as the database stores them.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// The compensation's intent, written before its cancel is sent: `in_progress` →
    /// `cancel_pending`. From then on, whatever happens to the flow, the reconciler retries
    /// the cancel until the PG confirms it.
    ///
    /// # Errors
    ///
    /// Not found, or a payment not `in_progress`.
    pub async fn cancel_pending(&self, order_id: &str) -> Result<Payment, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(&format!(
            "UPDATE payments SET state = 'cancel_pending', updated_at = {} \
             WHERE order_id = $1 AND state = 'in_progress'",
            self.now()
        ))
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "in_progress",
        )?;
        tx.commit().await?;
        Ok(payment)
    }

    /// The reconciler's intent to refund a payment it claimed, written before its cancel is
    /// sent: `in_progress` or `unknown` → `cancel_pending` (a `cancel_pending` one stays so),
    /// under the claim. A flow that outlived its deadline can no longer complete it.
    ///
    /// # Errors
    ///
    /// Not found, or the payment is not unsettled under this claim.
    pub async fn refund_intent(
        &self,
        order_id: &str,
        claimant: &str,
    ) -> Result<Payment, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        // `updated_at` stays: the grace has passed already, and a cancel that fails is
        // retried by the next pass, not a grace later.
        let moved = sqlx::query(&format!(
            "UPDATE payments SET state = 'cancel_pending' \
             WHERE order_id = $1 AND claimed_by = $2 AND claimed_until >= {now} \
             AND state IN {UNSETTLED}"
        ))
        .bind(order_id)
        .bind(claimant)
        .execute(&mut *tx)
        .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "unsettled, claimed by this reconciler",
        )?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Records that the PG cancelled (refunded) the payment of `order_id`: from
    /// `cancel_pending`, `in_progress` or `unknown` to `cancelled`, and the order cancelled,
    /// in one transaction.
    ///
    /// # Errors
    ///
    /// Not found, or a payment in another state.
    pub async fn cancelled(&self, order_id: &str, by: Settler) -> Result<Payment, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(&format!(
            "UPDATE payments SET state = 'cancelled', settled_by = $1, updated_at = {now}, \
             claimed_by = NULL WHERE order_id = $2 AND state IN {UNSETTLED}"
        ))
        .bind(by.as_str())
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "cancel_pending, in_progress or unknown",
        )?;
        set_order_state(&mut tx, order_id, "cancelled", now).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Claims for `claimant`, until `lease` from now, up to `limit` payments the reconciler
    /// has to settle, unchanged for `grace` at least and not claimed by a reconciler whose
    /// lease runs still: `in_progress`, `unknown` and `cancel_pending` ones, and `done` ones
    /// not yet verified against the PG. Returns them, oldest first. Every time is the
    /// database's.
    ///
    /// On PostgreSQL the rows are chosen `FOR UPDATE SKIP LOCKED`: reconcilers claiming at the
    /// same time take different rows instead of waiting for each other. On SQLite, writers
    /// take turns: the second sees the first one's claims. Either way, a payment has one
    /// claimant at a time.
    ///
    /// Only orders whose id starts with `scope` are claimed (`""` for all).
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn claim(
        &self,
        claimant: &str,
        scope: &str,
        grace: Duration,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Payment>, StoreError> {
        let now = self.now();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let wanted = format!("(state IN {UNSETTLED} OR (state = 'done' AND verified_at IS NULL))");
        // The claim is checked again on the row itself: under PostgreSQL's READ COMMITTED, a
        // row another claimant changed meanwhile is re-read before it is updated.
        let sql = format!(
            "UPDATE payments SET claimed_by = $1, claimed_until = {now} + $2 \
             WHERE claimed_until < {now} AND {wanted} AND payment_id IN \
             (SELECT payment_id FROM payments WHERE {wanted} AND updated_at <= {now} - $3 \
              AND claimed_until < {now} AND substr(order_id, 1, CAST($5 AS INTEGER)) = $6 \
              ORDER BY updated_at, payment_id LIMIT $4{lock}) \
             RETURNING {PAYMENT_COLUMNS}"
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
        let mut claimed = rows.iter().map(payment_of).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| (a.updated_at, &a.payment_id).cmp(&(b.updated_at, &b.payment_id)));
        Ok(claimed)
    }

    /// Ends `claimant`'s claim on the payment of `order_id` without settling it, so that the
    /// next pass tries it again at once instead of after the lease.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn release(&self, order_id: &str, claimant: &str) -> Result<(), StoreError> {
        self.release_claim("payments", "order_id", order_id, claimant)
            .await
    }

    /// Ends `claimant`'s claim on the row of `table` whose `key` is `id`: the one release of
    /// the three claimable tables (payments, subscriptions, subscription charges).
    pub(super) async fn release_claim(
        &self,
        table: &'static str,
        key: &'static str,
        id: &str,
        claimant: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE {table} SET claimed_by = NULL, claimed_until = 0 \
             WHERE {key} = $1 AND claimed_by = $2"
        ))
        .bind(id)
        .bind(claimant)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Settles a payment `claimant` claimed, as the PG says it stands; the claim ends.
    ///
    /// # Errors
    ///
    /// Not found, or the payment is no longer in a state this settlement starts from under
    /// this claim (settled meanwhile, or claimed by another after the lease ran out): nothing
    /// changes.
    pub async fn settle(
        &self,
        order_id: &str,
        claimant: &str,
        settlement: Settlement,
    ) -> Result<Payment, StoreError> {
        let now = self.now();
        let (state, code, message, order_state, from, expected) = match settlement {
            Settlement::Verified => (
                PaymentState::Done,
                None,
                None,
                None,
                "('done')",
                "done, claimed by this reconciler",
            ),
            Settlement::Cancelled => (
                PaymentState::Cancelled,
                None,
                None,
                Some("cancelled"),
                "('in_progress', 'unknown', 'cancel_pending', 'done')",
                "unsettled or done, claimed by this reconciler",
            ),
            Settlement::NotCharged { code } => (
                PaymentState::Failed,
                Some(code),
                None,
                None,
                "('in_progress', 'unknown')",
                "in_progress or unknown, claimed by this reconciler",
            ),
            Settlement::ManualReview { reason } => (
                PaymentState::ManualReview,
                None,
                Some(reason),
                None,
                "('in_progress', 'unknown', 'cancel_pending', 'done')",
                "unsettled or done, claimed by this reconciler",
            ),
        };
        let mut tx = self.pool.begin().await?;
        // A verified payment keeps who settled it (the confirm flow) and gains verified_at.
        let sql = format!(
            "UPDATE payments SET state = $1, fail_code = COALESCE($2, fail_code), \
             fail_message = COALESCE($4, fail_message), \
             settled_by = CASE WHEN $1 = 'done' THEN settled_by ELSE $3 END, \
             verified_at = CASE WHEN $1 = 'done' THEN {now} ELSE verified_at END, \
             updated_at = {now}, claimed_by = NULL \
             WHERE order_id = $5 AND claimed_by = $6 AND claimed_until >= {now} \
             AND state IN {from}"
        );
        let moved = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(code)
            .bind(Settler::Reconciler.as_str())
            .bind(message)
            .bind(order_id)
            .bind(claimant)
            .execute(&mut *tx)
            .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            expected,
        )?;
        if let Some(order_state) = order_state {
            set_order_state(&mut tx, order_id, order_state, now).await?;
        }
        tx.commit().await?;
        Ok(payment)
    }

    /// Every payment, by order id: for audits.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn payments(&self) -> Result<Vec<Payment>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments ORDER BY order_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(payment_of).collect()
    }
}
