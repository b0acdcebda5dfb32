//! `payment-gateway chaos`: N confirmations (or N subscriptions' first period) at once against
//! the mock PG, with faults injected on every side of the flow, then the reconciler, then an
//! audit of the database against the PG's ledger.
//!
//! The faults, all drawn from the seed (so a run can be replayed):
//! - **database writes** (the `database` chaos): a write fails before it is made
//!   (`--db-failure-rate`), or commits and is reported failed (`--db-ambiguous-rate`),
//!   whichever it is: the prepare, the completion (after a charge: the seed's case), the
//!   refund's intent and record, the reconciler's settlement, the subscription's save;
//! - **the PG client** (the `pg-client` chaos): a `500` the PG never saw
//!   (`--pg-failure-rate`); a response lost after the PG did the work (`--pg-loss-rate`); a
//!   latency spike before the request leaves, some past the read timeout (`--latency-rate`);
//! - **the PG itself**: it charges (or cancels), then answers `500`, `502` or `504`
//!   (`--pg-500-after-charge-rate`);
//! - **the callers**: the success callback arrives two or three times at once
//!   (`--duplicate-callback-rate`; for subscriptions, two or three schedulers charge the
//!   same due period at once);
//! - **crashes** (`--crash-rate`): a payment's flow stops at a step boundary, as a crashed
//!   process would leave it, and the reconciler must finish it.
//!
//! Every confirmation runs the real flow (the customer's authorisation at the PG, prepare, PG
//! call, complete, compensation), through the real breaker, over HTTP on loopback, on a
//! SQLite file or the PostgreSQL database of `--database-url`. Then reconciler passes run,
//! the faults still on, until nothing is left unsettled and every `done` payment was checked
//! against the PG (at most a minute; the PG's confirm window is a few seconds here, Toss's 10
//! minutes in `serve`). The audit reads the PG's ledger, never the flow's beliefs.
//!
//! `--flow subscription` runs seed 2's experiment: subscriptions charged with a billing key
//! and saved, `--auto-refund on` (the protected flow, then its reconciler) or `off` (the
//! seed's "before": a failed save leaves the customer charged and not subscribed).
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
use crate::billing::{Billing, SubscribeError};
use crate::confirm::{ConfirmError, PaymentConfirm};
use crate::crash::Crashes;
use crate::mock_pg::{MockPg, mix, unit};
use crate::pg_client::{PgClient, PgError, PgSettings};
use crate::reconcile::{Pass, Reconciler};
use crate::store::{PaymentState, Store, TemporaryFile};
use crate::{DB_CHAOS, PG_BREAKER, PG_CHAOS};

/// Which flow a chaos run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    /// Seed 1: payments confirmed through the success callback.
    #[default]
    Confirm,
    /// Seed 2: subscriptions charged with a billing key, then saved.
    Subscription,
}

impl Flow {
    /// Reads `confirm` or `subscription`.
    ///
    /// # Errors
    ///
    /// A message naming the value and what is allowed.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "confirm" => Ok(Flow::Confirm),
            "subscription" => Ok(Flow::Subscription),
            other => Err(format!(
                "--flow {other} is not allowed: it must be confirm or subscription"
            )),
        }
    }
}

