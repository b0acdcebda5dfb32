//! The mock PG's books: a payment per payment key (one per order id), its status as Toss
//! Payments spells it, every charge and cancellation in order, and the billing keys.
//!
//! A payment key is issued when the customer authorises a payment ([`Ledger::authorize`]);
//! from then the merchant has the confirm window to confirm it. Until then the key reads
//! `IN_PROGRESS`; after it, unconfirmed, `EXPIRED`, and a confirm is refused. A refused card
//! leaves it `ABORTED`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// A payment as the PG knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PgPayment {
    /// The key the PG gave the payment when the customer authorised it.
    pub payment_key: String,
    /// The merchant's order id.
    pub order_id: String,
    /// Where it stands.
    pub status: PgStatus,
    /// How the customer paid (empty until charged).
    pub method: String,
    /// The card company's approval number (empty until charged).
    pub approve_no: String,
    /// The amount authorised, then charged, in won.
    pub total_amount: i64,
    /// What is still charged, in won: `total_amount` less what was cancelled.
    pub balance_amount: i64,
    /// A human-readable line.
    pub message: String,
}

/// Where a payment stands at the PG, as Toss Payments spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PgStatus {
    /// Authorised by the customer, waiting for the merchant's confirm (within the window).
    InProgress,
    /// Charged.
    Done,
    /// Charged, then cancelled (refunded) whole.
    Canceled,
    /// Charged, then part of it cancelled.
    PartialCanceled,
    /// The card company refused it: nothing charged.
    Aborted,
    /// Not confirmed within the window: nothing charged, and a confirm is refused.
    Expired,
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
    /// In won.
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

/// A billing key: a card registered for automatic charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingKey {
    /// The key to charge with.
    pub billing_key: String,
    /// The merchant's id of the customer the key belongs to.
    pub customer_key: String,
    /// How the customer pays.
    pub method: String,
}

/// Why a request is refused (a 4xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The order was authorised or charged under another key or amount.
    Duplicated,
    /// The payment was cancelled already.
    AlreadyCanceled,
    /// No payment under that key or order id.
    NotFound,
    /// The confirm window passed: the key is `EXPIRED`.
    Expired,
    /// The card was refused: the key is `ABORTED`.
    Aborted,
    /// Only a charged payment can be cancelled.
    NotCancelable,
    /// No such billing key for that customer.
    NotFoundBillingKey,
}

#[derive(Debug)]
struct Session {
    payment: PgPayment,
    issued_at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    by_key: HashMap<String, Session>,
    key_of_order: HashMap<String, String>,
    billing_keys: HashMap<String, BillingKey>,
    entries: Vec<LedgerEntry>,
    issued: u64,
}

impl Ledger {
    /// Issues a payment key for the customer's authorisation of `amount` for `order_id`; the
    /// same order and amount again answers the same key.
    pub(crate) fn authorize(
        &mut self,
        order_id: &str,
        amount: i64,
        now: Instant,
    ) -> Result<PgPayment, Refusal> {
        if let Some(key) = self.key_of_order.get(order_id) {
            let session = self.by_key.get(key).ok_or(Refusal::NotFound)?;
            return if session.payment.total_amount == amount {
                Ok(session.payment.clone())
            } else {
                Err(Refusal::Duplicated)
            };
        }
        self.issued += 1;
        let key = format!("tpk-{:08}", self.issued);
        Ok(self.open(&key, order_id, amount, now))
    }

    fn open(&mut self, key: &str, order_id: &str, amount: i64, now: Instant) -> PgPayment {
        let payment = PgPayment {
            payment_key: key.to_owned(),
            order_id: order_id.to_owned(),
            status: PgStatus::InProgress,
            method: String::new(),
            approve_no: String::new(),
            total_amount: amount,
            balance_amount: 0,
            message: "authorised, waiting for the merchant's confirm".to_owned(),
        };
        self.by_key.insert(
            key.to_owned(),
            Session {
                payment: payment.clone(),
                issued_at: now,
            },
        );
        self.key_of_order
            .insert(order_id.to_owned(), key.to_owned());
        payment
    }

