//! The demo: the mock PG and the service on loopback, a temporary SQLite file, and a
//! customer driving confirmations through a PG outage, phase by phase:
//!
//! 1. **healthy**: confirmations are charged; two are over the card's limit and the PG
//!    rejects them (4xx), which the breaker ignores.
//! 2. **PG answers 500**: the breaker opens once its window of 10 calls is half failures.
//! 3. **open**: confirmations fail fast (`503`), the PG sees none of them.
//! 4. **PG hangs, breaker open**: still fast; the hanging PG costs nothing.
//! 5. **PG recovers**: the breaker waits out its open state (30 s), failing fast.
//! 6. **half-open**: probes reach the PG, succeed, and close the breaker.
//! 7. **closed**: healthy again.
//! 8. **PG hangs, breaker closed**: each confirmation waits out the 3 s read timeout until
//!    the timeouts open the breaker; from then on they fail fast again. This is the seed's
//!    headline, measured: p99 while still closed (≈ 3 s) next to p99 once open.
//!
//! Phase 8 comes after the recovery so that one run shows both latencies with the PG
//! hanging, and still finishes in well under a minute: a second recovery would add another
//! 30 s open wait. The run prints a timeline (phases, outcomes, PG hits, p50/p99, log lines,
//! state transitions), checks the PG's ledger against the database, and writes an SVG chart.

mod axis;
pub(crate) mod chart;
pub(crate) mod driver;
mod report;

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::{CircuitBreaker, CircuitState, Registry};

pub use report::{Headline, Outcome, PhaseReport, Transition};

use self::driver::{Driver, DriverError, Sample};
use self::report::Millis;
use crate::mock_pg::{CARD_LIMIT, EntryKind, Fault, MockPg};
use crate::pg_client::PgSettings;
use crate::store::{PaymentState, Store, TemporaryFile};
use crate::telemetry::{self, LogCounts};
use crate::{App, PG_BREAKER};

/// The configuration file shipped with the example, built in.
pub const CONFIG: &str = include_str!("../../config/application.yml");

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The configuration file's text (YAML); [`CONFIG`] by default.
    pub config: String,
    /// The PG client's read timeout; the seed's 3 s by default.
    pub read_timeout: Duration,
    /// Where to write the chart; `payment-gateway-demo.svg` in the system's temporary
    /// directory by default.
    pub chart: PathBuf,
    /// Confirmations in each fast-failure phase (3, 4 and the end of 8); 100 by default.
    pub fast_calls: usize,
    /// Confirmations sent at once when the PG hangs with the breaker closed; 10 by default.
    pub hanging_calls: usize,
    /// How often a confirmation is tried while the breaker waits out its open state; every
    /// 500 ms by default.
    pub retry_every: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            config: CONFIG.to_owned(),
            read_timeout: Duration::from_secs(3),
            chart: std::env::temp_dir().join("payment-gateway-demo.svg"),
            fast_calls: 100,
            hanging_calls: 10,
            retry_every: Duration::from_millis(500),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Each phase, in order.
    pub phases: Vec<PhaseReport>,
    /// The breaker's state transitions, in order.
    pub transitions: Vec<Transition>,
    /// The seed's headline.
    pub headline: Headline,
    /// Payments charged at the PG and not cancelled, by its ledger.
    pub pg_charged: usize,
    /// Payments `done` in the database.
    pub db_done: i64,
    /// Payments in the database, by state.
    pub db_states: Vec<(PaymentState, i64)>,
    /// Where the chart is.
    pub chart: PathBuf,
    /// How long the run took.
    pub took: Duration,
}

/// Why the demo stopped.
#[derive(Debug)]
pub struct DemoError(String);

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DemoError {}

impl DemoError {
    fn new(what: &str, error: impl fmt::Display) -> Self {
        DemoError(format!("{what}: {error}"))
    }
}

