//! `serve`'s command line: [`ServeOptions`] as flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{FleetOptions, ServeOptions};
use crate::telemetry::LogFormat;

/// The command line of `serve`: [`ServeOptions`] as flags and environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where to listen; `127.0.0.1:0` lets the system pick a port. The address bound is
    /// printed on stdout: `listening on http://ADDR`.
    #[arg(long, env = "PAYMENT_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The PG's base URL.
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_PG_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub pg_url: String,
    /// The database: `sqlite://...` or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://payments.db?mode=rwc"
    )]
    pub database_url: String,
    /// The configuration file (YAML): the breakers, the chaos, and the PG client's timeouts
    /// under `payment-gateway.pg`. The example's config/application.yml, built in, if not
    /// given.
    #[arg(long, env = "PAYMENT_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// The PG client's connect timeout, in milliseconds [default: the file's
    /// `payment-gateway.pg.connect-timeout`, else 1100].
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_CONNECT_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub connect_timeout_ms: Option<u64>,
    /// The PG client's read timeout (headers and body), in milliseconds [default: the
    /// file's `payment-gateway.pg.read-timeout`, else 3000].
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_READ_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub read_timeout_ms: Option<u64>,
    /// After SIGTERM or Ctrl-C, how long the requests in flight and the reconciler's pass
    /// may take to finish, in milliseconds; what still runs then is cut off.
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    pub shutdown_timeout_ms: u64,
    /// How often the reconciler looks for unsettled payments, in milliseconds.
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_RECONCILE_EVERY_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=86_400_000)
    )]
    pub reconcile_every_ms: u64,
    /// The PG's confirm window, in milliseconds (Toss: 10 minutes): the reconciler calls a
    /// payment the PG has no record of "not charged" only once this has passed since its
    /// confirm was sent.
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_CONFIRM_WINDOW_MS",
        default_value_t = 600_000,
        value_parser = clap::value_parser!(u64).range(1..=86_400_000)
    )]
    pub confirm_window_ms: u64,
    /// How log lines are written to stderr: `text` (plain when stderr is not a terminal)
    /// or `json` (one object per line).
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// This instance's id in a fleet (unique per process; 1 to 64 characters of
    /// `A-Z a-z 0-9 . _ -`) [default: `serve-PID`, unique on one machine only].
    #[arg(long, env = "PAYMENT_GATEWAY_INSTANCE")]
    pub instance: Option<String>,
    /// Joins the PG breaker to a fleet through this Redis server (`redis://127.0.0.1:6379`)
    /// [default: the file's `breakwater.fleet.redis-url`, else no fleet].
    #[arg(long, env = "PAYMENT_GATEWAY_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The fleet's heartbeat, in milliseconds [default: the file's `breakwater.fleet.heartbeat`,
    /// else 1000].
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_FLEET_HEARTBEAT_MS",
        value_parser = clap::value_parser!(u64).range(50..=3_600_000)
    )]
    pub fleet_heartbeat_ms: Option<u64>,
    /// How many live instances must report the PG breaker open to open it here [default: the
    /// file's `breakwater.fleet.quorum`, else 2].
    #[arg(
        long,
        env = "PAYMENT_GATEWAY_FLEET_QUORUM",
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub fleet_quorum: Option<u32>,
}

impl From<ServeArgs> for ServeOptions {
    fn from(args: ServeArgs) -> Self {
        Self {
            addr: args.addr,
            pg_url: args.pg_url,
            database_url: args.database_url,
            config: args.config,
            connect_timeout: args.connect_timeout_ms.map(Duration::from_millis),
            read_timeout: args.read_timeout_ms.map(Duration::from_millis),
            shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
            reconcile_every: Duration::from_millis(args.reconcile_every_ms),
            confirm_window: Duration::from_millis(args.confirm_window_ms),
            log_format: Some(args.log_format),
            fleet: FleetOptions {
                instance: args.instance,
                redis_url: args.redis_url,
                heartbeat: args.fleet_heartbeat_ms.map(Duration::from_millis),
                quorum: args.fleet_quorum,
            },
        }
    }
}
