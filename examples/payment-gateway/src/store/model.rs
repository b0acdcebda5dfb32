//! What the store keeps: payments and their states.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Created, waiting for the customer's authorisation and our confirmation.
    Ready,
    /// Being confirmed: the PG is (or is about to be) called.
    InProgress,
    /// Charged and recorded: the order is paid.
    Done,
    /// Not charged: the PG refused or failed.
    Failed,
    /// Charged, then given back.
    Cancelled,
    /// The PG was called but its answer never arrived: it may have charged. Settled by
    /// asking the PG.
    Unknown,
}

impl PaymentState {
    /// Every state, in the order above.
    pub const ALL: [PaymentState; 6] = [
        PaymentState::Ready,
        PaymentState::InProgress,
        PaymentState::Done,
        PaymentState::Failed,
        PaymentState::Cancelled,
        PaymentState::Unknown,
    ];

    /// As the database spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Ready => "ready",
            PaymentState::InProgress => "in_progress",
            PaymentState::Done => "done",
            PaymentState::Failed => "failed",
            PaymentState::Cancelled => "cancelled",
            PaymentState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PaymentState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "payment state `{s}` is not one of ready, in_progress, done, failed, \
                     cancelled, unknown"
                )
            })
    }
}

/// A payment, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Ours.
    pub payment_id: String,
    /// The order it pays.
    pub order_id: String,
    /// In won.
    pub amount: i64,
    /// Where it stands.
    pub state: PaymentState,
    /// The PG's key, once a confirmation was tried.
    pub payment_key: Option<String>,
    /// How it was paid, once done.
    pub method: Option<String>,
    /// The approval number, once done.
    pub approve_no: Option<String>,
    /// Why it failed (the PG's code, or ours).
    pub fail_code: Option<String>,
    /// Why it failed, in words.
    pub fail_message: Option<String>,
    /// How many confirmations were tried.
    pub attempts: i64,
    /// Who settled it: `confirm`, `compensation` or `reconciler` (see [`Settler`]).
    pub settled_by: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// Who brought a payment to its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Settler {
    /// The confirm flow recorded the PG's answer.
    Confirm,
    /// The confirm flow could not record a charge and cancelled it at the PG.
    Compensation,
    /// The reconciler, by asking the PG.
    Reconciler,
}

impl Settler {
    /// As the database spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Settler::Confirm => "confirm",
            Settler::Compensation => "compensation",
            Settler::Reconciler => "reconciler",
        }
    }
}

/// What the PG says of a payment the reconciler settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The PG holds the money: the payment is done and the order paid.
    Charged {
        /// How it was paid.
        method: String,
        /// The approval number.
        approve_no: String,
    },
    /// The PG charged and gave the money back.
    Cancelled,
    /// The PG has no charge for the order.
    NotCharged,
}
