//! `payment-gateway serve`: the payment service, its reconciler and the subscriptions'
//! scheduler, started as a team would run it. Every `--reconcile-every-ms` the payments'
//! reconciler makes a pass (see [`reconcile`](crate::reconcile)), and the scheduler charges
//! the subscriptions due and settles the attempts left open (see [`billing`](crate::billing)).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use payment_gateway::serve::{self, ServeOptions, Server};
//!
//! let stop = serve::shutdown_signal()?;                             // SIGTERM or Ctrl-C
//! let server = Server::start(ServeOptions::default()).await?;
//! println!("listening on {}", server.url());
//! server.run(stop).await?;                                          // drains, then returns
//! # Ok(()) }
//! ```
//!
//! # Start-up
//!
//! In this order: the log subscriber; the Prometheus recorder, before any breaker is built
//! (breakwater makes a breaker's metric handles when it builds it, with the recorder
//! installed then, so a breaker built earlier would never reach `/metrics`); the
//! configuration file and its breakers (metrics on); the database (migrated); the reconciler's
//! and the API's PG clients, sharing the breaker `beeceptor-payment`; the listener. Every
//! failure on the way is an error naming what could not be done.
//!
//! # Settings
//!
//! Each is a flag of `serve` and an environment variable (the flag wins):
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--addr` | `PAYMENT_GATEWAY_ADDR` | `127.0.0.1:8080` (`127.0.0.1:0`: a port the system picks) |
//! | `--pg-url` | `PAYMENT_GATEWAY_PG_URL` | `http://127.0.0.1:9090` |
//! | `--database-url` | `DATABASE_URL` | `sqlite://payments.db?mode=rwc` |
//! | `--config` | `PAYMENT_GATEWAY_CONFIG` | the example's `config/application.yml`, built in |
//! | `--connect-timeout-ms` | `PAYMENT_GATEWAY_CONNECT_TIMEOUT_MS` | the file's `payment-gateway.pg.connect-timeout`, else 1100 |
//! | `--read-timeout-ms` | `PAYMENT_GATEWAY_READ_TIMEOUT_MS` | the file's `payment-gateway.pg.read-timeout`, else 3000 |
//! | `--shutdown-timeout-ms` | `PAYMENT_GATEWAY_SHUTDOWN_TIMEOUT_MS` | 30000 |
//! | `--reconcile-every-ms` | `PAYMENT_GATEWAY_RECONCILE_EVERY_MS` | 10000 |
//! | `--confirm-window-ms` | `PAYMENT_GATEWAY_CONFIRM_WINDOW_MS` | 600000 (Toss's 10 minutes): how long the PG lets a payment key wait for its confirm |
//! | `--log-format` | `PAYMENT_GATEWAY_LOG_FORMAT` | `text` (or `json`) |
//! | `--instance` | `PAYMENT_GATEWAY_INSTANCE` | `serve-PID` (see [Fleet](#fleet)) |
//! | `--redis-url` | `PAYMENT_GATEWAY_REDIS_URL` | the file's `breakwater.fleet.redis-url`, else no fleet |
//! | `--fleet-heartbeat-ms` | `PAYMENT_GATEWAY_FLEET_HEARTBEAT_MS` | the file's `breakwater.fleet.heartbeat`, else 1000 |
//! | `--fleet-quorum` | `PAYMENT_GATEWAY_FLEET_QUORUM` | the file's `breakwater.fleet.quorum`, else 2 |
//!
//! `RUST_LOG` filters the log lines (see [`telemetry::init_logs_as`]). The configuration file
//! is YAML: breakwater reads its `resilience4j` and `breakwater` sections, and this module
//! its `payment-gateway.pg` keys (see [`FileSettings`]).
//!
//! # The PG client's timeouts
//!
//! They are separate settings because they guard different things. The **connect timeout**
//! covers the TCP handshake only: nothing has been sent, so giving up early costs a retry and
//! never money, and it should be short (the seed: 1 to 3 s; its PG client uses 3 s). The
//! example takes 1100 ms, the seed's connection timeout for its database (whose socket
//! timeout, the read timeout's counterpart, is 3000 ms: the same pair as here): just over
//! the 1 s after which a lost SYN is sent again, so one lost packet still connects and an
//! unreachable PG fails fast.
//!
//! The **read timeout** covers the answer (headers and body), after the request has left:
//! the PG may be charging the card while we wait. The seed's rule is the PG's own guidance
//! plus a margin for the network; Toss Payments recommends 60 s for its payment APIs, and the
//! seed's example uses 3 s. A read timeout shorter than the PG takes is a trade: with 3 s, a
//! PG that answers in 4 s has charged the customer while this service gave up. That is why a
//! timeout is never taken as "not charged": the payment becomes `unknown`, and the reconciler
//! settles it by asking the PG (see [`reconcile`](crate::reconcile)). The example chooses
//! 3 s: a customer at the checkout gives up long before 60 s, a confirmation that has not
//! answered in 3 s is better answered as not yet known than held, and the reconciler
//! settles the rest within its period. A service whose callers can wait would follow the
//! PG's 60 s.
//!
//! # Health
//!
//! `/health/live` answers `200` while the process serves; `/health/ready` (and `/health`)
//! answers `503` when the database does not answer, and reports an open breaker without
//! failing on it (see [`api`](crate::api)).
//!
//! # Fleet
//!
//! With a Redis URL (`--redis-url`, or a `breakwater.fleet` section in the file), the
//! service joins its breakers (the PG breaker `beeceptor-payment`) to a fleet of instances
//! through [`breakwater_fleet`]: every instance with the same breaker name and Redis acts as
//! one breaker (a quorum opens the others, one instance probes a recovering PG for all).
//! Each instance needs its own `--instance` id; the default, `serve-PID`, is unique on one
//! machine only. Redis down never stops the service: the fleet starts local-only, says so,
//! and joins when Redis answers. At shutdown the instance leaves the fleet (its reports are
//! deleted) after its last request. `payment-gateway fleet` runs three instances this way.
//!
//! # Shutdown
//!
//! When `shutdown` resolves ([`shutdown_signal`]: SIGTERM or Ctrl-C), the listener closes
//! (new connections are refused), the requests in flight run to their end and idle
//! connections close, the reconciler finishes the pass it is in and stops, and the
//! database's connections close. All of it is bounded by the shutdown timeout: what still
//! runs then is abandoned, [`Server::run`] returns an error that says so (`serve` exits 1),
//! and the process exiting cuts it off. A payment cut off mid-flow is left as a crash would
//! leave it, and a reconciler settles it.

