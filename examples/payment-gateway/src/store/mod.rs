//! Orders and payments through sqlx, on a SQLite file or a PostgreSQL database, with the same
//! code and the same migrations (portable SQL: `$N` parameters, `BIGINT`s, `TEXT`s, no
//! backend-specific types). Every operation is one transaction, and every state change is conditional
//! on the state it starts from, so two requests for one order cannot both move it. Every
//! writing transaction writes first, so that SQLite queues concurrent writers instead of
//! failing them.
//!
//! ```no_run
//! # async fn run() -> Result<(), payment_gateway::store::StoreError> {
//! use payment_gateway::store::{Completion, Store};
//!
//! let store = Store::open("sqlite://payments.db?mode=rwc").await?;
//! store.create_payment("order-1", "hoodie", 25_000).await?;
//! store.prepare("order-1", "pk-1", 25_000).await?;   // ready -> in_progress
//! // ... the PG call, with no transaction open ...
//! store
//!     .complete("order-1", Completion::Approved { method: "CARD".into(), approve_no: "1".into() })
//!     .await?;                                          // in_progress -> done
//! # Ok(()) }
//! ```

mod billing;
mod model;
mod settle;
mod write;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

pub use billing::{
    BillingFault, BillingWrite, BillingWrites, ChargeSettlement, ChargeState, Subscription,
    SubscriptionCharge,
};
pub use model::{Payment, PaymentState, Settlement, Settler};
pub use write::{DbFault, Write, Writes};

/// The schema, embedded in the binary: `migrations/` of this example.
const MIGRATIONS: [(i64, &str, &str); 3] = [
    (
        1,
        "orders and payments",
        include_str!("../../migrations/0001_orders_and_payments.sql"),
    ),
    (
        2,
        "settlement",
        include_str!("../../migrations/0002_settlement.sql"),
    ),
    (
        3,
        "durable compensation and subscriptions",
        include_str!("../../migrations/0003_durable_compensation.sql"),
    ),
];

/// Why a store operation did not happen.
#[derive(Debug)]
pub enum StoreError {
    /// No order (or payment) with that id.
    NotFound {
        /// The order id asked for.
        order_id: String,
    },
    /// An order with that id exists already.
    Duplicate {
        /// The order id.
        order_id: String,
    },
    /// The amount to confirm is not the order's.
    AmountMismatch {
        /// The order's amount.
        expected: i64,
        /// The amount given.
        given: i64,
    },
    /// The payment is not in a state the operation starts from.
    WrongState {
        /// The order id.
        order_id: String,
        /// Where the payment stands.
        state: PaymentState,
        /// What the operation needs.
        expected: &'static str,
    },
    /// A subscription's charge attempt is not in a state the operation starts from.
    WrongCharge {
        /// The attempt's order id.
        order_id: String,
        /// Where it stands.
        state: ChargeState,
        /// What the operation needs.
        expected: &'static str,
    },
    /// A subscription is not in the state the operation needs.
    NotDue {
        /// The subscription.
        subscription_id: String,
        /// What the operation needs.
        expected: &'static str,
    },
    /// The database URL names no driver compiled in.
    UnsupportedUrl(String),
    /// A fault injected by the chaos layer on the database writes: the write did not happen.
    Injected(breakwater::chaos::InjectedFault),
    /// A fault injected by the chaos layer after the write committed: the caller is told it
    /// failed, as when a connection breaks during the commit's answer. Whether it happened is
    /// for a read to tell.
    Ambiguous(breakwater::chaos::InjectedFault),
    /// The database failed.
    Database(sqlx::Error),
    /// The schema could not be brought up to date.
    Migration(sqlx::migrate::MigrateError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound { order_id } => write!(f, "no payment for order `{order_id}`"),
            StoreError::Duplicate { order_id } => write!(f, "order `{order_id}` exists already"),
            StoreError::AmountMismatch { expected, given } => write!(
                f,
                "amount {given} is not the order's: it must be {expected}"
            ),
            StoreError::WrongState {
                order_id,
                state,
                expected,
            } => write!(
                f,
                "the payment of order `{order_id}` is {state}: it must be {expected}"
            ),
            StoreError::WrongCharge {
                order_id,
                state,
                expected,
            } => write!(
                f,
                "the charge `{order_id}` is {state}: it must be {expected}"
            ),
            StoreError::NotDue {
                subscription_id,
                expected,
            } => write!(f, "the subscription `{subscription_id}` is not {expected}"),
            StoreError::UnsupportedUrl(url) => write!(
                f,
                "database URL `{url}` is not allowed: it must start with sqlite:, postgres: or \
                 postgresql:"
            ),
            StoreError::Injected(fault) => write!(f, "database write failed: {fault}"),
            StoreError::Ambiguous(fault) => {
                write!(f, "database write may or may not have committed: {fault}")
            }
            StoreError::Database(e) => write!(f, "database error: {e}"),
            StoreError::Migration(e) => write!(f, "cannot migrate the database: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Database(e) => Some(e),
            StoreError::Migration(e) => Some(e),
            StoreError::Injected(e) | StoreError::Ambiguous(e) => Some(e),
            _ => None,
        }
    }
}

