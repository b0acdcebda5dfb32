//! Money stays consistent under faults: the chaos run's audit, replays, compensation, and the
//! reconciler after a crash, with several reconcilers at once. On SQLite always; on
//! PostgreSQL too when `PAYMENT_GATEWAY_TEST_POSTGRES` names a server (`.ci/run` starts one
//! with `.ci/postgres`; set `PAYMENT_GATEWAY_REQUIRE_POSTGRES=1` to make its absence fail).

mod support;

use std::time::Duration;

use breakwater::chaos::{Chaos, ChaosBuilder, FaultKind};
use payment_gateway::chaos_run::{self, ChaosOptions};
use payment_gateway::confirm::{Backoff, Compensation, ConfirmError};
use payment_gateway::mock_pg::{EntryKind, MockPg};
use payment_gateway::pg_client::ConfirmCommand;
use payment_gateway::reconcile::{Pass, Reconciler};
use payment_gateway::store::{Backend, Completion, PaymentState, TemporaryFile};
use payment_gateway::{DB_CHAOS, PG_CHAOS, PaymentConfirm, PgClient, PgSettings, Store};
use sqlx::Executor;

/// A database for one test: a fresh SQLite file, or a fresh schema on the PostgreSQL server.
struct Database {
    url: String,
    _file: Option<TemporaryFile>,
}

/// SQLite, and PostgreSQL when the environment names a server.
async fn databases() -> Vec<Database> {
    let file = TemporaryFile::new("payment-gateway-consistency");
    let mut all = vec![Database {
        url: format!("sqlite://{}?mode=rwc", file.path().display()),
        _file: Some(file),
    }];
    match std::env::var("PAYMENT_GATEWAY_TEST_POSTGRES") {
        Ok(server) => all.push(Database {
            url: fresh_schema(&server).await,
            _file: None,
        }),
        Err(_) if std::env::var_os("PAYMENT_GATEWAY_REQUIRE_POSTGRES").is_some() => {
            panic!(
                "PAYMENT_GATEWAY_REQUIRE_POSTGRES is set but PAYMENT_GATEWAY_TEST_POSTGRES is not"
            )
        }
        Err(_) => println!("PostgreSQL skipped: PAYMENT_GATEWAY_TEST_POSTGRES is not set"),
    }
    all
}

/// A new schema on `server`, and a URL whose connections use it.
async fn fresh_schema(server: &str) -> String {
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("t{}_{nanos}", std::process::id());
    let pool = sqlx::AnyPool::connect(server).await.unwrap();
    pool.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap();
    pool.close().await;
    let separator = if server.contains('?') { '&' } else { '?' };
    format!("{server}{separator}options=-csearch_path%3D{schema}")
}