mod args;
mod file;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use breakwater::Registry;
use tokio::sync::oneshot;

pub use self::args::ServeArgs;
pub use self::file::{CONNECT_TIMEOUT_KEY, FileSettings, MAX_TIMEOUT, READ_TIMEOUT_KEY};
use crate::app::App;
use crate::confirm::Timing;
use crate::pg_client::{PgClient, PgSettings};
use crate::reconcile::Reconciler;
use crate::store::Store;
use crate::telemetry::{self, LogFormat};

/// The connect timeout when neither the command line nor the file gives one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1100);

/// The read timeout when neither the command line nor the file gives one.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// How to run the service; see the [module docs](self) for each setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The PG's base URL.
    pub pg_url: String,
    /// The database's URL.
    pub database_url: String,
    /// The configuration file; the built-in `config/application.yml` if `None`.
    pub config: Option<PathBuf>,
    /// The PG client's connect timeout; the file's, else [`DEFAULT_CONNECT_TIMEOUT`], if
    /// `None`.
    pub connect_timeout: Option<Duration>,
    /// The PG client's read timeout; the file's, else [`DEFAULT_READ_TIMEOUT`], if `None`.
    pub read_timeout: Option<Duration>,
    /// How long shutting down may take.
    pub shutdown_timeout: Duration,
    /// How often the reconciler runs.
    pub reconcile_every: Duration,
    /// The PG's confirm window, as the reconciler assumes it.
    pub confirm_window: Duration,
    /// How to write log lines to stderr; `None` installs no subscriber (a test's, or none).
    pub log_format: Option<LogFormat>,
    /// The fleet this instance joins, if any (see [Fleet](self#fleet)).
    pub fleet: FleetOptions,
}

