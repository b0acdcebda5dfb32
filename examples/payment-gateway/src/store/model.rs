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
    /// The PG was called and its outcome is not known (no answer, a 5xx, a request still
    /// processed): it may have charged. Settled by asking the PG.
    Unknown,
    /// Charged, but the charge could not be recorded: the refund is under way (the intent is
    /// written before the cancel is sent; a worker retries it until the PG confirms).
    CancelPending,
    /// The PG's record cannot be settled by a rule (a partial cancel, an amount that
    /// differs): someone must look.
    ManualReview,
}

impl PaymentState {
    /// Every state, in the order above.
    pub const ALL: [PaymentState; 8] = [
        PaymentState::Ready,
        PaymentState::InProgress,
        PaymentState::Done,
        PaymentState::Failed,
        PaymentState::Cancelled,
        PaymentState::Unknown,
        PaymentState::CancelPending,
        PaymentState::ManualReview,
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
            PaymentState::CancelPending => "cancel_pending",
            PaymentState::ManualReview => "manual_review",
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
                     cancelled, unknown, cancel_pending, manual_review"
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
    /// Unix milliseconds (the database's clock, as every time here).
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// When the last confirm was sent, Unix milliseconds.
    pub prepared_at: Option<i64>,
    /// When the reconciler found this `done` payment charged at the PG, Unix milliseconds.
    pub verified_at: Option<i64>,
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

/// How the reconciler settles a payment it claimed, from what the PG says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// A `done` payment the PG holds charged: it stays `done`, verified.
    Verified,
    /// The PG gave the money back (the reconciler's cancel, or an earlier one): `cancelled`,
    /// the order cancelled.
    Cancelled,
    /// The PG did not charge and never will: `failed` with this code (`NOT_CHARGED`,
    /// `EXPIRED`, `ABORTED`).
    NotCharged {
        /// Why, as the PG's status says.
        code: String,
    },
    /// No rule settles it: `manual_review`, with the reason.
    ManualReview {
        /// What someone must look at.
        reason: String,
    },
}
