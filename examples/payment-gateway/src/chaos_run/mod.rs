//! `payment-gateway chaos`: N confirmations at once against the mock PG, with faults injected
//! by breakwater's chaos layer on both sides of the flow, then the reconciler, then an audit
//! of the database against the PG's ledger.
//!
//! The faults, all drawn from the seed (so a run can be replayed):
//! - **database writes** (the `database` chaos, at `--db-failure-rate`): a write fails before
//!   it is made, whichever it is: the prepare, the completion (after a charge: the seed's
//!   case), the compensation's record of its cancel, the reconciler's settlement;
//! - **the PG client** (the `pg-client` chaos): a `500` the PG never saw; a response lost
//!   after the PG did the work (it charged, or cancelled, and the client hears nothing); a
//!   latency spike before the request leaves, some of them past the read timeout.
//!
//! Every confirmation runs the real flow (prepare, PG call, complete, compensation), through
//! the real breaker, over HTTP on loopback, on a SQLite file or the PostgreSQL database of
//! `--database-url`. Then reconciler passes run until nothing is left unsettled (at most a
//! minute), with the faults still on. The audit passes when every payment's state agrees with
//! the PG and nothing was charged twice.
//!
//! The PG breaker keeps the configuration file's shape with a 20-call window and a 1 s open
//! wait: at these fault rates it rarely opens, and when it does the run goes on a second
//! later instead of thirty.

mod audit;
mod progress;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakwater::Registry;
use breakwater::chaos::{Chaos, ChaosBuilder};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use self::audit::Audit;
use self::progress::Progress;
use crate::confirm::{ConfirmError, PaymentConfirm};
use crate::mock_pg::MockPg;
use crate::pg_client::{PgClient, PgSettings};
use crate::reconcile::{Pass, Reconciler};
use crate::store::{PaymentState, Store, TemporaryFile};
use crate::{DB_CHAOS, PG_BREAKER, PG_CHAOS};

/// A chaos run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosOptions {
    /// Confirmations to run.
    pub payments: usize,
    /// The share of database writes that fail (0 to 1).
    pub db_failure_rate: f64,
    /// The seed of every draw.
    pub seed: u64,
    /// A PostgreSQL (or SQLite) URL; `None`: a temporary SQLite file.
    pub database_url: Option<String>,
    /// The share of PG calls answered `500` without reaching the PG.
    pub pg_failure_rate: f64,
    /// The share of PG calls whose response is lost after the PG did the work.
    pub pg_loss_rate: f64,
    /// The share of PG calls delayed by a latency spike.
    pub latency_rate: f64,
    /// How long a spike lasts, drawn uniformly.
    pub latency: RangeInclusive<Duration>,
    /// The PG client's read timeout.
    pub read_timeout: Duration,
    /// Confirmations in flight at once.
    pub concurrency: usize,
    /// The configuration file's text (the breaker's shape).
    pub config: String,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

impl ChaosOptions {
    /// The defaults of `payment-gateway chaos`: 5% PG 500s, 5% lost responses, 5% latency
    /// spikes of 20 ms to 1.5 s against a 1 s read timeout, 64 confirmations at once.
    pub fn new(payments: usize, db_failure_rate: f64, seed: u64) -> Self {
        Self {
            payments,
            db_failure_rate,
            seed,
            database_url: None,
            pg_failure_rate: 0.05,
            pg_loss_rate: 0.05,
            latency_rate: 0.05,
            latency: Duration::from_millis(20)..=Duration::from_millis(1_500),
            read_timeout: Duration::from_secs(1),
            concurrency: 64,
            config: crate::demo::CONFIG.to_owned(),
            progress: false,
        }
    }

    /// The database chaos these options describe.
    pub fn db_chaos(&self) -> ChaosBuilder {
        Chaos::builder()
            .enabled(true)
            .seed(self.seed)
            .failure_rate(self.db_failure_rate)
    }

    /// The PG client's chaos these options describe (its own stream of the seed).
    pub fn pg_chaos(&self) -> ChaosBuilder {
        Chaos::builder()
            .enabled(true)
            .seed(self.seed ^ 0x9E37_79B9_7F4A_7C15)
            .failure_rate(self.pg_failure_rate)
            .response_loss_rate(self.pg_loss_rate)
            .latency_rate(self.latency_rate)
            .latency(self.latency.clone())
    }
}