    /// The session of `payment_key` for a confirm of `order_id` and `amount`: a key the PG
    /// never issued is taken as authorised now (tests that skip the checkout).
    fn session_for(
        &mut self,
        payment_key: &str,
        order_id: &str,
        amount: i64,
        now: Instant,
    ) -> Result<&mut Session, Refusal> {
        if !self.by_key.contains_key(payment_key) {
            if self.key_of_order.contains_key(order_id) {
                return Err(Refusal::Duplicated);
            }
            self.open(payment_key, order_id, amount, now);
        }
        let session = self.by_key.get_mut(payment_key).ok_or(Refusal::NotFound)?;
        if session.payment.order_id != order_id || session.payment.total_amount != amount {
            return Err(Refusal::Duplicated);
        }
        Ok(session)
    }

    /// Charges the payment of `payment_key`, once, within `window` of its authorisation: a
    /// repeated confirm answers the payment made the first time and charges nothing.
    pub(crate) fn confirm(
        &mut self,
        payment_key: &str,
        order_id: &str,
        amount: i64,
        now: Instant,
        window: Duration,
    ) -> Result<PgPayment, Refusal> {
        let approve_no = format!("{:08}", self.issued + 1);
        let session = self.session_for(payment_key, order_id, amount, now)?;
        match status_at(session, now, window) {
            PgStatus::InProgress => {}
            PgStatus::Done => return Ok(session.payment.clone()),
            PgStatus::Canceled | PgStatus::PartialCanceled => return Err(Refusal::AlreadyCanceled),
            PgStatus::Aborted => return Err(Refusal::Aborted),
            PgStatus::Expired => {
                session.payment.status = PgStatus::Expired;
                session.payment.message = "not confirmed within the window".to_owned();
                return Err(Refusal::Expired);
            }
        }
        let payment = {
            let p = &mut session.payment;
            p.status = PgStatus::Done;
            p.method = "CARD".to_owned();
            p.approve_no = approve_no;
            p.balance_amount = amount;
            p.message = "approved".to_owned();
            p.clone()
        };
        self.issued += 1;
        self.charge_entry(&payment);
        Ok(payment)
    }

    /// The card company refuses the confirm of `payment_key`: the key is `ABORTED` (unless
    /// it was charged already).
    pub(crate) fn abort(
        &mut self,
        payment_key: &str,
        order_id: &str,
        amount: i64,
        now: Instant,
    ) -> Result<(), Refusal> {
        let session = self.session_for(payment_key, order_id, amount, now)?;
        if session.payment.status == PgStatus::InProgress {
            session.payment.status = PgStatus::Aborted;
            session.payment.message = "the card company refused the payment".to_owned();
        }
        Ok(())
    }

    fn charge_entry(&mut self, payment: &PgPayment) {
        self.entries.push(LedgerEntry {
            kind: EntryKind::Charge,
            order_id: payment.order_id.clone(),
            payment_key: payment.payment_key.clone(),
            amount: payment.total_amount,
        });
    }

    fn cancel_entry(&mut self, payment_key: &str, amount: i64) -> Option<PgPayment> {
        let session = self.by_key.get_mut(payment_key)?;
        session.payment.balance_amount -= amount;
        session.payment.status = if session.payment.balance_amount == 0 {
            PgStatus::Canceled
        } else {
            PgStatus::PartialCanceled
        };
        session.payment.message = "canceled".to_owned();
        let payment = session.payment.clone();
        self.entries.push(LedgerEntry {
            kind: EntryKind::Cancel,
            order_id: payment.order_id.clone(),
            payment_key: payment_key.to_owned(),
            amount,
        });
        Some(payment)
    }