/// A chaos run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosOptions {
    /// Which flow.
    pub flow: Flow,
    /// Confirmations (or subscriptions) to run.
    pub payments: usize,
    /// The share of database writes that fail before they are made (0 to 1).
    pub db_failure_rate: f64,
    /// The share of database writes that commit and are reported failed.
    pub db_ambiguous_rate: f64,
    /// The seed of every draw.
    pub seed: u64,
    /// A PostgreSQL (or SQLite) URL; `None`: a temporary SQLite file.
    pub database_url: Option<String>,
    /// The share of PG calls answered `500` without reaching the PG.
    pub pg_failure_rate: f64,
    /// The share of PG calls whose response is lost after the PG did the work.
    pub pg_loss_rate: f64,
    /// The share of the PG's work (confirms, cancels, billing charges) answered 500, 502 or
    /// 504 after it was done.
    pub pg_500_after_charge_rate: f64,
    /// The share of PG calls delayed by a latency spike.
    pub latency_rate: f64,
    /// How long a spike lasts, drawn uniformly.
    pub latency: RangeInclusive<Duration>,
    /// The share of payments whose success callback arrives two or three times at once.
    pub duplicate_callback_rate: f64,
    /// The share of payments whose flow crashes at a step boundary.
    pub crash_rate: f64,
    /// The PG's confirm window.
    pub confirm_window: Duration,
    /// Subscriptions: refund a charge that cannot be saved (the protected flow), or not (the
    /// seed's "before").
    pub auto_refund: bool,
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
    /// spikes of 20 ms to 1.5 s against a 1 s read timeout, no ambiguous commits, no 500s
    /// after the charge, no duplicates, no crashes, a 5 s confirm window, 64 confirmations
    /// at once, auto-refund on.
    pub fn new(payments: usize, db_failure_rate: f64, seed: u64) -> Self {
        Self {
            flow: Flow::Confirm,
            payments,
            db_failure_rate,
            db_ambiguous_rate: 0.0,
            seed,
            database_url: None,
            pg_failure_rate: 0.05,
            pg_loss_rate: 0.05,
            pg_500_after_charge_rate: 0.0,
            latency_rate: 0.05,
            latency: Duration::from_millis(20)..=Duration::from_millis(1_500),
            duplicate_callback_rate: 0.0,
            crash_rate: 0.0,
            confirm_window: Duration::from_secs(5),
            auto_refund: true,
            read_timeout: Duration::from_secs(1),
            concurrency: 64,
            config: crate::demo::CONFIG.to_owned(),
            progress: false,
        }
    }

    /// Every fault at once, at the rates of issue 18's check: 30% failed writes, 10%
    /// ambiguous commits, 10% 500s after the charge, 20% duplicate callbacks, 5% crashes
    /// (and the defaults' PG client faults).
    #[must_use]
    pub fn every_fault(mut self) -> Self {
        self.db_failure_rate = 0.3;
        self.db_ambiguous_rate = 0.1;
        self.pg_500_after_charge_rate = 0.1;
        self.duplicate_callback_rate = 0.2;
        self.crash_rate = 0.05;
        self
    }

    /// The database chaos these options describe.
    pub fn db_chaos(&self) -> ChaosBuilder {
        Chaos::builder()
            .enabled(true)
            .seed(self.seed)
            .failure_rate(self.db_failure_rate)
            .response_loss_rate(self.db_ambiguous_rate)
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

    /// How many times the callback of subject `n` arrives: 1, or 2 or 3 at the duplicate
    /// rate.
    fn copies(&self, n: usize) -> usize {
        let hash = mix(self.seed ^ 0xD0_0B1E, n as u64);
        if unit(hash) < self.duplicate_callback_rate {
            2 + (mix(hash, 2) % 2) as usize
        } else {
            1
        }
    }

    fn check(&self) -> Result<(), ChaosRunError> {
        self.db_chaos()
            .build()
            .map_err(|e| ChaosRunError::new("--db-failure-rate and --db-ambiguous-rate", e))?;
        self.pg_chaos()
            .build()
            .map_err(|e| ChaosRunError::new("the PG chaos", e))?;
        for (flag, rate) in [
            ("--pg-500-after-charge-rate", self.pg_500_after_charge_rate),
            ("--duplicate-callback-rate", self.duplicate_callback_rate),
            ("--crash-rate", self.crash_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ChaosRunError::new(
                    flag,
                    format!("{rate} is not allowed: it must be a fraction from 0 to 1"),
                ));
            }
        }
        if self.payments == 0 || self.concurrency == 0 {
            return Err(ChaosRunError::new(
                "--payments",
                format!("{} is not allowed: it must be at least 1", self.payments),
            ));
        }
        Ok(())
    }
}