impl From<breakwater::chaos::InjectedFault> for StoreError {
    fn from(fault: breakwater::chaos::InjectedFault) -> Self {
        StoreError::Injected(fault)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

/// How a confirmation ended, for [`Store::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Charged: the payment is done and the order paid.
    Approved {
        /// How it was paid.
        method: String,
        /// The approval number.
        approve_no: String,
    },
    /// Not charged: the payment failed.
    Failed {
        /// The PG's code, or ours.
        code: String,
        /// In words.
        message: String,
    },
    /// No answer from the PG: it may have charged. The payment is left `unknown`.
    Unknown {
        /// What happened, in words.
        detail: String,
    },
    /// The PG was not called (its breaker is open): the payment is ready again.
    NotCalled,
}

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How long the store waits, so that a stuck database fails a request instead of holding it
/// (the seed's datasource: `connection-timeout: 1100`, `socketTimeout: 3000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTimeouts {
    /// How long a request waits for a connection of the pool (1.1 s).
    pub acquire: Duration,
    /// How long one statement may run: PostgreSQL's `statement_timeout`; on SQLite the busy
    /// timeout, how long a writer waits for the lock (3 s).
    pub statement: Duration,
}

impl Default for DbTimeouts {
    fn default() -> Self {
        Self {
            acquire: Duration::from_millis(1_100),
            statement: Duration::from_secs(3),
        }
    }
}

