//! `payment-gateway fleet`: several instances of the service (three by default), each a real
//! [`Server`] on its own loopback port with its own PG breaker, sharing
//! one SQLite database, one mock PG and (fleet on) one Redis, behind a round-robin client.
//! The run drives a PG outage and its recovery twice, the fleet off and on, and prints side by
//! side:
//!
//! - **PG calls after the outage began, until every instance stopped calling**: the requests
//!   the PG received from the first 500 until every instance's breaker was open;
//! - **time until every instance was open**, from the first 500;
//! - **probes the PG received at recovery**: the calls the instances let through while
//!   half-open (one instance probing for the fleet, or every instance for itself).
//!
//! The breakers are the file's (`config/application.yml`: the last 10 calls, open at 50%
//! failures, 5 probes), with the open wait shortened from 30 s to 5 s so a run takes
//! seconds. It writes a chart like the demo's, one lane per instance and run.

mod chart;
mod redis;

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::{CircuitBreaker, CircuitState};

pub use self::redis::LocalRedis;
use crate::PG_BREAKER;
use crate::demo::driver::Driver;
use crate::demo::{CONFIG, Outcome};
use crate::mock_pg::{Fault, MockPg};
use crate::serve::{FleetOptions, ServeOptions, Server};
use crate::store::TemporaryFile;

/// How to run it.
#[derive(Debug, Clone)]
pub struct FleetRunOptions {
    /// Service instances (at least 2).
    pub instances: usize,
    /// The Redis server; `None` starts a `redis-server` of its own on loopback.
    pub redis_url: Option<String>,
    /// The fleet's heartbeat.
    pub heartbeat: Duration,
    /// The fleet's quorum.
    pub quorum: u32,
    /// The breakers' open wait (the file's 30 s is shortened to this).
    pub wait: Duration,
    /// The time between two confirmations of the client.
    pub every: Duration,
    /// The client's weights, one per instance (weighted round robin, as a load balancer's);
    /// empty: even round robin.
    pub weights: Vec<u32>,
    /// Where to write the chart.
    pub chart: PathBuf,
}

impl Default for FleetRunOptions {
    fn default() -> Self {
        Self {
            instances: 3,
            redis_url: None,
            heartbeat: Duration::from_millis(200),
            quorum: 2,
            wait: Duration::from_secs(5),
            every: Duration::from_millis(20),
            weights: Vec::new(),
            chart: std::env::temp_dir().join("payment-gateway-fleet.svg"),
        }
    }
}

/// One instance's breaker during a run: when it changed state, and the calls it let through
/// while half-open.
#[derive(Debug, Clone, Default)]
pub struct Lane {
    /// The instance's id.
    pub instance: String,
    /// Each transition: since the run began, the state entered, why.
    pub transitions: Vec<(Duration, CircuitState, String)>,
    /// Calls recorded while half-open: the probes.
    pub probes: usize,
    /// Each confirmation this instance answered: since the run began, and its outcome.
    pub calls: Vec<(Duration, Outcome)>,
}

/// One run (fleet off or on).
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Whether the instances shared a fleet.
    pub fleet: bool,
    /// When the PG began answering 500, since the run began.
    pub outage: Duration,
    /// When every instance was open, if they all were.
    pub all_open: Option<Duration>,
    /// The PG's requests from the outage until every instance was open.
    pub calls_until_all_open: u64,
    /// When the PG recovered.
    pub recovery: Duration,
    /// When every instance was closed again, if they all were.
    pub all_closed: Option<Duration>,
    /// How long the run lasted.
    pub total: Duration,
    /// One per instance.
    pub lanes: Vec<Lane>,
}

impl RunReport {
    /// The probes the PG received at recovery, all instances together.
    pub fn probes(&self) -> usize {
        self.lanes.iter().map(|l| l.probes).sum()
    }

    /// How long from the outage until every instance was open.
    pub fn time_to_open(&self) -> Option<Duration> {
        self.all_open.map(|t| t.saturating_sub(self.outage))
    }
}

/// Both runs.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// The fleet off.
    pub off: RunReport,
    /// The fleet on.
    pub on: RunReport,
}