/// How a chaos run ended.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The flow run.
    pub flow: Flow,
    /// Subscriptions: whether auto-refund was on.
    pub auto_refund: bool,
    /// The audit.
    pub audit: Audit,
    /// How the confirmations (or charges) answered, by outcome (`approved`, `compensated`,
    /// ...), duplicates counted each.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// The reconciler's passes, added up.
    pub reconciliation: Pass,
    /// Reconciler passes run.
    pub passes: usize,
    /// Faults injected: database writes, PG client calls (counted calls that drew a fault).
    pub faults: (u64, u64),
    /// The database: `SQLite` or `PostgreSQL`.
    pub database: &'static str,
    /// The whole run.
    pub elapsed: Duration,
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.flow, self.auto_refund) {
            (Flow::Confirm, _) => "confirm flow",
            (Flow::Subscription, true) => "subscription flow, auto-refund on",
            (Flow::Subscription, false) => "subscription flow, auto-refund off",
        };
        writeln!(
            f,
            "chaos run ({what}) on {} in {:.1} s: {} database writes and {} PG calls disturbed",
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
        writeln!(f, "outcomes: {}", outcomes.join(", "))?;
        let r = &self.reconciliation;
        writeln!(
            f,
            "reconciler: {} passes, {} settled ({} refunded, {} found cancelled, {} not \
             charged, {} done verified, {} to manual review), {} left",
            self.passes,
            r.settled(),
            r.refunded,
            r.cancelled,
            r.not_charged,
            r.verified,
            r.manual_review,
            r.left
        )?;
        writeln!(f)?;
        self.audit.fmt(f)
    }
}

/// Prints two subscription runs side by side, off then on: see
/// `payment-gateway chaos --compare`.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Auto-refund off.
    pub off: ChaosReport,
    /// Auto-refund on.
    pub on: ChaosReport,
}