/// Runs the demo, printing its timeline to `out`.
///
/// # Errors
///
/// If a server cannot start, the configuration does not load, the database fails, or the
/// service answers something it never should.
pub async fn run(options: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    let start = Instant::now();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let pg = MockPg::start_on(loopback)
        .await
        .map_err(|e| DemoError::new("cannot start the mock PG", e))?;
    let database = TemporaryFile::new("payment-gateway-demo");
    let store = Store::sqlite_file(database.path())
        .await
        .map_err(|e| DemoError::new("cannot open the database", e))?;
    let registry = Registry::from_yaml(&options.config)
        .map_err(|e| DemoError::new("cannot load the configuration", e))?
        .with_metrics(true);
    let mut settings = PgSettings::new(pg.url());
    settings.read_timeout = options.read_timeout;
    let app = App::start(loopback, registry.clone(), store.clone(), settings)
        .await
        .map_err(|e| DemoError::new("cannot start the service", e))?;
    let breaker = registry.circuit_breaker(PG_BREAKER);
    let transitions = record_transitions(&breaker, start);

    let _ = writeln!(out, "breakwater payment-gateway demo");
    let _ = writeln!(out, "  mock PG       {}", pg.url());
    let _ = writeln!(out, "  service       {}", app.url());
    let _ = writeln!(
        out,
        "  database      {} (SQLite)",
        database.path().display()
    );
    let _ = writeln!(
        out,
        "  breaker       {PG_BREAKER}, {}",
        if options.config == CONFIG {
            "from config/application.yml: the last 10 calls, open at 50% failures, 30 s open, \
             5 probes"
        } else {
            "from the configuration given"
        }
    );
    let _ = writeln!(
        out,
        "  PG client     read timeout {}, connect timeout 3 s",
        Millis(options.read_timeout)
    );
    let _ = writeln!(out);

    let mut demo = Demo {
        driver: Driver::new(app.url(), start),
        samples: Vec::new(),
        phases: Vec::new(),
        pg: &pg,
        breaker: &breaker,
        start,
        out,
    };
    demo.header();
    let amount = 25_000;

    // 1. Healthy; two confirmations over the card's limit are rejected, and ignored.
    demo.phase("healthy (2 over the card limit: 4xx)", async |d| {
        for i in 0..10 {
            let amount = if i == 3 || i == 7 {
                CARD_LIMIT + 1
            } else {
                amount
            };
            d.confirm_new(amount).await?;
        }
        Ok(())
    })
    .await?;

    // 2. 500s until the breaker opens.
    pg.set_fault(Fault::ServerError);
    demo.phase("PG answers 500", async |d| {
        for _ in 0..20 {
            d.confirm_new(amount).await?;
            if d.breaker.state() == CircuitState::Open {
                break;
            }
        }
        Ok(())
    })
    .await?;

    // 3. Open: fast failures.
    let fast = options.fast_calls;
    demo.phase("open: fast failures", async |d| {
        for _ in 0..fast {
            d.confirm_new(amount).await?;
        }
        Ok(())
    })
    .await?;

    // 4. The PG hangs; the open breaker keeps confirmations off it.
    pg.set_fault(Fault::Hang);
    demo.phase("PG hangs, breaker open", async |d| {
        for _ in 0..fast {
            d.confirm_new(amount).await?;
        }
        Ok(())
    })
    .await?;
    let p99_open_early = demo.phases.last().map_or(Duration::ZERO, |p| p.p99);

    // 5. The PG recovers; the breaker waits out its open state.
    pg.set_fault(Fault::None);
    let every = options.retry_every;
    demo.phase("PG recovers, breaker waits", async |d| {
        loop {
            let wait = d.breaker.metrics().retry_after.unwrap_or(Duration::ZERO);
            if d.breaker.state() != CircuitState::Open || wait.is_zero() {
                return Ok(());
            }
            // Close to the end of the wait, a confirmation would race the breaker and might
            // be let through as the first probe: sleep the rest out (phase 6 sends the probes).
            if wait < every * 2 {
                tokio::time::sleep(wait).await;
                return Ok(());
            }
            d.confirm_new(amount).await?;
            tokio::time::sleep(every).await;
        }
    })
    .await?;

    // 6. Half-open: probes until the breaker closes.
    demo.phase("half-open probes", async |d| {
        for _ in 0..20 {
            d.confirm_new(amount).await?;
            if d.breaker.state() == CircuitState::Closed {
                break;
            }
        }
        Ok(())
    })
    .await?;

    // 7. Closed again.
    demo.phase("closed", async |d| {
        for _ in 0..10 {
            d.confirm_new(amount).await?;
        }
        Ok(())
    })
    .await?;

    // 8. The PG hangs with the breaker closed: the read timeout, then the breaker.
    pg.set_fault(Fault::Hang);
    let hanging = options.hanging_calls;
    let mut closed_latencies = Vec::new();
    let mut open_latencies = Vec::new();
    demo.phase("PG hangs, breaker closed", async |d| {
        let mut orders = Vec::new();
        for _ in 0..hanging {
            orders.push(d.driver.create(amount).await.map_err(driver_error)?);
        }
        let mut calls = Vec::new();
        for order in orders {
            let driver = d.driver.clone();
            calls.push(tokio::spawn(
                async move { driver.confirm(&order, amount).await },
            ));
        }
        for call in calls {
            let sample = call
                .await
                .map_err(|e| DemoError::new("a confirmation task failed", e))?
                .map_err(driver_error)?;
            closed_latencies.push(sample.latency);
            d.samples.push(sample);
        }
        for _ in 0..fast {
            let sample = d.confirm_new(amount).await?;
            open_latencies.push(sample.latency);
        }
        Ok(())
    })
    .await?;
    pg.set_fault(Fault::None);

    closed_latencies.sort_unstable();
    open_latencies.sort_unstable();
    let headline = Headline {
        read_timeout: options.read_timeout,
        p99_closed: report::percentile(&closed_latencies, 99.0),
        p99_open: report::percentile(&open_latencies, 99.0),
    };
    let took = start.elapsed();
    let Demo {
        samples,
        phases,
        out,
        ..
    } = demo;

    let transitions = transitions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let _ = writeln!(out);
    let _ = writeln!(out, "state transitions of {PG_BREAKER}");
    for t in &transitions {
        let _ = writeln!(
            out,
            "  {:>7.3} s  {:>9} -> {:<9}  {}",
            t.at.as_secs_f64(),
            t.from.as_str(),
            t.to.as_str(),
            t.cause
        );
    }

    // The PG's books against ours.
    let ledger = pg.ledger();
    let charges = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .count();
    let cancels = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Cancel)
        .count();
    let counts = store
        .count_by_state()
        .await
        .map_err(|e| DemoError::new("cannot count payments", e))?;
    let db_done = counts.get(&PaymentState::Done).copied().unwrap_or(0);
    let pg_charged = charges - cancels;
    let _ = writeln!(out);
    let states: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let _ = writeln!(out, "payments in the database: {}", states.join(", "));
    let _ = writeln!(
        out,
        "the PG charged {pg_charged}; the database has {db_done} done: {}",
        if i64::try_from(pg_charged).ok() == Some(db_done) {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "headline: with the PG hanging behind a {} read timeout, confirmation p99 is {} while \
         the breaker is still closed and {} once it is open (phase 4: {})",
        Millis(headline.read_timeout),
        Millis(headline.p99_closed),
        Millis(headline.p99_open),
        Millis(p99_open_early)
    );

    let svg = chart::render(&samples, &transitions, &phases, took);
    std::fs::write(&options.chart, svg).map_err(|e| {
        DemoError::new(
            &format!("cannot write the chart to {}", options.chart.display()),
            e,
        )
    })?;
    let _ = writeln!(out, "chart: {}", options.chart.display());
    let _ = writeln!(out, "finished in {:.1} s", took.as_secs_f64());

    drop(app);
    store.close().await;
    Ok(DemoReport {
        phases,
        transitions,
        headline,
        pg_charged,
        db_done,
        db_states: counts.into_iter().collect(),
        chart: options.chart.clone(),
        took,
    })
}