    /// Cancels the whole payment of `payment_key`. A second cancel is refused as Toss
    /// refuses it (`ALREADY_CANCELED_PAYMENT`); a payment never charged cannot be cancelled.
    pub(crate) fn cancel(
        &mut self,
        payment_key: &str,
        now: Instant,
        window: Duration,
    ) -> Result<PgPayment, Refusal> {
        let session = self.by_key.get(payment_key).ok_or(Refusal::NotFound)?;
        match status_at(session, now, window) {
            PgStatus::Done => {
                let balance = session.payment.balance_amount;
                self.cancel_entry(payment_key, balance)
                    .ok_or(Refusal::NotFound)
            }
            PgStatus::Canceled => Err(Refusal::AlreadyCanceled),
            _ => Err(Refusal::NotCancelable),
        }
    }

    /// Cancels `amount` of a charged payment (a merchant's partial refund, made outside the
    /// service): it reads `PARTIAL_CANCELED`.
    pub(crate) fn partial_cancel(
        &mut self,
        payment_key: &str,
        amount: i64,
    ) -> Result<PgPayment, Refusal> {
        let session = self.by_key.get(payment_key).ok_or(Refusal::NotFound)?;
        if session.payment.status != PgStatus::Done || amount >= session.payment.balance_amount {
            return Err(Refusal::NotCancelable);
        }
        self.cancel_entry(payment_key, amount)
            .ok_or(Refusal::NotFound)
    }

    /// Registers a card of `customer_key` for automatic charges.
    pub(crate) fn issue_billing_key(&mut self, customer_key: &str) -> BillingKey {
        self.issued += 1;
        let key = BillingKey {
            billing_key: format!("bk-{:08}", self.issued),
            customer_key: customer_key.to_owned(),
            method: "CARD".to_owned(),
        };
        self.billing_keys
            .insert(key.billing_key.clone(), key.clone());
        key
    }

    /// Charges `amount` for `order_id` with a billing key, at once (no confirm step). An order
    /// id charged before is refused: a new charge needs a new order id.
    pub(crate) fn charge_billing(
        &mut self,
        billing_key: &str,
        customer_key: &str,
        order_id: &str,
        amount: i64,
        now: Instant,
    ) -> Result<PgPayment, Refusal> {
        match self.billing_keys.get(billing_key) {
            Some(key) if key.customer_key == customer_key => {}
            _ => return Err(Refusal::NotFoundBillingKey),
        }
        if self.key_of_order.contains_key(order_id) {
            return Err(Refusal::Duplicated);
        }
        self.issued += 1;
        let key = format!("bpk-{:08}", self.issued);
        self.open(&key, order_id, amount, now);
        let session = self.by_key.get_mut(&key).ok_or(Refusal::NotFound)?;
        let payment = {
            let p = &mut session.payment;
            p.status = PgStatus::Done;
            p.method = "BILLING".to_owned();
            p.approve_no = format!("{:08}", self.issued);
            p.balance_amount = amount;
            p.message = "approved".to_owned();
            p.clone()
        };
        self.charge_entry(&payment);
        Ok(payment)
    }

    /// The payment of `order_id`, its status as of `now`.
    pub(crate) fn by_order(
        &self,
        order_id: &str,
        now: Instant,
        window: Duration,
    ) -> Option<PgPayment> {
        let key = self.key_of_order.get(order_id)?;
        self.by_key(key, now, window)
    }

    /// The payment of `payment_key`, its status as of `now`.
    pub(crate) fn by_key(
        &self,
        payment_key: &str,
        now: Instant,
        window: Duration,
    ) -> Option<PgPayment> {
        let session = self.by_key.get(payment_key)?;
        let mut payment = session.payment.clone();
        payment.status = status_at(session, now, window);
        Some(payment)
    }

    pub(crate) fn entries(&self) -> Vec<LedgerEntry> {
        self.entries.clone()
    }
}

