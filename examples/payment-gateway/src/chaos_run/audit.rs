//! The audit: every payment of a run in the database against the PG's ledger.

use std::collections::BTreeMap;
use std::fmt;

use crate::mock_pg::{EntryKind, LedgerEntry, PgPayment, PgStatus};
use crate::store::{Payment, PaymentState, Settler};

/// What the audit found; [`fmt::Display`] prints it as the chaos run's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Payments in the run.
    pub payments: usize,
    /// Orders the PG charged (whether cancelled later or not).
    pub charged: usize,
    /// Payments `done` (charged and recorded), by whoever settled them.
    pub completed: usize,
    /// Payments the confirm flow compensated: cancelled at the PG and recorded.
    pub compensated: usize,
    /// Payments the reconciler settled, whatever their state.
    pub reconciled: usize,
    /// Payments never charged: `ready` (the breaker was open, or the first write failed) or
    /// `failed`.
    pub not_charged: usize,
    /// Orders the PG charged more than once.
    pub double_charges: usize,
    /// Payments whose state disagrees with the PG (a charge not recorded, a record of a
    /// charge that is not there, one still unsettled, an amount that differs).
    pub inconsistent: usize,
    /// The first few inconsistencies, in words.
    pub findings: Vec<String>,
}

impl Audit {
    /// Audits `payments` (those of one run) against the PG's `ledger` and its view of each
    /// order (`pg`, by order id).
    pub fn of(
        payments: &[Payment],
        ledger: &[LedgerEntry],
        pg: &BTreeMap<String, PgPayment>,
    ) -> Self {
        let mut charges: BTreeMap<&str, usize> = BTreeMap::new();
        for entry in ledger.iter().filter(|e| e.kind == EntryKind::Charge) {
            *charges.entry(entry.order_id.as_str()).or_default() += 1;
        }
        let mut audit = Audit {
            payments: payments.len(),
            ..Audit::default()
        };
        for payment in payments {
            let order_id = payment.order_id.as_str();
            let times_charged = charges.get(order_id).copied().unwrap_or(0);
            if times_charged > 0 {
                audit.charged += 1;
            }
            if times_charged > 1 {
                audit.double_charges += 1;
                audit.note(format!("{order_id}: charged {times_charged} times"));
            }
            match payment.state {
                PaymentState::Done => audit.completed += 1,
                PaymentState::Ready | PaymentState::Failed => audit.not_charged += 1,
                _ => {}
            }
            let settled_by = payment.settled_by.as_deref();
            if payment.state == PaymentState::Cancelled
                && settled_by == Some(Settler::Compensation.as_str())
            {
                audit.compensated += 1;
            }
            if settled_by == Some(Settler::Reconciler.as_str()) {
                audit.reconciled += 1;
            }
            let at_pg = pg.get(order_id);
            let agrees = match (payment.state, at_pg) {
                (PaymentState::Done, Some(p)) => {
                    p.status == PgStatus::Done && p.total_amount == payment.amount
                }
                (PaymentState::Cancelled, Some(p)) => p.status == PgStatus::Canceled,
                (PaymentState::Ready | PaymentState::Failed, None) => true,
                _ => false,
            };
            if !agrees {
                audit.inconsistent += 1;
                let pg_says = at_pg.map_or_else(
                    || "no payment".to_owned(),
                    |p| format!("{:?} {}", p.status, p.total_amount),
                );
                audit.note(format!(
                    "{order_id}: the database says {} {}, the PG says {pg_says}",
                    payment.state, payment.amount
                ));
            }
        }
        audit
    }

    /// Whether the database and the PG agree on every payment, and nothing was charged twice.
    pub fn is_consistent(&self) -> bool {
        self.inconsistent == 0 && self.double_charges == 0
    }

    fn note(&mut self, finding: String) {
        if self.findings.len() < 20 {
            self.findings.push(finding);
        }
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (label, value) in [
            ("payments", self.payments),
            ("charged", self.charged),
            ("completed", self.completed),
            ("compensated", self.compensated),
            ("reconciled", self.reconciled),
            ("not charged", self.not_charged),
            ("double charges", self.double_charges),
            ("inconsistent", self.inconsistent),
        ] {
            writeln!(f, "{label}: {value}")?;
        }
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        Ok(())
    }
}