fn driver_error(e: DriverError) -> DemoError {
    DemoError::new("the service answered what it never should", e)
}

/// Keeps every state transition of `breaker`, timed from `start`.
fn record_transitions(breaker: &CircuitBreaker, start: Instant) -> Arc<Mutex<Vec<Transition>>> {
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&transitions);
    breaker.on_state_transition(move |event| {
        if let EventKind::StateTransition { from, to, cause } = event.kind() {
            let cause = match cause {
                TransitionCause::FailureRate(rate) => format!("failure rate {rate:.0}%"),
                TransitionCause::SlowCallRate(rate) => format!("slow-call rate {rate:.0}%"),
                TransitionCause::WaitElapsed => "open wait elapsed".to_owned(),
                TransitionCause::ProbesSucceeded => "probes succeeded".to_owned(),
                other => format!("{other:?}"),
            };
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Transition {
                    at: event.at().saturating_duration_since(start),
                    from: *from,
                    to: *to,
                    cause,
                });
        }
    });
    transitions
}

/// A run in progress.
struct Demo<'a> {
    driver: Driver,
    samples: Vec<Sample>,
    phases: Vec<PhaseReport>,
    pg: &'a MockPg,
    breaker: &'a CircuitBreaker,
    start: Instant,
    out: &'a mut dyn Write,
}