/// How a chaos run ended.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The audit.
    pub audit: Audit,
    /// How the confirmations answered, by outcome (`approved`, `compensated`, ...).
    pub outcomes: BTreeMap<&'static str, usize>,
    /// The reconciler's passes, added up.
    pub reconciliation: Pass,
    /// Reconciler passes run.
    pub passes: usize,
    /// Faults injected: database writes, PG calls (counted calls that drew a fault).
    pub faults: (u64, u64),
    /// The database: `SQLite` or `PostgreSQL`.
    pub database: &'static str,
    /// The whole run.
    pub elapsed: Duration,
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos run on {} in {:.1} s: {} database writes and {} PG calls disturbed",
            self.database,
            self.elapsed.as_secs_f64(),
            self.faults.0,
            self.faults.1
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        writeln!(f, "confirmations: {}", outcomes.join(", "))?;
        writeln!(
            f,
            "reconciler: {} passes, {} settled ({} charged, {} cancelled, {} not charged)",
            self.passes,
            self.reconciliation.settled(),
            self.reconciliation.charged,
            self.reconciliation.cancelled,
            self.reconciliation.not_charged
        )?;
        writeln!(f)?;
        self.audit.fmt(f)
    }
}

/// A chaos run could not be carried out (as opposed to finding inconsistencies).
#[derive(Debug)]
pub struct ChaosRunError {
    context: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ChaosRunError {
    fn new(context: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            context: context.to_owned(),
            source: source.into(),
        }
    }
}

impl fmt::Display for ChaosRunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for ChaosRunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The longest the reconciler may take to settle everything.
const RECONCILE_LIMIT: Duration = Duration::from_secs(60);

/// Runs it; see the [module docs](self).
///
/// # Errors
///
/// A setting out of range, or a server or database that cannot start: the run did not happen.
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, ChaosRunError> {
    let start = Instant::now();
    options
        .db_chaos()
        .build()
        .map_err(|e| ChaosRunError::new("--db-failure-rate", e))?;
    options
        .pg_chaos()
        .build()
        .map_err(|e| ChaosRunError::new("the PG chaos", e))?;
    if options.payments == 0 || options.concurrency == 0 {
        return Err(ChaosRunError::new(
            "--payments",
            format!("{} is not allowed: it must be at least 1", options.payments),
        ));
    }

    let pg = MockPg::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| ChaosRunError::new("cannot start the mock PG", e))?;
    let sqlite = TemporaryFile::new("payment-gateway-chaos");
    let url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", sqlite.path().display()));
    let store = Store::open(&url)
        .await
        .map_err(|e| ChaosRunError::new("cannot open the database", e))?;

    let registry = Registry::from_yaml(&options.config)
        .map_err(|e| ChaosRunError::new("cannot load the configuration", e))?
        .with_metrics(true);
    registry
        .reconfigure(PG_BREAKER, |b| {
            b.count_window(20)
                .minimum_calls(20)
                .failure_rate_threshold(50.0)
                .wait_duration_in_open(Duration::from_secs(1))
                .permitted_calls_in_half_open(5)
        })
        .map_err(|e| ChaosRunError::new("cannot configure the PG breaker", e))?;
    let mut settings = PgSettings::new(pg.url());
    settings.read_timeout = options.read_timeout;
    let client = PgClient::new(&registry, settings);
    registry
        .chaos(PG_CHAOS)
        .reconfigure(&options.pg_chaos())
        .map_err(|e| ChaosRunError::new("the PG chaos", e))?;
    registry
        .chaos(DB_CHAOS)
        .reconfigure(&options.db_chaos())
        .map_err(|e| ChaosRunError::new("the database chaos", e))?;
    let db_chaos_handle = registry.chaos(DB_CHAOS);

    // The run's orders, named so that runs sharing a database do not mix.
    let run_id = format!(
        "chaos-{}-{}",
        options.seed,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let orders: Vec<(String, i64)> = (0..options.payments)
        .map(|i| (format!("{run_id}-{i:06}"), 1_000 + (i as i64 % 100) * 100))
        .collect();
    create(&store, &orders, options).await?;

    let confirm =
        PaymentConfirm::new(store.clone(), client.clone()).with_db_chaos(&db_chaos_handle);
    let outcomes = confirm_all(&confirm, &orders, options).await;

    // Every confirmation has ended: no grace needed. Small batches under leases that outlast
    // them (a settlement is written only while its lease runs), short enough that a payment
    // whose settlement failed is claimed again a few passes later.
    let reconciler = Reconciler::new(
        store.clone(),
        client.clone(),
        format!("{run_id}-reconciler"),
    )
    .with_db_chaos(&db_chaos_handle)
    .scope(run_id.clone())
    .grace(Duration::ZERO)
    .lease(Duration::from_secs(5))
    .batch(10);
    let (reconciliation, passes) = reconcile(&reconciler, &store, &run_id).await?;

    let payments: Vec<_> = store
        .payments()
        .await
        .map_err(|e| ChaosRunError::new("cannot read the payments", e))?
        .into_iter()
        .filter(|p| p.order_id.starts_with(&run_id))
        .collect();
    let at_pg = orders
        .iter()
        .filter_map(|(order_id, _)| pg.payment(order_id).map(|p| (order_id.clone(), p)))
        .collect();
    let audit = Audit::of(&payments, &pg.ledger(), &at_pg);
    let faults = (count_faults(&db_chaos_handle), count_faults(client.chaos()));
    pg.stop();
    store.close().await;
    Ok(ChaosReport {
        audit,
        outcomes,
        reconciliation,
        passes,
        faults,
        database: match store.backend() {
            crate::store::Backend::Sqlite => "SQLite",
            crate::store::Backend::Postgres => "PostgreSQL",
        },
        elapsed: start.elapsed(),
    })
}

