//! The mock PG's books: one payment per order id, every charge and cancellation in order.

use std::collections::HashMap;

use serde::Serialize;

/// A payment as the PG knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PgPayment {
    /// The key the PG gave the payment when the customer authorised it.
    pub payment_key: String,
    /// The merchant's order id.
    pub order_id: String,
    /// `DONE` or `CANCELED`, as Toss Payments spells it.
    pub status: PgStatus,
    /// How the customer paid.
    pub method: String,
    /// The card company's approval number.
    pub approve_no: String,
    /// Charged, in won.
    pub total_amount: i64,
    /// A human-readable line.
    pub message: String,
}

/// Where a payment stands at the PG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PgStatus {
    /// Charged.
    Done,
    /// Charged, then cancelled (refunded).
    Canceled,
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// A charge or a cancellation.
    pub kind: EntryKind,
    /// The merchant's order id.
    pub order_id: String,
    /// The PG's payment key.
    pub payment_key: String,
    /// In won; a cancellation refunds the whole charge.
    pub amount: i64,
}

/// What a ledger line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Money taken from the customer.
    Charge,
    /// Money given back.
    Cancel,
}

/// Why a confirm or cancel is refused (a 4xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The order was charged under another key or amount.
    Duplicated,
    /// The payment was cancelled already; it cannot be confirmed again.
    AlreadyCanceled,
    /// No payment under that key or order id.
    NotFound,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    by_order: HashMap<String, PgPayment>,
    order_of_key: HashMap<String, String>,
    entries: Vec<LedgerEntry>,
}

impl Ledger {
    /// Charges `amount` for `order_id`, once: a repeated confirm with the same key and amount
    /// answers the payment made the first time, and charges nothing.
    pub(crate) fn confirm(
        &mut self,
        payment_key: &str,
        order_id: &str,
        amount: i64,
    ) -> Result<PgPayment, Refusal> {
        if let Some(existing) = self.by_order.get(order_id) {
            return if existing.payment_key != payment_key || existing.total_amount != amount {
                Err(Refusal::Duplicated)
            } else if existing.status == PgStatus::Canceled {
                Err(Refusal::AlreadyCanceled)
            } else {
                Ok(existing.clone())
            };
        }
        if self.order_of_key.contains_key(payment_key) {
            return Err(Refusal::Duplicated);
        }
        let approve_no = format!("{:08}", self.by_order.len() + 1);
        let payment = PgPayment {
            payment_key: payment_key.to_owned(),
            order_id: order_id.to_owned(),
            status: PgStatus::Done,
            method: "CARD".to_owned(),
            approve_no,
            total_amount: amount,
            message: "approved".to_owned(),
        };
        self.by_order.insert(order_id.to_owned(), payment.clone());
        self.order_of_key
            .insert(payment_key.to_owned(), order_id.to_owned());
        self.entries.push(LedgerEntry {
            kind: EntryKind::Charge,
            order_id: order_id.to_owned(),
            payment_key: payment_key.to_owned(),
            amount,
        });
        Ok(payment)
    }

    /// Cancels the payment under `payment_key`, once: cancelling it again answers the same.
    pub(crate) fn cancel(&mut self, payment_key: &str) -> Result<PgPayment, Refusal> {
        let order_id = self
            .order_of_key
            .get(payment_key)
            .ok_or(Refusal::NotFound)?;
        let payment = self.by_order.get_mut(order_id).ok_or(Refusal::NotFound)?;
        if payment.status == PgStatus::Done {
            payment.status = PgStatus::Canceled;
            payment.message = "canceled".to_owned();
            self.entries.push(LedgerEntry {
                kind: EntryKind::Cancel,
                order_id: payment.order_id.clone(),
                payment_key: payment_key.to_owned(),
                amount: payment.total_amount,
            });
        }
        Ok(payment.clone())
    }

    pub(crate) fn by_order(&self, order_id: &str) -> Option<PgPayment> {
        self.by_order.get(order_id).cloned()
    }

    pub(crate) fn entries(&self) -> Vec<LedgerEntry> {
        self.entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_confirm_charges_once() {
        let mut ledger = Ledger::default();
        let first = ledger.confirm("key-1", "order-1", 25_000).unwrap();
        let again = ledger.confirm("key-1", "order-1", 25_000).unwrap();
        assert_eq!(first, again);
        assert_eq!(ledger.entries().len(), 1);
        assert_eq!(
            ledger.confirm("key-2", "order-1", 25_000),
            Err(Refusal::Duplicated)
        );
        assert_eq!(
            ledger.confirm("key-1", "order-1", 30_000),
            Err(Refusal::Duplicated)
        );
        assert_eq!(
            ledger.confirm("key-1", "order-2", 30_000),
            Err(Refusal::Duplicated)
        );
    }

    #[test]
    fn a_cancel_refunds_once_and_blocks_a_new_confirm() {
        let mut ledger = Ledger::default();
        ledger.confirm("key-1", "order-1", 25_000).unwrap();
        let cancelled = ledger.cancel("key-1").unwrap();
        assert_eq!(cancelled.status, PgStatus::Canceled);
        assert_eq!(ledger.cancel("key-1").unwrap(), cancelled);
        let kinds: Vec<EntryKind> = ledger.entries().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Charge, EntryKind::Cancel]);
        assert_eq!(
            ledger.confirm("key-1", "order-1", 25_000),
            Err(Refusal::AlreadyCanceled)
        );
        assert_eq!(ledger.cancel("nope"), Err(Refusal::NotFound));
    }
}
