//! Run with: cargo run -p payment-gateway
//!
//! `demo` (the default) runs the whole system on loopback through a PG outage and writes a
//! chart; `chaos` runs confirmations under injected faults and audits the money; `serve` runs
//! the payment service (and its reconciler; see `payment_gateway::serve`); `mock-pg` runs the
//! mock PG.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use payment_gateway::chaos_run::{self, ChaosOptions, Flow};
use payment_gateway::demo::{self, DemoOptions};
use payment_gateway::fleet_run::{self, FleetRunOptions};
use payment_gateway::mock_pg::{Fault, MockPg};
use payment_gateway::serve::{self, ServeArgs, ServeOptions, Server};
use payment_gateway::telemetry;

#[derive(Parser)]
#[command(
    name = "payment-gateway",
    about = "breakwater's payment example",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the mock PG and the service in-process and drives them through a PG outage
    /// (the default).
    Demo {
        /// Where to write the chart (SVG).
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Print the service's log lines too.
        #[arg(long)]
        logs: bool,
    },
    /// Runs N confirmations (or subscriptions) at once against the mock PG with faults
    /// injected (database writes failed or ambiguous, PG 500s before and after the charge,
    /// lost responses, latency spikes, duplicate callbacks, crashes), then the reconciler,
    /// then audits the database against the PG's ledger. Exits non-zero when anything is
    /// inconsistent, except with `--auto-refund off`, whose damage is the point (exit 0);
    /// `--compare` exits 0 only when off shows damage and on shows none.
    Chaos {
        /// Confirmations (or subscriptions) to run.
        #[arg(long, default_value_t = 2000)]
        payments: usize,
        /// Which flow: `confirm` (seed 1) or `subscription` (seed 2's billing-key charges).
        #[arg(long, default_value = "confirm")]
        flow: String,
        /// Subscriptions: refund a charge whose period cannot be saved (`on`, the default), or
        /// not (`off`: the seed's "before").
        #[arg(long)]
        auto_refund: Option<String>,
        /// Subscriptions: run auto-refund off, then on, with the same seed, side by side.
        #[arg(long)]
        compare: bool,
        /// The share of database writes that fail before they are made, from 0 to 1.
        #[arg(long, default_value_t = 0.3)]
        db_failure_rate: f64,
        /// The share of database writes that commit and are reported failed, from 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        db_ambiguous_rate: f64,
        /// The share of the PG's work (confirms, cancels, charges) answered 500, 502 or 504
        /// after it was done.
        #[arg(long, default_value_t = 0.0)]
        pg_500_after_charge_rate: f64,
        /// The share of payments whose success callback arrives two or three times at once.
        #[arg(long, default_value_t = 0.0)]
        duplicate_callback_rate: f64,
        /// The share of payments whose flow stops at a step boundary, as a crash would.
        #[arg(long, default_value_t = 0.0)]
        crash_rate: f64,
        /// The PG's confirm window, in milliseconds (Toss: 600000).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
        confirm_window_ms: u64,
        /// The seed of every fault: the same seed, the same faults.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The database: `postgres://...` or `sqlite://...`; a temporary SQLite file if not
        /// given. (Not read from `DATABASE_URL`: the run's reconciler touches only its own
        /// orders, but a chaos run has no business on the service's database by accident.)
        #[arg(long)]
        database_url: Option<String>,
        /// The share of PG calls answered 500 without reaching it.
        #[arg(long, default_value_t = 0.05)]
        pg_failure_rate: f64,
        /// The share of PG calls whose response is lost after the PG did the work.
        #[arg(long, default_value_t = 0.05)]
        pg_loss_rate: f64,
        /// The share of PG calls delayed by a spike of 20 ms to 1.5 s (the read timeout is 1 s).
        #[arg(long, default_value_t = 0.05)]
        latency_rate: f64,
        /// Confirmations in flight at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
        concurrency: u32,
    },
    /// Runs the payment service and its reconciler until SIGTERM or Ctrl-C, then lets the
    /// requests in flight finish. Every setting may also come from the environment variable
    /// named with it; the flag wins.
    Serve(ServeArgs),
    /// Runs N service instances (three by default) sharing one database and one Redis
    /// behind a round-robin client, through a PG outage and its recovery, the fleet off and
    /// on; prints the PG calls until every instance stopped calling, the time until every
    /// instance was open and the probes at recovery side by side, and writes a chart. Exits
    /// non-zero unless the fleet does better.
    Fleet {
        /// Service instances.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
        instances: u64,
        /// The Redis server; without it, a `redis-server` of the run's own on loopback.
        #[arg(long)]
        redis_url: Option<String>,
        /// Where to write the chart (SVG) [default: payment-gateway-fleet.svg in the system's
        /// temporary directory].
        #[arg(long)]
        chart: Option<PathBuf>,
        /// The fleet's heartbeat, in milliseconds.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(50..=10_000))]
        heartbeat_ms: u64,
        /// How many instances must report the breaker open to open the others.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
        quorum: u32,
        /// The client's weights, one per instance, e.g. `4,4,1` (weighted round robin: the
        /// third instance gets one confirmation in nine) [default: even round robin].
        #[arg(long, value_delimiter = ',')]
        weights: Vec<u32>,
    },
    /// Runs the mock PG; switch its faults with `PUT /mock/fault`.
    MockPg {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9090")]
        addr: SocketAddr,
        /// The fault to start with: none, reject, server-error, slow, hang, lost-response.
        #[arg(long, default_value = "none")]
        fault: String,
        /// With `--fault slow`: how long it waits, in milliseconds.
        #[arg(long)]
        delay_ms: Option<u64>,
        /// The share of the PG's work answered 500, 502 or 504 after it was done.
        #[arg(long, default_value_t = 0.0)]
        pg_500_after_charge_rate: f64,
        /// The seed of that draw.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The confirm window, in milliseconds (Toss's 10 minutes by default).
        #[arg(long, default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
        confirm_window_ms: u64,
    },
}