impl Comparison {
    /// Whether it shows what it must: damage with auto-refund off, none with it on.
    pub fn holds(&self) -> bool {
        self.off.audit.charged_not_done_not_refunded > 0 && self.on.audit.is_consistent()
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "subscription chaos on {}, the same seed and faults, auto-refund off against on:",
            self.on.database
        )?;
        writeln!(f)?;
        writeln!(f, "| | auto-refund off | auto-refund on |")?;
        writeln!(f, "|---|---:|---:|")?;
        for ((label, off), (_, on)) in self.off.audit.rows().into_iter().zip(self.on.audit.rows()) {
            writeln!(f, "| {label} | {off} | {on} |")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "off: {} customers charged and not subscribed; on: {} inconsistent",
            self.off.audit.charged_not_done_not_refunded, self.on.audit.inconsistent
        )
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

/// How long the subscription round's claim holds: the whole round.
const ROUND_LEASE: Duration = Duration::from_secs(120);

/// How many times a customer tries again after the open breaker turned them away.
const BREAKER_RETRIES: usize = 30;

/// The longest the reconciler may take to settle everything.
const RECONCILE_LIMIT: Duration = Duration::from_secs(60);

/// What a run sets up: the PG, the database, the breaker and the chaos.
struct Rig {
    pg: MockPg,
    store: Store,
    client: PgClient,
    db_chaos: Chaos,
    run_id: String,
    _sqlite: TemporaryFile,
}

async fn rig(options: &ChaosOptions) -> Result<Rig, ChaosRunError> {
    options.check()?;
    let pg = MockPg::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| ChaosRunError::new("cannot start the mock PG", e))?;
    pg.set_confirm_window(options.confirm_window);
    pg.set_error_after_work(options.pg_500_after_charge_rate, options.seed ^ 0x5_00)
        .map_err(|e| ChaosRunError::new("the mock PG", e))?;
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
    // The run's subjects, named so that runs sharing a database do not mix.
    let run_id = format!(
        "chaos-{}-{}",
        options.seed,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    Ok(Rig {
        pg,
        store,
        client,
        db_chaos: registry.chaos(DB_CHAOS),
        run_id,
        _sqlite: sqlite,
    })
}

impl Rig {
    async fn finish(
        self,
        options: &ChaosOptions,
        audit: Audit,
        outcomes: BTreeMap<&'static str, usize>,
        (reconciliation, passes): (Pass, usize),
        start: Instant,
    ) -> ChaosReport {
        let faults = (
            count_faults(&self.db_chaos),
            count_faults(self.client.chaos()),
        );
        self.pg.stop();
        self.store.close().await;
        ChaosReport {
            flow: options.flow,
            auto_refund: options.auto_refund,
            audit,
            outcomes,
            reconciliation,
            passes,
            faults,
            database: match self.store.backend() {
                crate::store::Backend::Sqlite => "SQLite",
                crate::store::Backend::Postgres => "PostgreSQL",
            },
            elapsed: start.elapsed(),
        }
    }
}

/// Runs it; see the [module docs](self).
///
/// # Errors
///
/// A setting out of range, or a server or database that cannot start: the run did not happen.
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, ChaosRunError> {
    match options.flow {
        Flow::Confirm => run_confirm(options).await,
        Flow::Subscription => run_subscription(options).await,
    }
}

/// Runs the subscription flow with auto-refund off, then on, with the same seed.
///
/// # Errors
///
/// As [`run`].
pub async fn compare(options: &ChaosOptions) -> Result<Comparison, ChaosRunError> {
    let mut options = options.clone();
    options.flow = Flow::Subscription;
    options.auto_refund = false;
    let off = run(&options).await?;
    options.auto_refund = true;
    let on = run(&options).await?;
    Ok(Comparison { off, on })
}

async fn run_confirm(options: &ChaosOptions) -> Result<ChaosReport, ChaosRunError> {
    let start = Instant::now();
    let rig = rig(options).await?;
    let orders: Vec<(String, i64)> = (0..options.payments)
        .map(|i| {
            (
                format!("{}-{i:06}", rig.run_id),
                1_000 + (i as i64 % 100) * 100,
            )
        })
        .collect();
    create(&rig.store, &orders, options).await?;

    let crashes = Crashes::new(options.crash_rate, options.seed)
        .map_err(|e| ChaosRunError::new("--crash-rate", e))?
        .skipping(rig.run_id.len());
    let confirm = PaymentConfirm::new(rig.store.clone(), rig.client.clone())
        .with_db_chaos(&rig.db_chaos)
        .with_crashes(crashes);
    let outcomes = confirm_all(&rig.pg, &confirm, &orders, options).await?;

    // Every confirmation has ended: no grace needed. Batches settled at once under leases
    // that outlast them (a settlement is written only while its lease runs), short enough
    // that a payment whose settlement failed is claimed again a few passes later.
    let reconciler = Reconciler::new(
        rig.store.clone(),
        rig.client.clone(),
        format!("{}-reconciler", rig.run_id),
    )
    .with_db_chaos(&rig.db_chaos)
    .scope(rig.run_id.clone())
    .grace(Duration::ZERO)
    .lease(Duration::from_secs(5))
    // One at a time when the confirmations ran one at a time: a replay draws the same faults.
    .batch(if options.concurrency == 1 { 1 } else { 200 })
    .confirm_window(options.confirm_window);
    let reconciled = reconcile(&reconciler, &rig.store, &rig.run_id).await?;

    let payments: Vec<_> = rig
        .store
        .payments()
        .await
        .map_err(|e| ChaosRunError::new("cannot read the payments", e))?
        .into_iter()
        .filter(|p| p.order_id.starts_with(&rig.run_id))
        .collect();
    let audit = Audit::of_payments(&payments, &rig.pg.ledger(), &rig.run_id);
    Ok(rig
        .finish(options, audit, outcomes, reconciled, start)
        .await)
}

async fn run_subscription(options: &ChaosOptions) -> Result<ChaosReport, ChaosRunError> {
    let start = Instant::now();
    let rig = rig(options).await?;
    let crashes = Crashes::new(options.crash_rate, options.seed)
        .map_err(|e| ChaosRunError::new("--crash-rate", e))?
        .skipping(rig.run_id.len());
    // Subscribing is not under test: no chaos on it (the PG client's chaos is on, so a
    // registration that fails is retried).
    let plain = Billing::new(rig.store.clone(), rig.client.clone(), "subscribe");
    let mut progress = Progress::new("subscribing", options.payments, options.progress);
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let mut subscribing = JoinSet::new();
    for i in 0..options.payments {
        let id = format!("{}-s{i:06}", rig.run_id);
        let amount = 9_900 + (i as i64 % 10) * 1_000;
        let (billing, gate) = (plain.clone(), gate.clone());
        subscribing.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut tries = 0;
            loop {
                tries += 1;
                let subscribed = billing
                    .subscribe(
                        &id,
                        &format!("customer-{i}"),
                        &format!("{id}-auth"),
                        "monthly plan",
                        amount,
                        Duration::from_secs(30 * 24 * 3600),
                    )
                    .await;
                match subscribed {
                    Ok(_) => return Ok(()),
                    Err(error) if tries >= 50 => return Err(error),
                    Err(SubscribeError::Pg(PgError::Unavailable {
                        retry_after: Some(wait),
                    })) => tokio::time::sleep(wait).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    while let Some(done) = subscribing.join_next().await {
        done.map_err(|e| ChaosRunError::new("a subscribing task failed", e))?
            .map_err(|e| ChaosRunError::new("cannot subscribe", e))?;
        progress.advance();
    }
    progress.finish();

    // The scheduler claims the due subscriptions, a batch at a time, and charges each period;
    // for the drawn subscriptions two or three charges of the period start at once (as two
    // schedulers sharing a claim would).
    let billing = |name: String| {
        Billing::new(rig.store.clone(), rig.client.clone(), name)
            .with_db_chaos(&rig.db_chaos)
            .with_auto_refund(options.auto_refund)
            .with_crashes(crashes)
            .scope(rig.run_id.clone())
            .lease(Duration::from_secs(5))
            .grace(Duration::ZERO)
            .batch(u32::try_from(options.concurrency).unwrap_or(u32::MAX))
    };
    // One round, as a scheduler's tick: every due subscription claimed once, for the round.
    let scheduler = billing(format!("{}-scheduler", rig.run_id));
    let due = rig
        .store
        .claim_due_subscriptions(
            &format!("{}-scheduler", rig.run_id),
            &rig.run_id,
            ROUND_LEASE,
            u32::try_from(options.payments).unwrap_or(u32::MAX),
        )
        .await
        .map_err(|e| ChaosRunError::new("the scheduler cannot claim", e))?;
    let copies: usize = (0..options.payments).map(|n| options.copies(n)).sum();
    let mut progress = Progress::new("charging  ", copies, options.progress);
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let mut charging = JoinSet::new();
    for subscription in due {
        let n = subscription
            .subscription_id
            .rsplit("-s")
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        for _ in 0..options.copies(n) {
            let (scheduler, subscription) = (scheduler.clone(), subscription.clone());
            let gate = gate.clone();
            charging.spawn(async move {
                let _permit = gate.acquire_owned().await;
                scheduler.charge_period(&subscription).await
            });
        }
    }
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    while let Some(done) = charging.join_next().await {
        let outcome = done.map_err(|e| ChaosRunError::new("a charge task failed", e))?;
        *outcomes.entry(outcome.as_str()).or_default() += 1;
        progress.advance();
    }
    progress.finish();

    let mut total = Pass::default();
    let mut passes = 0;
    if options.auto_refund {
        let reconciler = billing(format!("{}-reconciler", rig.run_id));
        let deadline = Instant::now() + RECONCILE_LIMIT;
        loop {
            let pass = reconciler
                .reconcile_once()
                .await
                .map_err(|e| ChaosRunError::new("the reconciler cannot claim", e))?;
            passes += 1;
            total.add(pass);
            let open = rig
                .store
                .subscription_charges(&rig.run_id)
                .await
                .map_err(|e| ChaosRunError::new("cannot read the charges", e))?
                .iter()
                .filter(|c| {
                    matches!(
                        c.state,
                        crate::store::ChargeState::Charging
                            | crate::store::ChargeState::RefundPending
                    )
                })
                .count();
            total.left = open;
            if open == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let subscriptions = rig
        .store
        .subscriptions(&rig.run_id)
        .await
        .map_err(|e| ChaosRunError::new("cannot read the subscriptions", e))?;
    let charges = rig
        .store
        .subscription_charges(&rig.run_id)
        .await
        .map_err(|e| ChaosRunError::new("cannot read the charges", e))?;
    let audit = Audit::of_subscriptions(&subscriptions, &charges, &rig.pg.ledger(), 1);
    Ok(rig
        .finish(options, audit, outcomes, (total, passes), start)
        .await)
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
    pg: &MockPg,
    confirm: &PaymentConfirm,
    orders: &[(String, i64)],
    options: &ChaosOptions,
) -> Result<BTreeMap<&'static str, usize>, ChaosRunError> {
    let mut progress = Progress::new("confirming", orders.len(), options.progress);
    let gate = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    let mut outcomes = BTreeMap::new();
    for (n, (order_id, amount)) in orders.iter().cloned().enumerate() {
        let (confirm, gate) = (confirm.clone(), gate.clone());
        let checkout = pg.checkout();
        let copies = options.copies(n);
        // One at a time: in order, so that a replay draws the same faults for each payment.
        if options.concurrency == 1 {
            if let Some(done) = tasks.join_next().await {
                for outcome in done.unwrap_or_else(|_| vec!["task failed"]) {
                    *outcomes.entry(outcome).or_default() += 1;
                }
                progress.advance();
            }
        }
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            // The customer authorises at the checkout (not under test): the PG issues the
            // key, and the confirm window starts.
            let key = match checkout.authorize(&order_id, amount) {
                Ok(payment) => payment.payment_key,
                Err(_) => return vec!["checkout failed"],
            };
            let mut callbacks = JoinSet::new();
            for _ in 0..copies {
                let (confirm, order_id, key) = (confirm.clone(), order_id.clone(), key.clone());
                callbacks.spawn(async move {
                    // A customer turned away by the open breaker tries again when it says
                    // (a bounded number of times), as the checkout page would.
                    for _ in 0..BREAKER_RETRIES {
                        match confirm.confirm(&order_id, &key, amount).await {
                            Err(ConfirmError::Pg {
                                error: PgError::Unavailable { retry_after },
                                ..
                            }) => {
                                tokio::time::sleep(
                                    retry_after.unwrap_or(Duration::from_millis(100)),
                                )
                                .await;
                            }
                            result => return outcome(&result),
                        }
                    }
                    "breaker open"
                });
            }
            let mut outcomes = Vec::with_capacity(copies);
            while let Some(done) = callbacks.join_next().await {
                outcomes.push(done.unwrap_or("task failed"));
            }
            outcomes
        });
    }
    while let Some(done) = tasks.join_next().await {
        for outcome in done.unwrap_or_else(|_| vec!["task failed"]) {
            *outcomes.entry(outcome).or_default() += 1;
        }
        progress.advance();
    }
    progress.finish();
    Ok(outcomes)
}

fn outcome(result: &Result<crate::store::Payment, ConfirmError>) -> &'static str {
    use crate::store::StoreError;
    match result {
        Ok(_) => "approved",
        Err(ConfirmError::NotRecorded { compensation, .. }) if compensation.refunded() => {
            "compensated"
        }
        Err(ConfirmError::NotRecorded { .. }) => "refund left to the reconciler",
        Err(ConfirmError::Store(StoreError::WrongState {
            state: PaymentState::InProgress | PaymentState::Unknown | PaymentState::CancelPending,
            ..
        })) => "duplicate refused (in progress)",
        Err(ConfirmError::Store(StoreError::Injected(_) | StoreError::Ambiguous(_))) => {
            "database fault"
        }
        Err(ConfirmError::Store(StoreError::Database(_))) => "database error",
        Err(ConfirmError::Store(_)) => "refused by the store",
        Err(ConfirmError::Crashed { .. }) => "crashed",
        Err(ConfirmError::Deadline { .. }) => "past its deadline",
        Err(ConfirmError::Pg {
            error: PgError::Unavailable { .. },
            ..
        }) => "breaker open",
        Err(ConfirmError::Pg { error, .. }) if error.outcome_unknown() => "outcome unknown",
        Err(ConfirmError::Pg { .. }) => "PG refused",
    }
}

/// Passes until none of the run's payments is unsettled and every `done` one is verified,
/// or the limit.
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
        let waiting = store
            .payments()
            .await
            .map_err(|e| ChaosRunError::new("cannot read the payments", e))?
            .iter()
            .filter(|p| p.order_id.starts_with(run_id))
            .filter(|p| {
                matches!(
                    p.state,
                    PaymentState::InProgress | PaymentState::Unknown | PaymentState::CancelPending
                ) || (p.state == PaymentState::Done && p.verified_at.is_none())
            })
            .count();
        // What is left is what the database still holds unsettled, not the passes' sum.
        total.left = waiting;
        if waiting == 0 || Instant::now() >= deadline {
            return Ok((total, passes));
        }
        // Claims left by failed settlements run out meanwhile, and confirm windows pass.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