/// How many of a chaos's counted calls drew a fault.
fn count_faults(chaos: &Chaos) -> u64 {
    (0..chaos.calls())
        .filter(|&n| chaos.plan(n).fault().is_some())
        .count() as u64
}

async fn create(
    store: &Store,
    orders: &[(String, i64)],
    options: &ChaosOptions,
) -> Result<(), ChaosRunError> {
    let mut progress = Progress::new("creating  ", orders.len(), options.progress);
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    for (order_id, amount) in orders.iter().cloned() {
        let (store, gate) = (store.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            store
                .create_payment(&order_id, "chaos hoodie", amount)
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| ChaosRunError::new("an order task failed", e))?
            .map_err(|e| ChaosRunError::new("cannot create an order", e))?;
        progress.advance();
    }
    progress.finish();
    Ok(())
}

async fn confirm_all(
    confirm: &PaymentConfirm,
    orders: &[(String, i64)],
    options: &ChaosOptions,
) -> BTreeMap<&'static str, usize> {
    let mut progress = Progress::new("confirming", orders.len(), options.progress);
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    for (order_id, amount) in orders.iter().cloned() {
        let (confirm, gate) = (confirm.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let key = format!("pk-{order_id}");
            outcome(&confirm.confirm(&order_id, &key, amount).await)
        });
    }
    let mut outcomes = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let outcome = done.unwrap_or("task failed");
        *outcomes.entry(outcome).or_default() += 1;
        progress.advance();
    }
    progress.finish();
    outcomes
}

fn outcome(result: &Result<crate::store::Payment, ConfirmError>) -> &'static str {
    use crate::pg_client::PgError;
    match result {
        Ok(_) => "approved",
        Err(ConfirmError::NotRecorded { compensation, .. }) if compensation.refunded() => {
            "compensated"
        }
        Err(ConfirmError::NotRecorded { .. }) => "left to the reconciler",
        Err(ConfirmError::Store(_)) => "database failed",
        Err(ConfirmError::Pg {
            error: PgError::Unavailable { .. },
            ..
        }) => "breaker open",
        Err(ConfirmError::Pg { error, .. }) if error.outcome_unknown() => "no answer",
        Err(ConfirmError::Pg { .. }) => "PG failed",
    }
}

/// Passes until none of the run's payments is unsettled, or the limit.
async fn reconcile(
    reconciler: &Reconciler,
    store: &Store,
    run_id: &str,
) -> Result<(Pass, usize), ChaosRunError> {
    let deadline = Instant::now() + RECONCILE_LIMIT;
    let mut total = Pass::default();
    let mut passes = 0;
    loop {
        let pass = reconciler
            .run_once()
            .await
            .map_err(|e| ChaosRunError::new("the reconciler cannot claim payments", e))?;
        passes += 1;
        total.add(pass);
        let unsettled = store
            .payments()
            .await
            .map_err(|e| ChaosRunError::new("cannot read the payments", e))?
            .iter()
            .filter(|p| p.order_id.starts_with(run_id))
            .filter(|p| matches!(p.state, PaymentState::InProgress | PaymentState::Unknown))
            .count();
        // What is left is what the database still holds unsettled, not the passes' sum.
        total.left = unsettled;
        if unsettled == 0 || Instant::now() >= deadline {
            return Ok((total, passes));
        }
        // Claims left by failed settlements run out meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
