//! Settling payments after the confirm flow: the compensation's record of a cancel, and the
//! reconciler's claims and settlements.

use std::time::Duration;

use super::{
    Backend, PAYMENT_COLUMNS, Payment, PaymentState, Settlement, Settler, Store, StoreError, fetch,
    moved_from, now_ms, payment_of, set_order_state,
};

/// The states a reconciler settles: the PG may have charged, and the store does not know.
const UNSETTLED: &str = "('in_progress', 'unknown')";

impl Store {
    /// Records that the PG cancelled (refunded) the payment of `order_id`: from
    /// `in_progress`, `unknown` or `done` to `cancelled`, and the order cancelled, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// Not found, or a payment in another state.
    pub async fn cancelled(&self, order_id: &str, by: Settler) -> Result<Payment, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE payments SET state = 'cancelled', settled_by = $1, updated_at = $2, \
             claimed_by = NULL WHERE order_id = $3 \
             AND state IN ('in_progress', 'unknown', 'done')",
        )
        .bind(by.as_str())
        .bind(now)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "in_progress, unknown or done",
        )?;
        set_order_state(&mut tx, order_id, "cancelled", now).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Claims for `claimant`, until `lease` from now, up to `limit` payments that are
    /// `in_progress` or `unknown`, unchanged for `grace` at least, and not claimed by a
    /// reconciler whose lease runs still. Returns them, oldest first.
    ///
    /// On PostgreSQL the rows are chosen `FOR UPDATE SKIP LOCKED`: reconcilers claiming at the
    /// same time take different rows instead of waiting for each other. On SQLite, writers
    /// take turns: the second sees the first one's claims. Either way, a payment has one
    /// claimant at a time.
    ///
    /// # Errors
    ///
    /// The database's error.
    ///
    /// Only orders whose id starts with `scope` are claimed (`""` for all).
    pub async fn claim(
        &self,
        claimant: &str,
        scope: &str,
        grace: Duration,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Payment>, StoreError> {
        let now = now_ms();
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // The claim is checked again on the row itself: under PostgreSQL's READ COMMITTED, a
        // row another claimant changed meanwhile is re-read before it is updated.
        let sql = format!(
            "UPDATE payments SET claimed_by = $1, claimed_until = $2 \
             WHERE claimed_until < $3 AND state IN {UNSETTLED} AND payment_id IN \
             (SELECT payment_id FROM payments WHERE state IN {UNSETTLED} AND updated_at <= $4 \
              AND claimed_until < $3 AND substr(order_id, 1, CAST($6 AS INTEGER)) = $7 \
              ORDER BY updated_at, payment_id LIMIT $5{lock}) \
             RETURNING {PAYMENT_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(claimant)
            .bind(now.saturating_add(millis(lease)))
            .bind(now)
            .bind(now.saturating_sub(millis(grace)))
            .bind(i64::from(limit))
            .bind(i64::try_from(scope.len()).unwrap_or(i64::MAX))
            .bind(scope)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = rows.iter().map(payment_of).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| (a.updated_at, &a.payment_id).cmp(&(b.updated_at, &b.payment_id)));
        Ok(claimed)
    }

    /// Settles a payment `claimant` claimed, as the PG says it stands; the claim ends.
    ///
    /// # Errors
    ///
    /// Not found, or the payment is no longer `in_progress` or `unknown` under this claim
    /// (settled meanwhile, or claimed by another after the lease ran out): nothing changes.
    pub async fn settle(
        &self,
        order_id: &str,
        claimant: &str,
        settlement: Settlement,
    ) -> Result<Payment, StoreError> {
        let now = now_ms();
        let (state, method, approve_no, code, order_state) = match settlement {
            Settlement::Charged { method, approve_no } => (
                PaymentState::Done,
                Some(method),
                Some(approve_no),
                None,
                Some("paid"),
            ),
            Settlement::Cancelled => (PaymentState::Cancelled, None, None, None, Some("cancelled")),
            Settlement::NotCharged => (PaymentState::Failed, None, None, Some("NOT_CHARGED"), None),
        };
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE payments SET state = $1, method = COALESCE($2, method), \
             approve_no = COALESCE($3, approve_no), fail_code = COALESCE($4, fail_code), \
             settled_by = $5, updated_at = $6, claimed_by = NULL \
             WHERE order_id = $7 AND claimed_by = $8 AND claimed_until >= $6 \
             AND state IN {UNSETTLED}"
        );
        let moved = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(method)
            .bind(approve_no)
            .bind(code)
            .bind(Settler::Reconciler.as_str())
            .bind(now)
            .bind(order_id)
            .bind(claimant)
            .execute(&mut *tx)
            .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "in_progress or unknown, claimed by this reconciler",
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