async fn chaos_run_is_consistent(database: &Database) {
    let mut options = ChaosOptions::new(2_000, 0.3, 7);
    options.database_url = Some(database.url.clone());
    let report = chaos_run::run(&options).await.unwrap();
    println!("{report}");
    let audit = &report.audit;
    assert_eq!(audit.payments, 2_000);
    assert_eq!(audit.inconsistent, 0, "{audit}");
    assert_eq!(audit.double_charges, 0, "{audit}");
    assert!(audit.is_consistent());
    // The faults did reach every path: charges recorded, compensated, reconciled, refused.
    assert!(audit.completed > 500, "{audit}");
    assert!(audit.compensated > 50, "{audit}");
    assert!(audit.reconciled > 50, "{audit}");
    assert!(audit.not_charged > 300, "{audit}");
    assert_eq!(
        audit.charged,
        audit.completed + audit.compensated + report.reconciliation.cancelled,
        "every charge is done or cancelled: {report}"
    );
    assert_eq!(report.reconciliation.left, 0);
    // About 30% of the database writes failed.
    let (db_faults, pg_faults) = report.faults;
    assert!(db_faults > 900 && pg_faults > 100, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_payments_with_30_percent_db_failures_stay_consistent() {
    for database in databases().await {
        chaos_run_is_consistent(&database).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_replays_the_same_run() {
    // One confirmation at a time and no latency: every call's number, so every fault, is the
    // same in both runs.
    let run = |seed: u64| async move {
        let mut options = ChaosOptions::new(150, 0.3, seed);
        options.concurrency = 1;
        options.latency_rate = 0.0;
        let report = chaos_run::run(&options).await.unwrap();
        assert!(report.audit.is_consistent(), "{report}");
        (report.outcomes, report.audit, report.faults)
    };
    let first = run(11).await;
    assert_eq!(run(11).await, first);
    assert_ne!(run(12).await, first);
}

/// A seed whose first draws, at `rate`, give `pattern` (`true`: a failure).
fn seed_for(builder: &ChaosBuilder, pattern: &[bool]) -> u64 {
    (0..100_000)
        .find(|&seed| {
            let chaos = builder.clone().seed(seed).build().unwrap();
            pattern.iter().enumerate().all(|(n, &fails)| {
                (chaos.plan(n as u64).fault() == Some(FaultKind::Failed)) == fails
            })
        })
        .unwrap()
}

struct Flow {
    pg: MockPg,
    store: Store,
    client: PgClient,
    confirm: PaymentConfirm,
    _db: Database,
}

/// The flow on `db`, its database writes failing as `db_faults` says (one per write, in
/// order: prepare, complete, record of the cancel), its PG calls as `pg_faults` says.
async fn flow(db: Database, db_faults: &[bool], pg_faults: &[bool]) -> Flow {
    let pg = MockPg::start().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let registry = support::registry();
    let rates = Chaos::builder().enabled(true).failure_rate(0.5);
    registry
        .chaos(DB_CHAOS)
        .reconfigure(&rates.clone().seed(seed_for(&rates, db_faults)))
        .unwrap();
    registry
        .chaos(PG_CHAOS)
        .reconfigure(&rates.clone().seed(seed_for(&rates, pg_faults)))
        .unwrap();
    let client = PgClient::new(&registry, PgSettings::new(pg.url()));
    let confirm = PaymentConfirm::new(store.clone(), client.clone())
        .with_db_chaos(&registry.chaos(DB_CHAOS))
        .with_backoff(Backoff {
            attempts: 3,
            first_wait: Duration::from_millis(1),
        });
    Flow {
        pg,
        store,
        client,
        confirm,
        _db: db,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_that_cannot_be_recorded_is_cancelled_or_left_to_the_reconciler() {
    for database in databases().await {
        let backend_url = database.url.clone();
        // Complete fails; the cancel succeeds and is recorded.
        let f = flow(database, &[false, true, false], &[false, false]).await;
        f.store
            .create_payment("o-1", "hoodie", 25_000)
            .await
            .unwrap();
        let error = f.confirm.confirm("o-1", "pk-1", 25_000).await.unwrap_err();
        assert!(
            matches!(
                error,
                ConfirmError::NotRecorded {
                    compensation: Compensation::Cancelled,
                    ..
                }
            ),
            "{error}"
        );
        let payment = f.store.payment("o-1").await.unwrap();
        assert_eq!(payment.state, PaymentState::Cancelled);
        assert_eq!(payment.settled_by.as_deref(), Some("compensation"));
        let kinds: Vec<EntryKind> = f.pg.ledger().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Charge, EntryKind::Cancel]);

        // Complete fails, the cancel fails three times (500s): left to the reconciler, which
        // finds the charge standing and completes the payment.
        let reused = Database {
            url: backend_url.clone(),
            _file: None,
        };
        let f2 = flow(reused, &[false, true], &[false, true, true, true, false]).await;
        f2.store
            .create_payment("o-2", "hoodie", 30_000)
            .await
            .unwrap();
        let error = f2.confirm.confirm("o-2", "pk-2", 30_000).await.unwrap_err();
        assert!(
            matches!(
                error,
                ConfirmError::NotRecorded {
                    compensation: Compensation::LeftToReconciler,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            f2.store.payment("o-2").await.unwrap().state,
            PaymentState::InProgress
        );
        let reconciler =
            Reconciler::new(f2.store.clone(), f2.client.clone(), "r").grace(Duration::ZERO);
        let pass = reconciler.run_once().await.unwrap();
        assert_eq!((pass.claimed, pass.charged, pass.left), (1, 1, 0));
        let payment = f2.store.payment("o-2").await.unwrap();
        assert_eq!(payment.state, PaymentState::Done);
        assert_eq!(payment.settled_by.as_deref(), Some("reconciler"));
        assert_eq!(f2.pg.ledger().len(), 1);
        f.store.close().await;
        f2.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_stopped_between_charge_and_completion_leaves_nothing_unsettled() {
    for database in databases().await {
        let pg = MockPg::start().await.unwrap();
        let store = Store::open(&database.url).await.unwrap();
        let client = PgClient::new(&support::registry(), PgSettings::new(pg.url()));
        let charge = |order: &str, amount: i64| ConfirmCommand {
            payment_key: format!("pk-{order}"),
            order_id: order.to_owned(),
            amount,
        };
        for (order, amount) in [
            ("charged", 1_000),
            ("never-called", 2_000),
            ("refunded", 3_000),
            ("unknown", 4_000),
        ] {
            store.create_payment(order, "hoodie", amount).await.unwrap();
            store
                .prepare(order, &format!("pk-{order}"), amount)
                .await
                .unwrap();
        }
        // The process stops after each PG call, before the completion is written.
        client.confirm(&charge("charged", 1_000)).await.unwrap();
        client.confirm(&charge("refunded", 3_000)).await.unwrap();
        client.cancel("pk-refunded", "test").await.unwrap();
        client.confirm(&charge("unknown", 4_000)).await.unwrap();
        store
            .complete(
                "unknown",
                Completion::Unknown {
                    detail: "lost".into(),
                },
            )
            .await
            .unwrap();

        // Within the grace period, nothing is touched: a confirmation may still be under way.
        let patient = Reconciler::new(store.clone(), client.clone(), "patient")
            .grace(Duration::from_secs(3_600));
        assert_eq!(patient.run_once().await.unwrap().claimed, 0);

        let reconciler =
            Reconciler::new(store.clone(), client.clone(), "after-restart").grace(Duration::ZERO);
        let pass = reconciler.run_once().await.unwrap();
        assert_eq!(
            (
                pass.claimed,
                pass.charged,
                pass.cancelled,
                pass.not_charged,
                pass.left
            ),
            (4, 2, 1, 1, 0)
        );
        let state = |order: &'static str| {
            let store = store.clone();
            async move { store.payment(order).await.unwrap().state }
        };
        assert_eq!(state("charged").await, PaymentState::Done);
        assert_eq!(state("unknown").await, PaymentState::Done);
        assert_eq!(state("refunded").await, PaymentState::Cancelled);
        assert_eq!(state("never-called").await, PaymentState::Failed);
        // A second pass finds nothing.
        assert_eq!(reconciler.run_once().await.unwrap().claimed, 0);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcilers_running_at_once_settle_each_payment_once() {
    for database in databases().await {
        let pg = MockPg::start().await.unwrap();
        let store = Store::open(&database.url).await.unwrap();
        let client = PgClient::new(&support::registry(), PgSettings::new(pg.url()));
        let n = 200;
        for i in 0..n {
            let order = format!("o-{i:03}");
            store.create_payment(&order, "hoodie", 1_000).await.unwrap();
            store
                .prepare(&order, &format!("pk-{order}"), 1_000)
                .await
                .unwrap();
            if i % 2 == 0 {
                client
                    .confirm(&ConfirmCommand {
                        payment_key: format!("pk-{order}"),
                        order_id: order.clone(),
                        amount: 1_000,
                    })
                    .await
                    .unwrap();
            }
        }
        let reconciler = |name: &str| {
            Reconciler::new(store.clone(), client.clone(), name)
                .grace(Duration::ZERO)
                .batch(7)
        };
        let (a, b, c) = (reconciler("a"), reconciler("b"), reconciler("c"));
        let (a, b, c) = tokio::join!(a.run_once(), b.run_once(), c.run_once());
        let passes = [a.unwrap(), b.unwrap(), c.unwrap()];
        let claimed: usize = passes.iter().map(|p| p.claimed).sum();
        let settled: usize = passes.iter().map(Pass::settled).sum();
        assert_eq!((claimed, settled), (n, n), "{passes:?}");
        assert_eq!(passes.iter().map(|p| p.charged).sum::<usize>(), n / 2);
        if store.backend() == Backend::Postgres {
            // SKIP LOCKED lets them share the work rather than queue behind one another.
            println!(
                "PostgreSQL claims per reconciler: {:?}",
                passes.map(|p| p.claimed)
            );
        }
        let counts = store.count_by_state().await.unwrap();
        assert_eq!(counts[&PaymentState::Done], (n / 2) as i64);
        assert_eq!(counts[&PaymentState::Failed], (n / 2) as i64);
        assert_eq!(pg.ledger().len(), n / 2);
        store.close().await;
    }
}
