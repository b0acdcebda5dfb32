//! Metrics (Prometheus, through the `metrics` facade) and logs (`tracing`).

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The process's Prometheus recorder, installed on first use as the `metrics` facade's global
/// recorder: `None` if another recorder was installed first.
///
/// Install it before building breakers: breakwater makes its metric handles once, when a
/// breaker is built, with the recorder installed then.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

static WARNINGS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// How many `warn` and `error` lines this example has logged so far (its own, not its
/// dependencies'): what would reach an on-call channel.
pub fn log_counts() -> LogCounts {
    LogCounts {
        warnings: WARNINGS.load(Ordering::Relaxed),
        errors: ERRORS.load(Ordering::Relaxed),
    }
}

/// Counts of log lines, see [`log_counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogCounts {
    /// `warn` lines.
    pub warnings: u64,
    /// `error` lines.
    pub errors: u64,
}

impl LogCounts {
    /// The lines logged since `earlier`.
    pub fn since(self, earlier: LogCounts) -> LogCounts {
        LogCounts {
            warnings: self.warnings - earlier.warnings,
            errors: self.errors - earlier.errors,
        }
    }
}

/// Counts this example's `warn` and `error` events.
struct CountLevels;

impl<S: Subscriber> Layer<S> for CountLevels {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        if !metadata.target().starts_with("payment_gateway") {
            return;
        }
        match *metadata.level() {
            Level::WARN => WARNINGS.fetch_add(1, Ordering::Relaxed),
            Level::ERROR => ERRORS.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// A line of text per event, coloured only when stderr is a terminal and `NO_COLOR` is
    /// not set: a file or a pipe gets plain text, without escape sequences.
    #[default]
    Text,
    /// A JSON object per line (`timestamp`, `level`, `target`, `message` and the event's
    /// fields), for a log collector.
    Json,
}

/// Installs the global `tracing` subscriber once: log lines are counted (see
/// [`log_counts`]) and, if `print` is set, written to stderr as text (see
/// [`init_logs_as`]). Later calls do nothing.
pub fn init_logs(print: bool) {
    init_logs_as(print.then_some(LogFormat::Text));
}

/// Installs the global `tracing` subscriber once: log lines are counted (see
/// [`log_counts`]) and, with a `format`, written to stderr in it, filtered by `RUST_LOG` (in
/// `tracing-subscriber`'s `Targets` syntax: `info`, `payment_gateway=debug,breakwater=info`),
/// `info` by default. Later calls do nothing.
pub fn init_logs_as(format: Option<LogFormat>) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let colours = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let text = (format == Some(LogFormat::Text)).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(colours)
            .with_writer(std::io::stderr)
            .with_filter(filter.clone())
    });
    let json = (format == Some(LogFormat::Json)).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
    });
    // Another subscriber installed first (a test's, say) keeps its place.
    let _ = tracing_subscriber::registry()
        .with(CountLevels)
        .with(text)
        .with(json)
        .try_init();
}