#[tokio::main]
#[expect(
    clippy::print_stderr,
    reason = "a command reports its failure on stderr"
)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Demo {
        chart: None,
        logs: false,
    }) {
        Command::Demo { chart, logs } => run_demo(chart, logs).await,
        Command::Chaos {
            payments,
            flow,
            auto_refund,
            compare,
            db_failure_rate,
            db_ambiguous_rate,
            pg_500_after_charge_rate,
            duplicate_callback_rate,
            crash_rate,
            confirm_window_ms,
            seed,
            database_url,
            pg_failure_rate,
            pg_loss_rate,
            latency_rate,
            concurrency,
        } => {
            let mut options = ChaosOptions::new(payments, db_failure_rate, seed);
            options.database_url = database_url;
            options.db_ambiguous_rate = db_ambiguous_rate;
            options.pg_500_after_charge_rate = pg_500_after_charge_rate;
            options.duplicate_callback_rate = duplicate_callback_rate;
            options.crash_rate = crash_rate;
            options.confirm_window = Duration::from_millis(confirm_window_ms);
            options.pg_failure_rate = pg_failure_rate;
            options.pg_loss_rate = pg_loss_rate;
            options.latency_rate = latency_rate;
            options.concurrency = concurrency as usize;
            options.progress = true;
            match (Flow::parse(&flow), auto_refund.as_deref()) {
                (Err(message), _) => Err(message),
                (Ok(Flow::Confirm), Some(_)) => Err(
                    "--auto-refund is not allowed with --flow confirm: it is a setting of \
                     --flow subscription"
                        .to_owned(),
                ),
                (Ok(Flow::Confirm), None) if compare => Err(
                    "--compare is not allowed with --flow confirm: it compares --flow \
                     subscription with --auto-refund off and on"
                        .to_owned(),
                ),
                (Ok(flow), None | Some("on" | "off")) => {
                    options.flow = flow;
                    options.auto_refund = auto_refund.as_deref() != Some("off");
                    if compare {
                        run_compare(&options).await
                    } else {
                        run_chaos(&options).await
                    }
                }
                (Ok(_), Some(other)) => Err(format!(
                    "--auto-refund {other} is not allowed: it must be on or off"
                )),
            }
        }
        Command::Serve(args) => run_serve(args.into()).await,
        Command::Fleet {
            instances,
            redis_url,
            chart,
            heartbeat_ms,
            quorum,
            weights,
        } => {
            let mut options = FleetRunOptions {
                weights,
                instances: usize::try_from(instances).unwrap_or(3),
                redis_url,
                heartbeat: Duration::from_millis(heartbeat_ms),
                quorum,
                ..FleetRunOptions::default()
            };
            if let Some(chart) = chart {
                options.chart = chart;
            }
            run_fleet(&options).await
        }
        Command::MockPg {
            addr,
            fault,
            delay_ms,
            pg_500_after_charge_rate,
            seed,
            confirm_window_ms,
        } => {
            mock_pg(
                addr,
                &fault,
                delay_ms,
                (pg_500_after_charge_rate, seed),
                Duration::from_millis(confirm_window_ms),
            )
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("payment-gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_demo(chart: Option<PathBuf>, logs: bool) -> Result<(), String> {
    telemetry::init_logs(logs);
    let mut options = DemoOptions::default();
    if let Some(chart) = chart {
        options.chart = chart;
    }
    let mut stdout = std::io::stdout();
    demo::run(&options, &mut stdout)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn run_fleet(options: &FleetRunOptions) -> Result<(), String> {
    telemetry::init_logs(false);
    let mut stdout = std::io::stdout();
    let report = fleet_run::run(options, &mut stdout)
        .await
        .map_err(|e| e.to_string())?;
    if report.holds() {
        println!("the fleet holds: fewer probes at recovery, no more calls to the failing PG");
        Ok(())
    } else {
        Err("the fleet did not do better than the instances alone (see the table)".to_owned())
    }
}

async fn run_chaos(options: &ChaosOptions) -> Result<(), String> {
    telemetry::init_logs(false);
    let report = chaos_run::run(options).await.map_err(|e| e.to_string())?;
    println!("{report}");
    if report.audit.is_consistent() {
        Ok(())
    } else if options.flow == Flow::Subscription && !options.auto_refund {
        // The seed's "before": its damage is what the run shows.
        println!(
            "auto-refund off: {} customers charged and not subscribed",
            report.audit.charged_not_done_not_refunded
        );
        Ok(())
    } else {
        Err(format!(
            "{} inconsistent, {} charged twice",
            report.audit.inconsistent, report.audit.double_charges
        ))
    }
}

async fn run_compare(options: &ChaosOptions) -> Result<(), String> {
    telemetry::init_logs(false);
    let comparison = chaos_run::compare(options)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", comparison.off);
    println!("{}", comparison.on);
    println!("{comparison}");
    if comparison.holds() {
        Ok(())
    } else {
        Err(format!(
            "the comparison does not hold: off shows {} customers charged and not subscribed \
             (it must show some), on shows {} inconsistent (it must show none)",
            comparison.off.audit.charged_not_done_not_refunded, comparison.on.audit.inconsistent
        ))
    }
}

async fn run_serve(options: ServeOptions) -> Result<(), String> {
    // Before anything else: a SIGTERM from now on drains instead of killing.
    let shutdown =
        serve::shutdown_signal().map_err(|e| format!("cannot listen for signals: {e}"))?;
    let server = Server::start(options).await.map_err(|e| e.to_string())?;
    // The line a supervisor (or a test) reads to learn the port of `--addr 127.0.0.1:0`.
    println!("listening on {}", server.url());
    server.run(shutdown).await.map_err(|e| e.to_string())
}

async fn mock_pg(
    addr: SocketAddr,
    fault: &str,
    delay_ms: Option<u64>,
    (after_charge_rate, seed): (f64, u64),
    confirm_window: Duration,
) -> Result<(), String> {
    telemetry::init_logs(true);
    let fault = Fault::parse(fault, delay_ms).map_err(|e| format!("--fault: {e}"))?;
    let pg = MockPg::start_on(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    pg.set_fault(fault);
    pg.set_error_after_work(after_charge_rate, seed)?;
    pg.set_confirm_window(confirm_window);
    tracing::info!("mock PG on {} ({fault})", pg.url());
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