/// The store: a pool of connections to one database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects to `url` and brings the schema up to date: `sqlite://path/to/file.db?mode=rwc`
    /// (creates the file), or `postgres://user@host:port/database` (the database must exist;
    /// `?options=-csearch_path%3Dname` puts the tables in a schema of that name).
    ///
    /// # Errors
    ///
    /// If the URL names no driver compiled in, or the database cannot be reached or migrated.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, DbTimeouts::default()).await
    }

    /// As [`open`](Self::open), with these timeouts.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn open_with(url: &str, timeouts: DbTimeouts) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let statement_ms = timeouts.statement.as_millis();
        let pool = match backend {
            Backend::Sqlite => Self::sqlite_pool(url, timeouts).await?,
            // Enough for the concurrent confirmations of a chaos run; PostgreSQL serves each
            // connection with a process, so not many more.
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(timeouts.acquire)
                    .after_connect(move |connection, _| {
                        Box::pin(async move {
                            connection
                                .execute(format!("SET statement_timeout = {statement_ms}").as_str())
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
        };
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(StoreError::Migration)?;
        match backend {
            // The statement timeout is for the service's queries, not for a migration that
            // copies a table: migrate on a connection of its own, without it.
            Backend::Postgres => {
                let plain = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeouts.acquire)
                    .connect(url)
                    .await?;
                let migrated = migrator.run(&plain).await;
                plain.close().await;
                migrated.map_err(StoreError::Migration)?;
            }
            Backend::Sqlite => migrator.run(&pool).await.map_err(StoreError::Migration)?,
        }
        Ok(Self { pool, backend })
    }

    async fn sqlite_pool(url: &str, timeouts: DbTimeouts) -> Result<AnyPool, sqlx::Error> {
        let busy_ms = timeouts.statement.as_millis();
        AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(timeouts.acquire)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    // WAL lets readers go on during a write; NORMAL syncs at checkpoints, not at
                    // every commit (a crash loses no committed transaction, a power cut may
                    // lose the last few); the busy timeout queues writers instead of failing,
                    // for as long as a statement may take.
                    connection
                        .execute(
                            format!(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON;"
                            )
                            .as_str(),
                        )
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database's clock in Unix milliseconds, as SQL: every time the store writes or
    /// compares comes from the one database, never from an instance's clock.
    pub(crate) fn now(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The database's clock, read: Unix milliseconds.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn clock(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(&format!("SELECT {} AS now", self.now()))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("now")?)
    }

    /// Opens (creating it if need be) the SQLite file at `path`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn sqlite_file(path: &Path) -> Result<Self, StoreError> {
        Self::open(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates an order and its payment, `ready`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if the order exists.
    pub async fn create_payment(
        &self,
        order_id: &str,
        name: &str,
        amount: i64,
    ) -> Result<Payment, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO orders (order_id, name, amount, state, created_at, updated_at) \
             VALUES ($1, $2, $3, 'created', {now}, {now})"
        ))
        .bind(order_id)
        .bind(name)
        .bind(amount)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Duplicate {
                    order_id: order_id.to_owned(),
                });
            }
            other => other?,
        };
        sqlx::query(&format!(
            "INSERT INTO payments (payment_id, order_id, amount, state, attempts, created_at, \
             updated_at) VALUES ($1, $2, $3, 'ready', 0, {now}, {now})"
        ))
        .bind(new_payment_id())
        .bind(order_id)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
        let payment = fetch(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Step 1 of a confirmation: checks the amount and moves the payment from `ready` to
    /// `in_progress` under `payment_key`.
    ///
    /// # Errors
    ///
    /// Not found, a wrong amount, or a payment not `ready` (a confirmation under way, or
    /// done).
    pub async fn prepare(
        &self,
        order_id: &str,
        payment_key: &str,
        amount: i64,
    ) -> Result<Payment, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The write comes first: on SQLite a transaction that reads first and writes later
        // cannot wait for another writer (its upgrade fails at once with "database is
        // locked"); one that writes first waits its turn (the busy timeout).
        let moved = sqlx::query(&format!(
            "UPDATE payments SET state = 'in_progress', payment_key = $1, \
             attempts = attempts + 1, updated_at = {now}, prepared_at = {now} \
             WHERE order_id = $2 AND state = 'ready' AND amount = $3",
            now = self.now()
        ))
        .bind(payment_key)
        .bind(order_id)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
        let payment = fetch(&mut tx, order_id).await?;
        if moved.rows_affected() != 1 {
            return Err(if payment.amount != amount {
                StoreError::AmountMismatch {
                    expected: payment.amount,
                    given: amount,
                }
            } else {
                StoreError::WrongState {
                    order_id: order_id.to_owned(),
                    state: payment.state,
                    expected: "ready",
                }
            });
        }
        tx.commit().await?;
        Ok(payment)
    }

    /// Step 3 of a confirmation: records how it ended, from `in_progress`; an approval
    /// marks the order paid in the same transaction.
    ///
    /// # Errors
    ///
    /// Not found, or a payment not `in_progress`.
    pub async fn complete(
        &self,
        order_id: &str,
        completion: Completion,
    ) -> Result<Payment, StoreError> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let (state, method, approve_no, code, message) = match completion {
            Completion::Approved { method, approve_no } => (
                PaymentState::Done,
                Some(method),
                Some(approve_no),
                None,
                None,
            ),
            Completion::Failed { code, message } => {
                (PaymentState::Failed, None, None, Some(code), Some(message))
            }
            Completion::Unknown { detail } => (
                PaymentState::Unknown,
                None,
                None,
                Some("PG_OUTCOME_UNKNOWN".to_owned()),
                Some(detail),
            ),
            Completion::NotCalled => (PaymentState::Ready, None, None, None, None),
        };
        // `ready` (the PG was not called) is not settled: the customer may try again.
        let settled_by = (state != PaymentState::Ready).then_some(Settler::Confirm.as_str());
        let moved = sqlx::query(&format!(
            "UPDATE payments SET state = $1, method = $2, approve_no = $3, fail_code = $4, \
             fail_message = $5, updated_at = {now}, settled_by = $6 \
             WHERE order_id = $7 AND state = 'in_progress'"
        ))
        .bind(state.as_str())
        .bind(method)
        .bind(approve_no)
        .bind(code)
        .bind(message)
        .bind(settled_by)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "in_progress",
        )?;
        if state == PaymentState::Done {
            set_order_state(&mut tx, order_id, "paid", now).await?;
        }
        let payment = fetch(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// The PG told the customer's browser the authorisation failed (the fail callback): the
    /// payment, `ready`, fails with the PG's code and message.
    ///
    /// # Errors
    ///
    /// Not found, or a payment not `ready`.
    pub async fn fail(
        &self,
        order_id: &str,
        code: &str,
        message: &str,
    ) -> Result<Payment, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(&format!(
            "UPDATE payments SET state = 'failed', fail_code = $1, fail_message = $2, \
             updated_at = {} WHERE order_id = $3 AND state = 'ready'",
            self.now()
        ))
        .bind(code)
        .bind(message)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        let payment = moved_from(
            moved.rows_affected(),
            fetch(&mut tx, order_id).await?,
            "ready",
        )?;
        tx.commit().await?;
        Ok(payment)
    }

    /// The payment of `order_id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], or the database's error.
    pub async fn payment(&self, order_id: &str) -> Result<Payment, StoreError> {
        let mut connection = self.pool.acquire().await?;
        fetch(&mut connection, order_id).await
    }

    /// How many payments are in each state (every state listed, zeros included).
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn count_by_state(&self) -> Result<BTreeMap<PaymentState, i64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM payments GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut counts: BTreeMap<PaymentState, i64> =
            PaymentState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in rows {
            let state: String = row.try_get("state")?;
            counts.insert(parse_state(&state)?, row.try_get("n")?);
        }
        Ok(counts)
    }

    /// Whether the database answers: `SELECT 1` on a pooled connection, for a readiness
    /// check. Acquiring a connection may wait (for the pool's acquire timeout): bound the
    /// call with a timeout of the check's own.
    ///
    /// # Errors
    ///
    /// The database's error; the pool's if the store is closed.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The columns of a payment, in [`payment_of`]'s order (a macro, for `concat!`).
