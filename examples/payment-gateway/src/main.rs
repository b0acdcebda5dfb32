//! Run with: cargo run -p payment-gateway
//!
//! `demo` (the default) runs the whole system on loopback through a PG outage and writes a
//! chart; `serve` runs the payment service; `mock-pg` runs the mock PG.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use breakwater::Registry;
use clap::{Parser, Subcommand};
use payment_gateway::demo::{self, DemoOptions};
use payment_gateway::mock_pg::{Fault, MockPg};
use payment_gateway::{App, PgSettings, Store, telemetry};

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
    /// Runs the payment service.
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// The PG's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        pg_url: String,
        /// The database.
        #[arg(long, default_value = "sqlite://payments.db?mode=rwc")]
        database_url: String,
        /// The breakers' configuration (YAML or TOML); the example's application.yml if
        /// not given.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The PG client's read timeout, in milliseconds.
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
        read_timeout_ms: u64,
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
        Command::Serve {
            addr,
            pg_url,
            database_url,
            config,
            read_timeout_ms,
        } => serve(addr, pg_url, &database_url, config, read_timeout_ms).await,
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

async fn serve(
    addr: SocketAddr,
    pg_url: String,
    database_url: &str,
    config: Option<PathBuf>,
    read_timeout_ms: u64,
) -> Result<(), String> {
    telemetry::init_logs(true);
    let registry = match config {
        Some(path) => Registry::from_path(&path)
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?,
        None => Registry::from_yaml(demo::CONFIG).map_err(|e| e.to_string())?,
    };
    let store = Store::open(database_url)
        .await
        .map_err(|e| format!("cannot open {database_url}: {e}"))?;
    let mut settings = PgSettings::new(pg_url);
    settings.read_timeout = Duration::from_millis(read_timeout_ms);
    let app = App::start(addr, registry, store, settings)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("payment service on {}", app.url());
    tokio::select! {
        served = app.wait() => served.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
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