/// A session's status at `now`: `IN_PROGRESS` past the window reads `EXPIRED`.
fn status_at(session: &Session, now: Instant, window: Duration) -> PgStatus {
    match session.payment.status {
        PgStatus::InProgress if now.duration_since(session.issued_at) > window => PgStatus::Expired,
        status => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn a_repeated_confirm_charges_once() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        let first = ledger
            .confirm("key-1", "order-1", 25_000, now, WINDOW)
            .unwrap();
        let again = ledger
            .confirm("key-1", "order-1", 25_000, now, WINDOW)
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(ledger.entries().len(), 1);
        for (key, order, amount) in [
            ("key-2", "order-1", 25_000),
            ("key-1", "order-1", 30_000),
            ("key-1", "order-2", 30_000),
        ] {
            assert_eq!(
                ledger.confirm(key, order, amount, now, WINDOW),
                Err(Refusal::Duplicated)
            );
        }
    }

    #[test]
    fn a_second_cancel_is_refused_as_toss_refuses_it() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        ledger
            .confirm("key-1", "order-1", 25_000, now, WINDOW)
            .unwrap();
        let cancelled = ledger.cancel("key-1", now, WINDOW).unwrap();
        assert_eq!(cancelled.status, PgStatus::Canceled);
        assert_eq!(cancelled.balance_amount, 0);
        assert_eq!(
            ledger.cancel("key-1", now, WINDOW),
            Err(Refusal::AlreadyCanceled)
        );
        let kinds: Vec<EntryKind> = ledger.entries().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Charge, EntryKind::Cancel]);
        assert_eq!(
            ledger.confirm("key-1", "order-1", 25_000, now, WINDOW),
            Err(Refusal::AlreadyCanceled)
        );
        assert_eq!(ledger.cancel("nope", now, WINDOW), Err(Refusal::NotFound));
    }

    #[test]
    fn an_unconfirmed_key_expires_after_the_window_and_cannot_be_confirmed() {
        let mut ledger = Ledger::default();
        let start = Instant::now();
        let key = ledger
            .authorize("order-1", 5_000, start)
            .unwrap()
            .payment_key;
        let read = |ledger: &Ledger, at: Instant| ledger.by_order("order-1", at, WINDOW).unwrap();
        assert_eq!(read(&ledger, start + WINDOW).status, PgStatus::InProgress);
        let late = start + WINDOW + Duration::from_millis(1);
        assert_eq!(read(&ledger, late).status, PgStatus::Expired);
        assert_eq!(
            ledger.confirm(&key, "order-1", 5_000, late, WINDOW),
            Err(Refusal::Expired)
        );
        assert_eq!(
            ledger.cancel(&key, late, WINDOW),
            Err(Refusal::NotCancelable)
        );
        assert!(ledger.entries().is_empty());
    }

    #[test]
    fn a_refused_card_aborts_the_key() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        ledger.abort("key-1", "order-1", 5_000, now).unwrap();
        assert_eq!(
            ledger.by_order("order-1", now, WINDOW).unwrap().status,
            PgStatus::Aborted
        );
        assert_eq!(
            ledger.confirm("key-1", "order-1", 5_000, now, WINDOW),
            Err(Refusal::Aborted)
        );
    }

    #[test]
    fn a_partial_cancel_leaves_a_balance() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        ledger
            .confirm("key-1", "order-1", 10_000, now, WINDOW)
            .unwrap();
        let partial = ledger.partial_cancel("key-1", 4_000).unwrap();
        assert_eq!(partial.status, PgStatus::PartialCanceled);
        assert_eq!(partial.balance_amount, 6_000);
        assert_eq!(
            ledger.partial_cancel("key-1", 6_000),
            Err(Refusal::NotCancelable)
        );
    }

    #[test]
    fn a_billing_key_charges_each_order_id_once() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        let key = ledger.issue_billing_key("customer-1").billing_key;
        let paid = ledger
            .charge_billing(&key, "customer-1", "sub-1-p1", 9_900, now)
            .unwrap();
        assert_eq!(paid.status, PgStatus::Done);
        assert_eq!(
            ledger.charge_billing(&key, "customer-1", "sub-1-p1", 9_900, now),
            Err(Refusal::Duplicated)
        );
        assert_eq!(
            ledger.charge_billing(&key, "customer-2", "sub-1-p2", 9_900, now),
            Err(Refusal::NotFoundBillingKey)
        );
        assert_eq!(ledger.entries().len(), 1);
    }
}