impl Demo<'_> {
    /// Creates an order of `amount` and confirms it.
    async fn confirm_new(&mut self, amount: i64) -> Result<Sample, DemoError> {
        let order = self.driver.create(amount).await.map_err(driver_error)?;
        let sample = self
            .driver
            .confirm(&order, amount)
            .await
            .map_err(driver_error)?;
        self.samples.push(sample);
        Ok(sample)
    }

    fn header(&mut self) {
        let _ = writeln!(
            self.out,
            "{:<40} {:>7} {:>5} {:>5} {:>4} {:>4} {:>5} {:>7} {:>9} {:>9} {:>9}  breaker",
            "phase",
            "t (s)",
            "calls",
            "ok",
            "4xx",
            "fail",
            "open",
            "PG hits",
            "p50",
            "p99",
            "warn/err"
        );
    }

    /// Runs one phase and prints its line.
    async fn phase(
        &mut self,
        name: &'static str,
        body: impl AsyncFnOnce(&mut Self) -> Result<(), DemoError>,
    ) -> Result<(), DemoError> {
        let started = self.start.elapsed();
        let first = self.samples.len();
        let hits = self.pg.hits();
        let logs = telemetry::log_counts();
        body(self).await?;
        let number = self.phases.len() + 1;
        let phase = PhaseReport::of(
            number,
            name,
            (started, self.start.elapsed() - started),
            &self.samples[first..],
            self.pg.hits() - hits,
            telemetry::log_counts().since(logs),
            self.breaker.state(),
        );
        let LogCounts { warnings, errors } = phase.logs;
        let _ = writeln!(
            self.out,
            "{:<40} {:>7.2} {:>5} {:>5} {:>4} {:>4} {:>5} {:>7} {:>9} {:>9} {:>9}  {}",
            format!("{number}. {name}"),
            started.as_secs_f64(),
            phase.calls,
            phase.approved,
            phase.rejected,
            phase.failed,
            phase.unavailable,
            phase.pg_hits,
            Millis(phase.p50),
            Millis(phase.p99),
            format!("{warnings}/{errors}"),
            phase.state_after
        );
        self.phases.push(phase);
        Ok(())
    }
}