/// The fleet settings of [`ServeOptions`]: each overrides the file's `breakwater.fleet` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetOptions {
    /// This instance's id; `serve-PID` if `None`.
    pub instance: Option<String>,
    /// The Redis server; the file's `breakwater.fleet.redis-url` (or no fleet) if `None`.
    pub redis_url: Option<String>,
    /// The fleet's heartbeat; the file's, else 1 s, if `None`.
    pub heartbeat: Option<Duration>,
    /// The fleet's quorum; the file's, else 2, if `None`.
    pub quorum: Option<u32>,
}

impl Default for ServeOptions {
    /// The command line's defaults.
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pg_url: "http://127.0.0.1:9090".to_owned(),
            database_url: "sqlite://payments.db?mode=rwc".to_owned(),
            config: None,
            connect_timeout: None,
            read_timeout: None,
            shutdown_timeout: Duration::from_secs(30),
            reconcile_every: Duration::from_secs(10),
            confirm_window: crate::mock_pg::CONFIRM_WINDOW,
            log_format: Some(LogFormat::Text),
            fleet: FleetOptions::default(),
        }
    }
}

/// Why the service did not start, or did not stop cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError(String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// The service, started: listening, its reconciler not yet running (see [`run`](Self::run)).
#[derive(Debug)]
pub struct Server {
    app: App,
    fleet: Option<breakwater_fleet::Fleet>,
    store: Store,
    reconciler: Reconciler,
    pg: PgSettings,
    shutdown_timeout: Duration,
    reconcile_every: Duration,
}