macro_rules! payment_columns {
    () => {
        "payment_id, order_id, amount, state, payment_key, method, approve_no, fail_code, \
         fail_message, attempts, settled_by, created_at, updated_at, prepared_at, verified_at"
    };
}

/// The columns of a payment, for `format!`.
const PAYMENT_COLUMNS: &str = payment_columns!();

/// `payment` if the conditional update moved one row, [`StoreError::WrongState`] (the
/// payment is not in the state `expected`) otherwise.
fn moved_from(
    rows_affected: u64,
    payment: Payment,
    expected: &'static str,
) -> Result<Payment, StoreError> {
    if rows_affected == 1 {
        Ok(payment)
    } else {
        Err(StoreError::WrongState {
            order_id: payment.order_id,
            state: payment.state,
            expected,
        })
    }
}

/// Sets the order's state; `now` is the database's clock ([`Store::now`]).
async fn set_order_state(
    connection: &mut sqlx::AnyConnection,
    order_id: &str,
    state: &str,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "UPDATE orders SET state = $1, updated_at = {now} WHERE order_id = $2"
    ))
    .bind(state)
    .bind(order_id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn fetch(
    connection: &mut sqlx::AnyConnection,
    order_id: &str,
) -> Result<Payment, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(&mut *connection)
    .await?;
    match row {
        Some(row) => payment_of(&row),
        None => Err(StoreError::NotFound {
            order_id: order_id.to_owned(),
        }),
    }
}

fn payment_of(row: &AnyRow) -> Result<Payment, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(Payment {
        payment_id: row.try_get("payment_id")?,
        order_id: row.try_get("order_id")?,
        amount: row.try_get("amount")?,
        state: parse_state(&state)?,
        payment_key: row.try_get("payment_key")?,
        method: row.try_get("method")?,
        approve_no: row.try_get("approve_no")?,
        fail_code: row.try_get("fail_code")?,
        fail_message: row.try_get("fail_message")?,
        attempts: row.try_get("attempts")?,
        settled_by: row.try_get("settled_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        prepared_at: row.try_get("prepared_at")?,
        verified_at: row.try_get("verified_at")?,
    })
}

fn parse_state(state: &str) -> Result<PaymentState, StoreError> {
    state
        .parse()
        .map_err(|e: String| StoreError::Database(sqlx::Error::Decode(e.into())))
}

/// `pay_` and 24 hex digits: the time in nanoseconds and a counter, unique in a process and
/// practically unique across processes.
fn new_payment_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("pay_{:016x}{:08x}", nanos as u64, count as u32)
}

/// A SQLite file in the system's temporary directory, named uniquely, removed (with its WAL
/// files) when dropped: the demo's database, and the tests'.
#[derive(Debug)]
pub struct TemporaryFile(std::path::PathBuf);

impl TemporaryFile {
    /// A new name, `PREFIX-PID-NANOS-N.db`; nothing is created until the store opens it.
    pub fn new(prefix: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TemporaryFile(
            std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{n}.db", std::process::id())),
        )
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The migrations in [`MIGRATIONS`], for sqlx's migrator.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}
