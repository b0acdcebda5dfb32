//! The confirm flow leaves the database in the right state for every outcome, and no
//! transaction is open while the PG is called.

mod support;

use std::time::Duration;

use breakwater::CircuitState;
use payment_gateway::mock_pg::Fault;
use payment_gateway::store::{Completion, StoreError};
use payment_gateway::{ConfirmError, PG_BREAKER, PaymentState, PgError};
use support::Setup;

const AMOUNT: i64 = 25_000;

async fn setup() -> Setup {
    Setup::new(Duration::from_millis(200)).await
}

#[tokio::test]
async fn an_approved_payment_is_done_and_its_order_paid() {
    let s = setup().await;
    s.store
        .create_payment("o-1", "hoodie", AMOUNT)
        .await
        .unwrap();
    let payment = s.confirm.confirm("o-1", "pk-1", AMOUNT).await.unwrap();
    assert_eq!(payment.state, PaymentState::Done);
    assert_eq!(payment.payment_key.as_deref(), Some("pk-1"));
    assert_eq!(payment.method.as_deref(), Some("CARD"));
    assert_eq!(payment.approve_no.as_deref(), Some("00000001"));
    assert_eq!(payment.attempts, 1);
    assert_eq!(s.pg.ledger().len(), 1);
    // A retried callback answers the payment again, and the PG is not asked again.
    let again = s.confirm.confirm("o-1", "pk-1", AMOUNT).await.unwrap();
    assert_eq!(again, payment);
    assert_eq!(s.pg.hits(), 1);
    // With another key, it is refused by the store before the PG is asked.
    let error = s.confirm.confirm("o-1", "pk-2", AMOUNT).await.unwrap_err();
    assert!(matches!(
        error,
        ConfirmError::Store(StoreError::WrongState {
            state: PaymentState::Done,
            ..
        })
    ));
    assert_eq!(s.pg.hits(), 1);
}

#[tokio::test]
async fn a_rejected_payment_fails_with_the_pgs_code() {
    let s = setup().await;
    s.store
        .create_payment("o-1", "hoodie", AMOUNT)
        .await
        .unwrap();
    s.pg.set_fault(Fault::Reject);
    let error = s.confirm.confirm("o-1", "pk-1", AMOUNT).await.unwrap_err();
    let ConfirmError::Pg {
        error: PgError::Rejected { code, .. },
        payment: Some(payment),
    } = error
    else {
        panic!("expected a rejection, got {error:?}");
    };
    assert_eq!(code, "REJECT_CARD_PAYMENT");
    assert_eq!(payment.state, PaymentState::Failed);
    assert_eq!(payment.fail_code.as_deref(), Some("REJECT_CARD_PAYMENT"));
    assert_eq!(
        payment.fail_message.as_deref(),
        Some("insufficient balance")
    );
    assert!(s.pg.ledger().is_empty());
}

#[tokio::test]
async fn a_pg_error_or_no_answer_leaves_the_payment_unknown() {
    let s = setup().await;
    for order in ["o-500", "o-hang", "o-lost"] {
        s.store
            .create_payment(order, "hoodie", AMOUNT)
            .await
            .unwrap();
    }
    s.pg.set_fault(Fault::ServerError);
    let error = s
        .confirm
        .confirm("o-500", "pk-500", AMOUNT)
        .await
        .unwrap_err();
    // The request left: a 5xx may come after the charge (the reconciler asks the PG).
    assert!(
        matches!(&error, ConfirmError::Pg { payment: Some(p), .. } if p.state == PaymentState::Unknown),
        "{error:?}"
    );

    s.pg.set_fault(Fault::Hang);
    let error = s
        .confirm
        .confirm("o-hang", "pk-hang", AMOUNT)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ConfirmError::Pg { payment: Some(p), .. } if p.state == PaymentState::Unknown),
        "{error:?}"
    );

    s.pg.set_fault(Fault::LostResponse);
    let error = s
        .confirm
        .confirm("o-lost", "pk-lost", AMOUNT)
        .await
        .unwrap_err();
    let ConfirmError::Pg {
        payment: Some(payment),
        ..
    } = error
    else {
        panic!("expected a PG error, got {error:?}");
    };
    assert_eq!(payment.state, PaymentState::Unknown);
    assert_eq!(payment.fail_code.as_deref(), Some("PG_OUTCOME_UNKNOWN"));
    // The PG charged it: an unknown payment is one the PG must be asked about.
    assert!(s.pg.payment("o-lost").is_some());
    assert!(s.pg.payment("o-hang").is_none());
    assert!(s.pg.payment("o-500").is_none());
}

