//! Run with: cargo run -p payment-gateway
//!
//! `demo` (the default) runs the whole system on loopback through a PG outage and writes a
//! chart; `chaos` runs confirmations under injected faults and audits the money; `serve` runs
//! the payment service (and its reconciler; see `payment_gateway::serve`); `mock-pg` runs the
//! mock PG.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use payment_gateway::chaos_run::{self, ChaosOptions};
use payment_gateway::demo::{self, DemoOptions};
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
    /// Runs N confirmations at once against the mock PG with faults injected (database
    /// writes, PG 500s, lost responses, latency spikes), then the reconciler, then audits the
    /// database against the PG's ledger. Exits non-zero when anything is inconsistent.
    Chaos {
        /// Confirmations to run.
        #[arg(long, default_value_t = 2000)]
        payments: usize,
        /// The share of database writes that fail, from 0 to 1.
        #[arg(long, default_value_t = 0.3)]
        db_failure_rate: f64,
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
            db_failure_rate,
            seed,
            database_url,
            pg_failure_rate,
            pg_loss_rate,
            latency_rate,
            concurrency,
        } => {
            let mut options = ChaosOptions::new(payments, db_failure_rate, seed);
            options.database_url = database_url;
            options.pg_failure_rate = pg_failure_rate;
            options.pg_loss_rate = pg_loss_rate;
            options.latency_rate = latency_rate;
            options.concurrency = concurrency as usize;
            options.progress = true;
            run_chaos(&options).await
        }
        Command::Serve(args) => run_serve(args.into()).await,
        Command::MockPg {
            addr,
            fault,
            delay_ms,
        } => mock_pg(addr, &fault, delay_ms).await,
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

async fn run_chaos(options: &ChaosOptions) -> Result<(), String> {
    telemetry::init_logs(false);
    let report = chaos_run::run(options).await.map_err(|e| e.to_string())?;
    println!("{report}");
    if report.audit.is_consistent() {
        Ok(())
    } else {
        Err(format!(
            "{} payments inconsistent, {} charged twice",
            report.audit.inconsistent, report.audit.double_charges
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

async fn mock_pg(addr: SocketAddr, fault: &str, delay_ms: Option<u64>) -> Result<(), String> {
    telemetry::init_logs(true);
    let fault = Fault::parse(fault, delay_ms).map_err(|e| format!("--fault: {e}"))?;
    let pg = MockPg::start_on(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    pg.set_fault(fault);
    tracing::info!("mock PG on {} ({fault})", pg.url());
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
