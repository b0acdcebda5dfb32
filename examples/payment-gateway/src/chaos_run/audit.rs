//! The audit: every payment (or subscription period) of a run in the database against the
//! PG's ledger, which settles what happened to the money.

use std::collections::BTreeMap;
use std::fmt;

use crate::mock_pg::{EntryKind, LedgerEntry};
use crate::store::{ChargeState, Payment, PaymentState, Subscription, SubscriptionCharge};

/// What the audit found, per category; [`fmt::Display`] prints it as the chaos run's table.
///
/// Each subject (a payment, or a subscription's period) falls in exactly one category.
/// `inconsistent` is the sum of the categories where the database and the PG disagree:
/// double charges, charged-not-done-not-refunded, refunded-but-done, done-not-charged, unknown
/// left, and charges of the run's orders that match no subject at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Payments (or subscription periods) in the run.
    pub subjects: usize,
    /// Charged once, and recorded `done` (saved).
    pub charged_and_done: usize,
    /// Charged, then refunded, and not recorded `done`.
    pub charged_and_refunded: usize,
    /// Never charged, and not recorded `done`.
    pub not_charged: usize,
    /// Charged more than once and not refunded down to one charge.
    pub double_charges: usize,
    /// The money is held, and the database says neither `done` nor refunded: for a
    /// subscription, charged and not subscribed.
    pub charged_not_done_not_refunded: usize,
    /// Recorded `done`, but the PG refunded it.
    pub refunded_but_done: usize,
    /// Recorded `done` (or cancelled), but the PG never charged it.
    pub done_not_charged: usize,
    /// Still unsettled after the reconciler's last pass (`in_progress`, `unknown`,
    /// `cancel_pending`, `charging`, `refund_pending`).
    pub unknown_left: usize,
    /// Set aside for someone to look at.
    pub manual_review: usize,
    /// Orders of the run the PG charged that match no payment or period of the database.
    pub charged_no_record: usize,
    /// The sum of the categories that disagree (see above).
    pub inconsistent: usize,
    /// The first few disagreements, in words.
    pub findings: Vec<String>,
}

/// The PG's side of one order, from the ledger.
#[derive(Debug, Clone, Copy, Default)]
struct AtPg {
    charges: usize,
    charged: i64,
    cancelled: i64,
}

impl AtPg {
    fn held(&self) -> bool {
        self.charged > self.cancelled
    }

    fn refunded(&self) -> bool {
        self.charges > 0 && !self.held()
    }
}

fn by_order(ledger: &[LedgerEntry]) -> BTreeMap<&str, AtPg> {
    let mut orders: BTreeMap<&str, AtPg> = BTreeMap::new();
    for entry in ledger {
        let at_pg = orders.entry(entry.order_id.as_str()).or_default();
        match entry.kind {
            EntryKind::Charge => {
                at_pg.charges += 1;
                at_pg.charged += entry.amount;
            }
            EntryKind::Cancel => at_pg.cancelled += entry.amount,
        }
    }
    orders
}

/// Where one subject stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    ChargedAndDone,
    ChargedAndRefunded,
    NotCharged,
    Double,
    ChargedNotDoneNotRefunded,
    RefundedButDone,
    DoneNotCharged,
    UnknownLeft,
    ManualReview,
}

impl Audit {
    /// Audits `payments` (those of one run: their order ids start with `scope`) against the
    /// PG's `ledger`; a charge of an order under `scope` that matches no payment counts too.
    pub fn of_payments(payments: &[Payment], ledger: &[LedgerEntry], scope: &str) -> Self {
        let orders = by_order(ledger);
        let mut audit = Audit::default();
        let known: std::collections::BTreeSet<&str> =
            payments.iter().map(|p| p.order_id.as_str()).collect();
        audit.orphans(&orders, scope, |order_id| known.contains(order_id));
        for payment in payments {
            let at_pg = orders
                .get(payment.order_id.as_str())
                .copied()
                .unwrap_or_default();
            let category = match payment.state {
                PaymentState::ManualReview => Category::ManualReview,
                PaymentState::InProgress | PaymentState::Unknown | PaymentState::CancelPending => {
                    Category::UnknownLeft
                }
                _ if at_pg.charges > 1 && at_pg.charged - at_pg.cancelled > payment.amount => {
                    Category::Double
                }
                PaymentState::Done if at_pg.held() => Category::ChargedAndDone,
                PaymentState::Done if at_pg.refunded() => Category::RefundedButDone,
                PaymentState::Done => Category::DoneNotCharged,
                _ if at_pg.held() => Category::ChargedNotDoneNotRefunded,
                _ if at_pg.refunded() => Category::ChargedAndRefunded,
                PaymentState::Cancelled => Category::DoneNotCharged,
                PaymentState::Ready | PaymentState::Failed => Category::NotCharged,
            };
            audit.count(category, || {
                format!(
                    "{}: the database says {} {}, the PG charged {} and refunded {}",
                    payment.order_id, payment.state, payment.amount, at_pg.charged, at_pg.cancelled
                )
            });
        }
        audit
    }

