//! The seed's integration test, over real HTTP on loopback: the PG answers 500, ten
//! confirmations open the breaker, the eleventh fails fast without reaching the PG.

mod support;

use std::time::Duration;

use breakwater::CircuitState;
use payment_gateway::mock_pg::{CARD_LIMIT, Fault, MockPg};
use payment_gateway::pg_client::{Cancelled, ConfirmCommand, FailureCause};
use payment_gateway::{PG_BREAKER, PgClient, PgError, PgSettings};

fn command(n: u32, amount: i64) -> ConfirmCommand {
    ConfirmCommand {
        payment_key: format!("pk-{n}"),
        order_id: format!("order-{n}"),
        amount,
    }
}

#[tokio::test]
async fn ten_failures_open_the_breaker_and_the_eleventh_call_never_reaches_the_pg() {
    let pg = MockPg::start().await.unwrap();
    pg.set_fault(Fault::ServerError);
    let registry = support::registry();
    let client = PgClient::new(&registry, PgSettings::new(pg.url()));
    let breaker = registry.circuit_breaker(PG_BREAKER);
    assert_eq!(breaker.state(), CircuitState::Closed);

    for n in 0..10 {
        let error = client.confirm(&command(n, 10_000)).await.unwrap_err();
        assert_eq!(
            error,
            PgError::ExternalApiFailed {
                cause: FailureCause::ServerError(500),
                detail: "/v1/payments/confirm answered 500 Internal Server Error: \
                         {\"code\":\"FAILED_INTERNAL_SYSTEM_PROCESSING\",\
                         \"message\":\"internal error, try again later\"}"
                    .to_owned(),
            }
        );
        let expected = if n < 9 {
            CircuitState::Closed
        } else {
            CircuitState::Open
        };
        assert_eq!(breaker.state(), expected, "after {} failures", n + 1);
    }
    assert_eq!(pg.hits(), 10);

    let error = client.confirm(&command(10, 10_000)).await.unwrap_err();
    let PgError::Unavailable { retry_after } = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    // The seed's 30 s wait in the open state, counted from the tenth failure (rounded up to
    // the breaker's millisecond ticks).
    let wait = retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(29) && wait <= Duration::from_millis(30_001),
        "{wait:?}"
    );
    assert_eq!(pg.hits(), 10, "the eleventh call reached the PG");
    assert_eq!(breaker.metrics().not_permitted_calls, 1);
    assert!(pg.ledger().is_empty());
}

#[tokio::test]
async fn rejections_never_open_the_breaker() {
    let pg = MockPg::start().await.unwrap();
    pg.set_fault(Fault::Reject);
    let registry = support::registry();
    let client = PgClient::new(&registry, PgSettings::new(pg.url()));
    for n in 0..20 {
        let error = client.confirm(&command(n, 10_000)).await.unwrap_err();
        assert_eq!(
            error,
            PgError::Rejected {
                status: 400,
                code: "REJECT_CARD_PAYMENT".to_owned(),
                message: "insufficient balance".to_owned(),
            }
        );
    }
    // Over the card's limit: a 4xx of another kind, as ignored.
    pg.set_fault(Fault::None);
    let error = client
        .confirm(&command(20, CARD_LIMIT + 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PgError::Rejected { status: 400, ref code, .. } if code == "EXCEED_MAX_CARD_LIMIT")
    );

    let breaker = registry.circuit_breaker(PG_BREAKER);
    assert_eq!(breaker.state(), CircuitState::Closed);
    let metrics = breaker.metrics();
    assert_eq!(metrics.buffered_calls, 0, "4xx answers are not recorded");
    assert_eq!(metrics.failed_calls, 0);
    assert_eq!(pg.hits(), 21);
    assert!(pg.ledger().is_empty());
}

#[tokio::test]
async fn timeouts_and_lost_responses_count_as_failures_and_leave_the_outcome_unknown() {
    let pg = MockPg::start().await.unwrap();
    let registry = support::registry();
    let mut settings = PgSettings::new(pg.url());
    settings.read_timeout = Duration::from_millis(150);
    let client = PgClient::new(&registry, settings);

    pg.set_fault(Fault::Hang);
    let error = client.confirm(&command(1, 10_000)).await.unwrap_err();
    assert!(
        matches!(
            error,
            PgError::ExternalApiFailed {
                cause: FailureCause::Timeout,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.outcome_unknown());
    assert!(
        pg.payment("order-1").is_none(),
        "a hanging PG charges nothing"
    );

    pg.set_fault(Fault::LostResponse);
    let error = client.confirm(&command(2, 10_000)).await.unwrap_err();
    assert!(
        matches!(
            error,
            PgError::ExternalApiFailed {
                cause: FailureCause::Transport,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.outcome_unknown());
    assert!(
        pg.payment("order-2").unwrap().total_amount == 10_000,
        "it charged, then dropped the answer"
    );

    // What was charged is found by asking.
    pg.set_fault(Fault::None);
    let found = client.payment_of("order-2").await.unwrap().unwrap();
    assert!(found.is_charged());
    assert_eq!(client.payment_of("order-1").await.unwrap(), None);

    // Two failures and one success; the 404 of order-1's look-up is ignored.
    let metrics = registry.circuit_breaker(PG_BREAKER).metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (3, 2));
}

#[tokio::test]
async fn confirm_is_idempotent_and_cancel_refunds_once() {
    let pg = MockPg::start().await.unwrap();
    let registry = support::registry();
    let client = PgClient::new(&registry, PgSettings::new(pg.url()));
    let first = client.confirm(&command(1, 25_000)).await.unwrap();
    let again = client.confirm(&command(1, 25_000)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first.approve_no, "00000001");
    assert_eq!(pg.ledger().len(), 1, "a repeated confirm charged twice");

    let other_key = ConfirmCommand {
        payment_key: "pk-other".to_owned(),
        ..command(1, 25_000)
    };
    let error = client.confirm(&other_key).await.unwrap_err();
    assert!(
        matches!(error, PgError::Rejected { status: 409, .. }),
        "{error:?}"
    );

    let cancelled = client.cancel("pk-1", "customer asked").await.unwrap();
    let Cancelled::Now(receipt) = &cancelled else {
        panic!("{cancelled:?}")
    };
    assert!(!receipt.is_charged());
    assert_eq!(receipt.status, "CANCELED");
    // The same cancel again (its idempotency key and body): the same answer.
    assert_eq!(
        client.cancel("pk-1", "customer asked").await.unwrap(),
        cancelled
    );
    // Another cancel: the PG refuses it as Toss does, and the client takes it as done.
    assert_eq!(
        client.cancel("pk-1", "again").await.unwrap(),
        Cancelled::Already
    );
    assert_eq!(pg.ledger().len(), 2);
    let error = client.cancel("pk-unknown", "no such").await.unwrap_err();
    assert!(
        matches!(error, PgError::Rejected { status: 404, .. }),
        "{error:?}"
    );
}