impl Server {
    /// Starts the service as the [module docs](self) describe, up to listening.
    ///
    /// # Errors
    ///
    /// If the configuration file cannot be read or is wrong, a setting is out of range, the
    /// database cannot be opened, or the address cannot be bound.
    pub async fn start(options: ServeOptions) -> Result<Self, ServeError> {
        if let Some(format) = options.log_format {
            telemetry::init_logs_as(Some(format));
        }
        // Before any breaker is built: see the module docs.
        if telemetry::prometheus().is_none() {
            tracing::warn!("another metrics recorder was installed first: /metrics answers 503");
        }
        let (registry, file) = load_config(options.config.as_ref())?;
        let registry = registry.with_metrics(true);
        // Every fleet setting (the file's and the options') is checked, and Redis tried,
        // before the service listens; the breakers join once the PG clients have made them.
        let fleet = match fleet_builder(&registry, options.fleet.clone())? {
            Some(builder) => Some(
                builder
                    .connect()
                    .await
                    .map_err(|e| ServeError(format!("cannot join the fleet: {e}")))?,
            ),
            None => None,
        };
        let connect_timeout = pick(
            options.connect_timeout,
            "--connect-timeout-ms",
            file.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let read_timeout = pick(
            options.read_timeout,
            "--read-timeout-ms",
            file.read_timeout,
            DEFAULT_READ_TIMEOUT,
        )?;
        if options.shutdown_timeout.is_zero() || options.reconcile_every.is_zero() {
            return Err(ServeError(format!(
                "the shutdown timeout ({} ms) and the reconciler's period ({} ms) are not \
                 allowed: each must be at least 1 ms",
                options.shutdown_timeout.as_millis(),
                options.reconcile_every.as_millis()
            )));
        }
        let database = &options.database_url;
        let store = Store::open(database)
            .await
            .map_err(|e| ServeError(format!("cannot open {database}: {e}")))?;
        let mut pg = PgSettings::new(options.pg_url);
        pg.connect_timeout = connect_timeout;
        pg.read_timeout = read_timeout;
        // The flows' deadline, the reconciler's grace and its lease grow with the read
        // timeout: the reconciler never touches a payment whose flow may still run.
        let timing = Timing::for_read_timeout(read_timeout);
        let reconciler = Reconciler::new(
            store.clone(),
            PgClient::new(&registry, pg.clone()),
            crate::app::instance_name("serve"),
        )
        .with_db_chaos(&registry.chaos(crate::DB_CHAOS))
        .grace(timing.grace)
        .lease(timing.lease)
        .confirm_window(options.confirm_window);
        let addr = options.addr;
        let app = App::start(addr, registry.clone(), store.clone(), pg.clone())
            .await
            .map_err(|e| ServeError(format!("cannot listen on {addr}: {e}")))?;
        // The breakers exist now (the PG clients made them): join them.
        if let Some(fleet) = &fleet {
            join_fleet(&registry, fleet);
        }
        tracing::info!(
            pg = %pg.base_url,
            connect_timeout_ms = millis(connect_timeout),
            read_timeout_ms = millis(read_timeout),
            "[SERVE] payment service listening on {}",
            app.url()
        );
        Ok(Self {
            app,
            fleet,
            store,
            reconciler,
            pg,
            shutdown_timeout: options.shutdown_timeout,
            reconcile_every: options.reconcile_every,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.app.addr()
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.app.url()
    }

    /// The registry of its breakers.
    pub fn registry(&self) -> &Registry {
        self.app.registry()
    }

    /// The fleet it joined, if any.
    pub fn fleet(&self) -> Option<&breakwater_fleet::Fleet> {
        self.fleet.as_ref()
    }

    /// Its store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where its PG clients go and their timeouts, as resolved from the options, the file
    /// and the defaults.
    pub fn pg_settings(&self) -> &PgSettings {
        &self.pg
    }

    /// Serves, and reconciles every period, until `shutdown` resolves; then shuts down as the
    /// [module docs](self) describe.
    ///
    /// # Errors
    ///
    /// If requests or the reconciler's pass were still running when the shutdown timeout
    /// ran out (they were cut off), or serving failed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Self {
            app,
            fleet,
            store,
            reconciler,
            shutdown_timeout,
            reconcile_every,
            ..
        } = self;
        let (stop, stopped) = oneshot::channel::<()>();
        let billing = app.billing().clone();
        let mut reconciling = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            // The payments' reconciler, and the subscriptions' scheduler with its reconciler,
            // on the same period; both stop at the shutdown (a pass under way finishes).
            let (tx, rx) = tokio::sync::watch::channel(false);
            let billing_stopped = {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
            };
            let payments_stopped = {
                let mut rx = rx;
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
            };
            tokio::join!(
                async move {
                    stopped.await;
                    let _ = tx.send(true);
                },
                reconciler.run_until(reconcile_every, payments_stopped),
                billing.run_until(reconcile_every, billing_stopped),
            );
        });
        shutdown.await;
        let drain_ms = millis(shutdown_timeout);
        tracing::info!(
            drain_ms,
            "[SHUTDOWN] no new connections; finishing the requests in flight and the \
             reconciler's pass"
        );
        let deadline = tokio::time::Instant::now() + shutdown_timeout;
        let _ = stop.send(());
        let (served, reconciled) = tokio::join!(
            app.stop(shutdown_timeout),
            tokio::time::timeout_at(deadline, &mut reconciling)
        );
        let mut problems = Vec::new();
        match served {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => problems.push(format!(
                "requests were still in flight after the shutdown timeout of {drain_ms} ms \
                 (--shutdown-timeout-ms) and were cut off; their payments are left to the \
                 reconciler"
            )),
            Err(e) => problems.push(format!("serving failed: {e}")),
        }
        match reconciled {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("the reconciler failed: {e}")),
            Err(_) => {
                reconciling.abort();
                problems.push(format!(
                    "the reconciler's pass was still running after the shutdown timeout of \
                     {drain_ms} ms (--shutdown-timeout-ms) and was cut off; its claims \
                     expire with their lease"
                ));
            }
        }
        // The last request is answered: leave the fleet (bounded by its TTL).
        if let Some(fleet) = fleet {
            fleet.leave().await;
        }
        // Only once nothing uses the pool: closing waits for every connection to come back.
        if problems.is_empty()
            && tokio::time::timeout_at(deadline, store.close())
                .await
                .is_err()
        {
            problems.push(format!(
                "the database's connections were not closed within the shutdown timeout of \
                 {drain_ms} ms (--shutdown-timeout-ms)"
            ));
        }
        if problems.is_empty() {
            tracing::info!("[SHUTDOWN] stopped: every request in flight finished");
            Ok(())
        } else {
            let message = problems.join("; ");
            tracing::warn!("[SHUTDOWN] {message}");
            Err(ServeError(message))
        }
    }
}