    /// Audits the periods of `subscriptions` (those of one run, with their `charges`)
    /// against the PG's `ledger`: a period is consistent when it is saved and held once, or
    /// not saved and not held.
    pub fn of_subscriptions(
        subscriptions: &[Subscription],
        charges: &[SubscriptionCharge],
        ledger: &[LedgerEntry],
        periods: i64,
    ) -> Self {
        let orders = by_order(ledger);
        let mut audit = Audit::default();
        // Every charge of these subscriptions' order ids belongs to a period audited below.
        let audited = |order_id: &str| {
            subscriptions.iter().any(|s| {
                (1..=periods.max(s.paid_periods)).any(|period| {
                    order_id.starts_with(&format!("{}-p{period}-", s.subscription_id))
                })
            })
        };
        for subscription in subscriptions {
            let scope = format!("{}-p", subscription.subscription_id);
            audit.orphans(&orders, &scope, audited);
        }
        for subscription in subscriptions {
            let id = subscription.subscription_id.as_str();
            for period in 1..=periods.max(subscription.paid_periods) {
                let prefix = format!("{id}-p{period}-");
                let attempts: Vec<&SubscriptionCharge> = charges
                    .iter()
                    .filter(|c| c.subscription_id == id && c.period == period)
                    .collect();
                let at_pg: Vec<AtPg> = orders
                    .range(prefix.as_str()..)
                    .take_while(|(order_id, _)| order_id.starts_with(&prefix))
                    .map(|(_, at_pg)| *at_pg)
                    .collect();
                let held = at_pg.iter().filter(|a| a.held()).count();
                let refunded = at_pg.iter().any(AtPg::refunded);
                let saved = subscription.paid_periods >= period;
                let open = attempts
                    .iter()
                    .any(|c| matches!(c.state, ChargeState::Charging | ChargeState::RefundPending));
                let review = attempts
                    .iter()
                    .any(|c| c.state == ChargeState::ManualReview);
                let category = if review {
                    Category::ManualReview
                } else if open {
                    Category::UnknownLeft
                } else if held > 1 {
                    Category::Double
                } else if saved && held == 1 {
                    Category::ChargedAndDone
                } else if saved && refunded {
                    Category::RefundedButDone
                } else if saved {
                    Category::DoneNotCharged
                } else if held == 1 {
                    Category::ChargedNotDoneNotRefunded
                } else if refunded {
                    Category::ChargedAndRefunded
                } else {
                    Category::NotCharged
                };
                audit.count(category, || {
                    format!(
                        "{id} period {period}: saved {saved}, held at the PG {held} time(s), \
                         attempts {:?}",
                        attempts
                            .iter()
                            .map(|c| c.state.as_str())
                            .collect::<Vec<_>>()
                    )
                });
            }
        }
        audit
    }

    /// Counts the charged orders under `scope` that `known` does not claim.
    fn orphans(
        &mut self,
        orders: &BTreeMap<&str, AtPg>,
        scope: &str,
        known: impl Fn(&str) -> bool,
    ) {
        for (order_id, at_pg) in orders.range(scope..) {
            if !order_id.starts_with(scope) {
                break;
            }
            if at_pg.charges > 0 && !known(order_id) {
                self.charged_no_record += 1;
                self.inconsistent += 1;
                if self.findings.len() < 20 {
                    self.findings.push(format!(
                        "{order_id}: the PG charged {} and refunded {}, the database has no \
                         record of it",
                        at_pg.charged, at_pg.cancelled
                    ));
                }
            }
        }
    }

    fn count(&mut self, category: Category, finding: impl FnOnce() -> String) {
        self.subjects += 1;
        let slot = match category {
            Category::ChargedAndDone => &mut self.charged_and_done,
            Category::ChargedAndRefunded => &mut self.charged_and_refunded,
            Category::NotCharged => &mut self.not_charged,
            Category::Double => &mut self.double_charges,
            Category::ChargedNotDoneNotRefunded => &mut self.charged_not_done_not_refunded,
            Category::RefundedButDone => &mut self.refunded_but_done,
            Category::DoneNotCharged => &mut self.done_not_charged,
            Category::UnknownLeft => &mut self.unknown_left,
            Category::ManualReview => &mut self.manual_review,
        };
        *slot += 1;
        if matches!(
            category,
            Category::Double
                | Category::ChargedNotDoneNotRefunded
                | Category::RefundedButDone
                | Category::DoneNotCharged
                | Category::UnknownLeft
        ) {
            self.inconsistent += 1;
            if self.findings.len() < 20 {
                self.findings.push(finding());
            }
        }
    }

    /// Whether the database and the PG agree on every subject, and none was set aside for
    /// review (a chaos run's faults never make a case for review: one is a bug).
    pub fn is_consistent(&self) -> bool {
        self.inconsistent == 0 && self.manual_review == 0
    }

    /// The table's rows: label and count, in order.
    pub fn rows(&self) -> [(&'static str, usize); 12] {
        [
            ("audited", self.subjects),
            ("charged and done", self.charged_and_done),
            ("charged and refunded", self.charged_and_refunded),
            ("not charged", self.not_charged),
            ("double charges", self.double_charges),
            (
                "charged, not done, not refunded",
                self.charged_not_done_not_refunded,
            ),
            ("refunded but done", self.refunded_but_done),
            ("done but not charged", self.done_not_charged),
            ("unknown left", self.unknown_left),
            ("manual review", self.manual_review),
            ("charged, no record", self.charged_no_record),
            ("inconsistent", self.inconsistent),
        ]
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (label, value) in self.rows() {
            writeln!(f, "{label}: {value}")?;
        }
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        Ok(())
    }
}