impl FleetReport {
    /// Whether the fleet did what it is for: every instance opened and closed again in both
    /// runs, the recovering PG got fewer probes, and the failing PG no more calls (within one
    /// call per instance: with traffic spread evenly, every instance's window fills at the
    /// same pace, so the instances open within one round of each other, fleet or not).
    pub fn holds(&self) -> bool {
        let complete = |r: &RunReport| r.all_open.is_some() && r.all_closed.is_some();
        let round = self.on.lanes.len() as u64;
        complete(&self.off)
            && complete(&self.on)
            && self.on.probes() < self.off.probes()
            && self.on.calls_until_all_open <= self.off.calls_until_all_open + round
    }

    /// The side-by-side table.
    pub fn table(&self) -> String {
        let secs = |d: Option<Duration>| {
            d.map_or_else(
                || "never".to_owned(),
                |d| format!("{:.2} s", d.as_secs_f64()),
            )
        };
        let per = |r: &RunReport| {
            r.lanes
                .iter()
                .map(|l| l.probes.to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| {:<70} | {:>12} | {:>12} |",
            "", "fleet off", "fleet on"
        );
        let _ = writeln!(t, "|{:-<72}|{:->14}|{:->14}|", "", "", "");
        let _ = writeln!(
            t,
            "| {:<70} | {:>12} | {:>12} |",
            "PG calls after the outage began, until every instance stopped calling",
            self.off.calls_until_all_open,
            self.on.calls_until_all_open
        );
        let _ = writeln!(
            t,
            "| {:<70} | {:>12} | {:>12} |",
            "time until every instance was open",
            secs(self.off.time_to_open()),
            secs(self.on.time_to_open())
        );
        let _ = writeln!(
            t,
            "| {:<70} | {:>12} | {:>12} |",
            "probes the PG received at recovery",
            self.off.probes(),
            self.on.probes()
        );
        let _ = writeln!(
            t,
            "| {:<70} | {:>12} | {:>12} |",
            "  per instance",
            per(&self.off),
            per(&self.on)
        );
        t
    }
}

/// Why the run stopped.
#[derive(Debug)]
pub struct FleetRunError(String);

impl std::fmt::Display for FleetRunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FleetRunError {}

fn error(what: &str, e: impl std::fmt::Display) -> FleetRunError {
    FleetRunError(format!("{what}: {e}"))
}

/// The longest each phase may last before the run gives up on it.
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// Runs the fleet off, then on, printing as it goes; writes the chart.
///
/// # Errors
///
/// If Redis cannot be found or started, a server cannot start, or a phase does not end
/// within its bound.
pub async fn run(
    options: &FleetRunOptions,
    out: &mut dyn Write,
) -> Result<FleetReport, FleetRunError> {
    if options.instances < 2 || options.instances > 16 {
        return Err(FleetRunError(format!(
            "--instances {} is not allowed: a fleet here is 2 to 16 instances",
            options.instances
        )));
    }
    let weights = if options.weights.is_empty() {
        vec![1; options.instances]
    } else {
        options.weights.clone()
    };
    if weights.len() != options.instances || weights.iter().any(|w| *w == 0 || *w > 100) {
        return Err(FleetRunError(format!(
            "--weights {weights:?} is not allowed: one weight from 1 to 100 per instance ({})",
            options.instances
        )));
    }
    let local;
    let redis_url = match &options.redis_url {
        Some(url) => url.clone(),
        None => {
            local = LocalRedis::start().map_err(|e| error("cannot start redis-server", e))?;
            local.url()
        }
    };
    let config = config_file(options.wait)?;
    let _ = writeln!(
        out,
        "breakwater payment-gateway fleet: {} instances, one SQLite database, one mock PG, one Redis ({redis_url})",
        options.instances
    );
    let _ = writeln!(
        out,
        "  breaker   {PG_BREAKER} on each instance: the last 10 calls, open at 50% failures, \
         {} s open (the file's 30 s, shortened), 5 probes",
        options.wait.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  fleet     heartbeat {} ms, quorum {}",
        options.heartbeat.as_millis(),
        options.quorum
    );
    let even = weights.iter().all(|w| *w == weights[0]);
    let _ = writeln!(
        out,
        "  client    a confirmation every {} ms, {} over the instances",
        options.every.as_millis(),
        if even {
            "round robin".to_owned()
        } else {
            format!(
                "weighted round robin ({})",
                weights
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(":")
            )
        }
    );
    let schedule = schedule(&weights);
    let off = one_run(options, &schedule, config.path(), None, out).await?;
    let on = one_run(options, &schedule, config.path(), Some(&redis_url), out).await?;
    let report = FleetReport { off, on };
    let _ = writeln!(out);
    let _ = write!(out, "{}", report.table());
    let svg = chart::render(&report, options);
    std::fs::write(&options.chart, svg)
        .map_err(|e| error(&format!("cannot write {}", options.chart.display()), e))?;
    let _ = writeln!(out, "\nchart: {}", options.chart.display());
    Ok(report)
}

/// The instances a weighted round robin visits in one round, spread out: weights 4, 4, 1 give
/// 0, 1, 2, 0, 1, 0, 1, 0, 1.
fn schedule(weights: &[u32]) -> Vec<usize> {
    let rounds = weights.iter().copied().max().unwrap_or(1);
    (0..rounds)
        .flat_map(|r| {
            weights
                .iter()
                .enumerate()
                .filter(move |(_, w)| **w > r)
                .map(|(i, _)| i)
        })
        .collect()
}

/// The example's configuration with the open wait shortened, in a file of its own.
fn config_file(wait: Duration) -> Result<TempYaml, FleetRunError> {
    let seed = "wait-duration-in-open-state: 30000";
    if !CONFIG.contains(seed) {
        return Err(FleetRunError(format!(
            "config/application.yml no longer has `{seed}` to shorten"
        )));
    }
    let text = CONFIG.replace(
        seed,
        &format!("wait-duration-in-open-state: {}", wait.as_millis()),
    );
    let file = TempYaml(
        TemporaryFile::new("payment-gateway-fleet")
            .path()
            .with_extension("yml"),
    );
    std::fs::write(&file.0, text).map_err(|e| error("cannot write the configuration", e))?;
    Ok(file)
}

/// A temporary YAML file, deleted when dropped.
struct TempYaml(PathBuf);

impl TempYaml {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempYaml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the breakers' events tell, as they come.
type Lanes = Arc<Mutex<Vec<Lane>>>;

fn follow(breaker: &CircuitBreaker, lanes: &Lanes, index: usize, start: Instant) {
    let lanes = Arc::clone(lanes);
    let state = Mutex::new(CircuitState::Closed);
    breaker.on_event(move |event| {
        let mut lanes = lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let lane = &mut lanes[index];
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        match event.kind() {
            EventKind::StateTransition { to, cause, .. } => {
                *state = *to;
                lane.transitions
                    .push((start.elapsed(), *to, describe(*cause)));
            }
            EventKind::Success { .. } | EventKind::Failure { .. } | EventKind::Ignored { .. }
                if *state == CircuitState::HalfOpen =>
            {
                lane.probes += 1;
            }
            _ => {}
        }
    });
}

fn describe(cause: TransitionCause) -> String {
    match cause {
        TransitionCause::FailureRate(rate) => format!("its failure rate {rate:.0}%"),
        TransitionCause::SlowCallRate(rate) => format!("its slow-call rate {rate:.0}%"),
        TransitionCause::WaitElapsed => "its wait elapsed: probing".to_owned(),
        TransitionCause::ProbesSucceeded => "its probes succeeded".to_owned(),
        TransitionCause::FleetQuorum { reporting } => {
            format!("the fleet: {reporting} instances report it open")
        }
        TransitionCause::FleetProbesSucceeded => {
            "the fleet: another instance's probes succeeded".to_owned()
        }
        other => format!("{other:?}"),
    }
}

async fn until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn one_run(
    options: &FleetRunOptions,
    schedule: &[usize],
    config: &std::path::Path,
    redis_url: Option<&str>,
    out: &mut dyn Write,
) -> Result<RunReport, FleetRunError> {
    let fleet = redis_url.is_some();
    let _ = writeln!(out, "\n-- fleet {}", if fleet { "on" } else { "off" });
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let pg = MockPg::start_on(loopback)
        .await
        .map_err(|e| error("cannot start the mock PG", e))?;
    let database = TemporaryFile::new("payment-gateway-fleet");
    let start = Instant::now();
    let lanes: Lanes = Arc::new(Mutex::new(Vec::new()));
    let mut servers = Vec::new();
    let mut breakers = Vec::new();
    for i in 1..=options.instances {
        let instance = format!("pay-{i}");
        let server = Server::start(ServeOptions {
            addr: loopback,
            pg_url: pg.url(),
            database_url: format!("sqlite://{}?mode=rwc", database.path().display()),
            config: Some(config.to_owned()),
            log_format: None,
            reconcile_every: Duration::from_secs(1),
            fleet: FleetOptions {
                instance: Some(instance.clone()),
                redis_url: redis_url.map(str::to_owned),
                heartbeat: Some(options.heartbeat),
                quorum: Some(options.quorum),
            },
            ..ServeOptions::default()
        })
        .await
        .map_err(|e| error(&format!("cannot start {instance}"), e))?;
        if server.fleet().is_some_and(|f| !f.is_connected()) {
            return Err(FleetRunError(format!(
                "{instance} could not reach Redis at {}",
                redis_url.unwrap_or_default()
            )));
        }
        let breaker = server.registry().circuit_breaker(PG_BREAKER);
        lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Lane {
                instance,
                ..Lane::default()
            });
        follow(&breaker, &lanes, i - 1, start);
        breakers.push(breaker);
        let url = server.url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        servers.push((url, stop, task));
    }
    // The client: one confirmation every `every`, round robin, until told to stop.
    let (halt, mut halted) = tokio::sync::watch::channel(false);
    let urls: Vec<String> = servers.iter().map(|(url, ..)| url.clone()).collect();
    let client_lanes = Arc::clone(&lanes);
    let every = options.every;
    let prefix = if fleet { "fleet-on" } else { "fleet-off" };
    let schedule = schedule.to_vec();
    let client = tokio::spawn(async move {
        let mut drivers: Vec<Driver> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| Driver::new(url.clone(), start).with_prefix(&format!("{prefix}-{i}")))
            .collect();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0usize;
        // Bounded in count as in time: at most this many confirmations.
        while n < 100_000 && !*halted.borrow_and_update() {
            tick.tick().await;
            let i = schedule[n % schedule.len()];
            n += 1;
            let driver = &mut drivers[i];
            let amount = 25_000;
            let Ok(order) = driver.create(amount).await else {
                continue;
            };
            if let Ok(sample) = driver.confirm(&order, amount).await {
                client_lanes.lock().unwrap_or_else(PoisonError::into_inner)[i]
                    .calls
                    .push((sample.at, sample.outcome));
            }
        }
    });
    let all = |state: CircuitState| breakers.iter().all(|b| b.state() == state);

    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.set_fault(Fault::ServerError);
    let outage = start.elapsed();
    let hits_at_outage = pg.hits();
    let opened = until(PHASE_LIMIT, || all(CircuitState::Open)).await;
    let all_open = opened.then(|| start.elapsed());
    let calls_until_all_open = pg.hits() - hits_at_outage;
    // A second more of the outage, then the PG recovers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.set_fault(Fault::None);
    let recovery = start.elapsed();
    let closed = until(options.wait + PHASE_LIMIT, || all(CircuitState::Closed)).await;
    let all_closed = closed.then(|| start.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = halt.send(true);
    let _ = client.await;
    let total = start.elapsed();
    for (url, stop, task) in servers {
        let _ = stop.send(());
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                return Err(error(&format!("the instance at {url} stopped badly"), e));
            }
            _ => return Err(FleetRunError(format!("the instance at {url} did not stop"))),
        }
    }
    pg.stop();
    let lanes = lanes.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut timeline: Vec<(Duration, String)> = lanes
        .iter()
        .flat_map(|l| {
            l.transitions
                .iter()
                .map(move |(at, state, why)| (*at, format!("{} {state}: {why}", l.instance)))
        })
        .collect();
    timeline.push((outage, "-- the PG answers 500".to_owned()));
    timeline.push((recovery, "-- the PG recovers".to_owned()));
    timeline.sort_by_key(|t| t.0);
    for (at, what) in timeline {
        let _ = writeln!(out, "  {:>6.2} s  {what}", at.as_secs_f64());
    }
    if !opened {
        let _ = writeln!(out, "  not every instance opened within {PHASE_LIMIT:?}");
    }
    if !closed {
        let _ = writeln!(out, "  not every instance closed again in time");
    }
    Ok(RunReport {
        fleet,
        outage,
        all_open,
        calls_until_all_open,
        recovery,
        all_closed,
        total,
        lanes,
    })
}