#[tokio::test]
async fn an_open_breaker_leaves_the_payment_ready_and_the_pg_untouched() {
    let s = setup().await;
    s.store
        .create_payment("o-1", "hoodie", AMOUNT)
        .await
        .unwrap();
    s.registry.circuit_breaker(PG_BREAKER).force_open();
    let error = s.confirm.confirm("o-1", "pk-1", AMOUNT).await.unwrap_err();
    assert!(
        matches!(
            error,
            ConfirmError::Pg {
                error: PgError::Unavailable { .. },
                payment: None
            }
        ),
        "{error:?}"
    );
    let payment = s.store.payment("o-1").await.unwrap();
    assert_eq!(payment.state, PaymentState::Ready);
    assert_eq!(payment.attempts, 0);
    assert_eq!(s.pg.hits(), 0);

    // Once the PG is reachable again, the same payment confirms.
    s.registry
        .circuit_breaker(PG_BREAKER)
        .transition_to(CircuitState::Closed);
    let payment = s.confirm.confirm("o-1", "pk-1", AMOUNT).await.unwrap();
    assert_eq!(payment.state, PaymentState::Done);
}

#[tokio::test]
async fn the_store_refuses_what_cannot_be_confirmed() {
    let s = setup().await;
    s.store
        .create_payment("o-1", "hoodie", AMOUNT)
        .await
        .unwrap();
    let duplicate = s
        .store
        .create_payment("o-1", "hoodie", AMOUNT)
        .await
        .unwrap_err();
    assert!(matches!(duplicate, StoreError::Duplicate { .. }));
    let wrong = s
        .confirm
        .confirm("o-1", "pk-1", AMOUNT + 1)
        .await
        .unwrap_err();
    assert!(matches!(
        wrong,
        ConfirmError::Store(StoreError::AmountMismatch {
            expected: AMOUNT,
            given: 25_001
        })
    ));
    let missing = s.confirm.confirm("o-404", "pk", AMOUNT).await.unwrap_err();
    assert!(matches!(
        missing,
        ConfirmError::Store(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.pg.hits(),
        0,
        "the PG was asked about a payment the store refused"
    );

    // An in-progress payment cannot be prepared again, nor failed by the fail callback.
    s.store.prepare("o-1", "pk-1", AMOUNT).await.unwrap();
    assert!(matches!(
        s.store.prepare("o-1", "pk-1", AMOUNT).await.unwrap_err(),
        StoreError::WrongState {
            state: PaymentState::InProgress,
            ..
        }
    ));
    assert!(matches!(
        s.store.fail("o-1", "X", "y").await.unwrap_err(),
        StoreError::WrongState {
            state: PaymentState::InProgress,
            ..
        }
    ));
    // And a completion needs an in-progress payment.
    s.store
        .complete("o-1", Completion::NotCalled)
        .await
        .unwrap();
    assert!(matches!(
        s.store
            .complete("o-1", Completion::NotCalled)
            .await
            .unwrap_err(),
        StoreError::WrongState {
            state: PaymentState::Ready,
            ..
        }
    ));
}

#[tokio::test]
async fn no_transaction_is_open_while_the_pg_is_called() {
    // One connection in the pool would be held by a transaction spanning the PG call; with
    // the PG slow, other payments could not even be read meanwhile.
    let s = setup().await;
    s.store
        .create_payment("o-slow", "hoodie", AMOUNT)
        .await
        .unwrap();
    s.store
        .create_payment("o-other", "hoodie", AMOUNT)
        .await
        .unwrap();
    s.pg.set_fault(Fault::Slow(Duration::from_millis(150)));
    let confirm = s.confirm.clone();
    let slow = tokio::spawn(async move { confirm.confirm("o-slow", "pk-slow", AMOUNT).await });
    // While the PG is slow, the payment is visible as in progress, and other writes go on.
    let mut polls = 0;
    while s.store.payment("o-slow").await.unwrap().state != PaymentState::InProgress {
        polls += 1;
        assert!(polls < 10_000, "the payment never went in progress");
        tokio::task::yield_now().await;
    }
    let failed = s
        .store
        .fail("o-other", "USER_CANCEL", "cancelled by the customer")
        .await
        .unwrap();
    assert_eq!(failed.state, PaymentState::Failed);
    assert!(
        !slow.is_finished(),
        "the slow PG call ended before the other write"
    );
    let done = slow.await.unwrap().unwrap();
    assert_eq!(done.state, PaymentState::Done);
}
