//! The reconciler: settles payments the confirm flow left `in_progress` or `unknown` (a lost
//! answer, a failed write, a compensation that failed, a process that stopped) by asking the
//! PG by order id.
//!
//! A pass claims the payments unchanged for the grace period (long enough that no
//! confirmation of theirs is still under way: the PG client's timeouts and the compensation's
//! retries are far shorter), a batch at a time, each claim for a lease; asks the PG, with no
//! transaction open; and settles each claimed payment as the PG says:
//!
//! | the PG says | the payment becomes |
//! |---|---|
//! | charged (`DONE`) | `done`, the order paid: the customer authorised it, and the charge stands |
//! | cancelled (`CANCELED`) | `cancelled`, the order cancelled |
//! | no payment for the order | `failed` (`NOT_CHARGED`) |
//!
//! A payment the PG cannot be asked about (an error, an open breaker), or whose settlement
//! cannot be written, keeps its claim until the lease runs out and is tried again by a later
//! pass. Several reconcilers may run at once, in one process or many: a payment has one
//! claimant at a time (see [`Store::claim`]), and a settlement is written only under its
//! claim.

use std::time::Duration;

use breakwater::chaos::Chaos;
use tower::ServiceExt;

use crate::pg_client::PgClient;
use crate::store::{Payment, Settlement, Store, StoreError, Write, Writes};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Payments claimed.
    pub claimed: usize,
    /// Settled `done`: the PG had charged.
    pub charged: usize,
    /// Settled `cancelled`: the PG had cancelled.
    pub cancelled: usize,
    /// Settled `failed`: the PG had no charge.
    pub not_charged: usize,
    /// Claimed but not settled (the PG or the write failed): for a later pass.
    pub left: usize,
}

impl Pass {
    /// Payments settled.
    pub fn settled(&self) -> usize {
        self.charged + self.cancelled + self.not_charged
    }

    pub(crate) fn add(&mut self, other: Pass) {
        self.claimed += other.claimed;
        self.charged += other.charged;
        self.cancelled += other.cancelled;
        self.not_charged += other.not_charged;
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
}

impl Reconciler {
    /// A reconciler named `claimant` (unique among those running: a host and process id,
    /// say), with a 60 s grace period, 30 s leases and batches of 100; its writes without
    /// chaos.
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
        }
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

    /// How long a payment must be unchanged before it is settled.
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
                return Ok(pass);
            }
            for payment in &claimed {
                pass.add(self.settle(payment).await);
            }
        }
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

    async fn settle(&self, payment: &Payment) -> Pass {
        let left = Pass {
            claimed: 1,
            left: 1,
            ..Pass::default()
        };
        let order_id = payment.order_id.as_str();
        let settlement = match self.pg.payment_of(order_id).await {
            Ok(None) => Settlement::NotCharged,
            Ok(Some(receipt)) if receipt.total_amount != payment.amount => {
                // Not ours to decide: someone must look.
                tracing::error!(
                    order_id,
                    pg = receipt.total_amount,
                    ours = payment.amount,
                    "[RECONCILE_MISMATCH] the PG's amount is not the payment's; left as it is"
                );
                return left;
            }
            Ok(Some(receipt)) if receipt.is_charged() => Settlement::Charged {
                method: receipt.method,
                approve_no: receipt.approve_no,
            },
            Ok(Some(receipt)) if receipt.status == "CANCELED" => Settlement::Cancelled,
            Ok(Some(receipt)) => {
                tracing::error!(
                    order_id,
                    status = receipt.status,
                    "[RECONCILE_UNKNOWN_STATUS] the PG's status is neither DONE nor CANCELED; \
                     left as it is"
                );
                return left;
            }
            Err(error) => {
                tracing::warn!(order_id, "[RECONCILE] cannot ask the PG: {error}; later");
                return left;
            }
        };
        let counted = match settlement {
            Settlement::Charged { .. } => Pass {
                charged: 1,
                ..Pass::default()
            },
            Settlement::Cancelled => Pass {
                cancelled: 1,
                ..Pass::default()
            },
            Settlement::NotCharged => Pass {
                not_charged: 1,
                ..Pass::default()
            },
        };
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
}