/// Starts the service and runs it until `shutdown` resolves: [`Server::start`], then
/// [`Server::run`].
///
/// # Errors
///
/// As those.
pub async fn run(
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    Server::start(options).await?.run(shutdown).await
}

/// A future that resolves on the first SIGTERM or SIGINT (Ctrl-C) (on other systems than
/// Unix, Ctrl-C). The handlers are installed when this is called, not when the future is
/// first polled: from then on, a signal neither kills the process nor is lost.
///
/// # Errors
///
/// If a handler cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "[SHUTDOWN] {name} received");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("[SHUTDOWN] Ctrl-C received");
        })
    }
}

/// The fleet to join, when a Redis URL is given (the options', over the file's section,
/// whose other keys stay), checked before anything starts.
fn fleet_builder(
    registry: &Registry,
    options: FleetOptions,
) -> Result<Option<breakwater_fleet::FleetBuilder>, ServeError> {
    let from_file = breakwater_fleet::FleetBuilder::from_registry(registry)
        .map_err(|e| ServeError(format!("cannot read the fleet's settings: {e}")))?;
    let builder = match (options.redis_url, from_file) {
        (Some(url), Some(builder)) => builder.redis_url(url),
        (Some(url), None) => breakwater_fleet::Fleet::builder(url),
        (None, Some(builder)) => builder,
        (None, None) => return Ok(None),
    };
    let mut builder = builder.instance(
        options
            .instance
            .unwrap_or_else(|| format!("serve-{}", std::process::id())),
    );
    if let Some(heartbeat) = options.heartbeat {
        builder = builder.heartbeat(heartbeat);
    }
    if let Some(quorum) = options.quorum {
        builder = builder.quorum(quorum);
    }
    Ok(Some(builder))
}

/// Joins the registry's breakers to `fleet`.
fn join_fleet(registry: &Registry, fleet: &breakwater_fleet::Fleet) {
    let joined = fleet.join_registry(registry);
    tracing::info!(
        instance = fleet.instance(),
        joined,
        connected = fleet.is_connected(),
        "[FLEET] breakers joined the fleet"
    );
}

/// The registry of the configuration file (or the built-in one), and its `payment-gateway`
/// keys.
fn load_config(path: Option<&PathBuf>) -> Result<(Registry, FileSettings), ServeError> {
    let (text, origin) = match path {
        None => (
            crate::demo::CONFIG.to_owned(),
            "the built-in application.yml".to_owned(),
        ),
        Some(path) => {
            let origin = path.display().to_string();
            let yaml = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
            if !yaml {
                return Err(ServeError(format!(
                    "--config {origin} is not allowed: it must be a YAML file (.yml or .yaml)"
                )));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServeError(format!("cannot read {origin}: {e}")))?;
            (text, origin)
        }
    };
    let registry =
        Registry::from_yaml(&text).map_err(|e| ServeError(format!("cannot load {origin}: {e}")))?;
    let file = FileSettings::from_yaml(&text, &origin).map_err(ServeError)?;
    Ok((registry, file))
}

/// The timeout given in the options, else in the file, else `default`; the options' is
/// checked here (the file's is checked when read).
fn pick(
    given: Option<Duration>,
    flag: &str,
    file: Option<Duration>,
    default: Duration,
) -> Result<Duration, ServeError> {
    match given {
        Some(d) if d.is_zero() || d > MAX_TIMEOUT => Err(ServeError(format!(
            "{flag} {} is not allowed: it must be from 1 to {}",
            d.as_millis(),
            MAX_TIMEOUT.as_millis()
        ))),
        Some(d) => Ok(d),
        None => Ok(file.unwrap_or(default)),
    }
}

/// Whole milliseconds, as a log field (a `u128` would be written as text).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
