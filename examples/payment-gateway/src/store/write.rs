//! The payment flow's writes as a tower `Service`, so that a layer can go around them: the
//! chaos layer does, to fail a share of them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use breakwater::chaos::{Chaos, ChaosService, FaultKind, Injected, InjectedFault};
use tower::{Layer, Service};

use super::{Completion, Payment, Settlement, Settler, Store, StoreError};

/// One write of the payment flow: a request to the store as a `Service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// [`Store::prepare`].
    Prepare {
        /// The order.
        order_id: String,
        /// The PG's key.
        payment_key: String,
        /// In won.
        amount: i64,
    },
    /// [`Store::complete`].
    Complete {
        /// The order.
        order_id: String,
        /// How the PG call ended.
        completion: Completion,
    },
    /// [`Store::cancel_pending`]: the compensation's intent.
    CancelPending {
        /// The order.
        order_id: String,
    },
    /// [`Store::refund_intent`]: the reconciler's intent.
    RefundIntent {
        /// The order.
        order_id: String,
        /// The reconciler holding the claim.
        claimant: String,
    },
    /// [`Store::cancelled`].
    Cancelled {
        /// The order.
        order_id: String,
        /// Who cancelled it at the PG.
        by: Settler,
    },
    /// [`Store::settle`].
    Settle {
        /// The order.
        order_id: String,
        /// The reconciler holding the claim.
        claimant: String,
        /// What the PG says.
        settlement: Settlement,
    },
}

impl Write {
    /// The order written to.
    pub fn order_id(&self) -> &str {
        match self {
            Write::Prepare { order_id, .. }
            | Write::Complete { order_id, .. }
            | Write::CancelPending { order_id }
            | Write::RefundIntent { order_id, .. }
            | Write::Cancelled { order_id, .. }
            | Write::Settle { order_id, .. } => order_id,
        }
    }
}

/// The store's writes, always ready (the pool queues them). Each call is one boxed future: a
/// database round trip costs far more than the allocation.
impl Service<Write> for Store {
    type Response = Payment;
    type Error = StoreError;
    type Future = Pin<Box<dyn Future<Output = Result<Payment, StoreError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, write: Write) -> Self::Future {
        let store = self.clone();
        Box::pin(async move {
            match write {
                Write::Prepare {
                    order_id,
                    payment_key,
                    amount,
                } => store.prepare(&order_id, &payment_key, amount).await,
                Write::Complete {
                    order_id,
                    completion,
                } => store.complete(&order_id, completion).await,
                Write::CancelPending { order_id } => store.cancel_pending(&order_id).await,
                Write::RefundIntent { order_id, claimant } => {
                    store.refund_intent(&order_id, &claimant).await
                }
                Write::Cancelled { order_id, by } => store.cancelled(&order_id, by).await,
                Write::Settle {
                    order_id,
                    claimant,
                    settlement,
                } => store.settle(&order_id, &claimant, settlement).await,
            }
        })
    }
}

/// The fault of a database write under chaos: a failure is [`StoreError::Injected`], the
/// write not made; a lost response is [`StoreError::Ambiguous`], the write committed and the
/// caller told it failed.
pub type DbFault = fn(Injected) -> Result<Payment, StoreError>;

/// The payment flow's writes: the store behind a chaos layer (disabled unless configured).
pub type Writes = ChaosService<Store, DbFault>;

/// The error a database chaos answers for `injected`.
pub(crate) fn db_fault(injected: Injected) -> StoreError {
    match injected.kind {
        FaultKind::ResponseLost => StoreError::Ambiguous(InjectedFault::new(injected)),
        _ => StoreError::Injected(InjectedFault::new(injected)),
    }
}

impl Store {
    /// This store's writes behind `chaos`: a failed write is [`StoreError::Injected`] and
    /// changes nothing; a lost answer (the chaos's response loss) is
    /// [`StoreError::Ambiguous`], the write committed.
    pub fn writes(&self, chaos: &Chaos) -> Writes {
        let fault: DbFault = |injected| Err(db_fault(injected));
        chaos.layer(fault).layer(self.clone())
    }
}
